"""The semantic stage end to end on a tiny synthetic dataset: artefacts, reuse, staleness, exclusions, loading.

Items are embedded with the real offline all-MiniLM-L6-v2; user prefixes mostly with the cheap ``item_mean`` mode
so the file stays fast. An LLM is stood in for by a small backend class that records what it was asked.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sracl_lightning.datasets.manifest import read_manifest, sequences_key
from sracl_lightning.datasets.samples import split_positions
from sracl_lightning.datasets.sequences import Sequences
from sracl_lightning.errors import DataMismatchError
from sracl_lightning.semantic import stage as semantic_module
from sracl_lightning.semantic.llm import SummaryBackend
from sracl_lightning.semantic.neighbours import same_user_share
from sracl_lightning.semantic.stage import SemanticStage, item_raw_text
from sracl_lightning.semantic.tables import load_semantic_tables
from sracl_lightning.training.datamodule import SeqRecDataModule
from tests.conftest import REPO_ROOT, intra_op_threads, load_script


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread while this module runs (as the file always ran), restored afterwards for the others."""
    with intra_op_threads(1):
        yield


class RecordingBackend(SummaryBackend):
    """A stand-in LLM: the summary is a fixed function of the user message; every request is recorded."""

    def __init__(self) -> None:
        self.asked = 0

    def settings(self) -> dict:
        return {"backend": "recording", "model": "test"}

    def summarize(self, requests, on_result=None) -> list[str]:
        out = []
        for i, messages in enumerate(requests):
            self.asked += 1
            text = "summary: " + messages[-1]["content"][:200]
            out.append(text)
            if on_result is not None:
                on_result(i, text)
        return out


STAGE_SETTINGS = {"source_format": "amazon", "profile": "test", "user_source": "item_mean", "pool_size": 5,
                  "progress": False}


@pytest.fixture(scope="module")
def fresh_build(synthetic_reviews, tmp_path_factory) -> tuple[str, dict]:
    """The stage built once from nothing (one thread: the module's autouse fixture comes first): its data root and
    its report."""
    data_root = tmp_path_factory.mktemp("semantic") / "processed"
    report = SemanticStage(dataset=str(synthetic_reviews), data_root=str(data_root), **STAGE_SETTINGS).run()
    return str(data_root), report


@pytest.fixture
def stage_args(synthetic_reviews, fresh_build, tmp_path) -> dict:
    """A test's own copy of the built stage (a rerun reuses it, a changed setting rebuilds in the copy only): each
    test would otherwise embed every item again, about 6 s."""
    data_root = tmp_path / "processed"
    shutil.copytree(fresh_build[0], data_root)
    return {"dataset": str(synthetic_reviews), "data_root": str(data_root), **STAGE_SETTINGS}


def _forbid(monkeypatch, *names: str) -> None:
    """Make the named heavy steps raise, to prove a rerun reuses their cached output."""
    for name in names:
        def boom(*args, _name=name, **kwargs):
            raise AssertionError(f"{_name} was called although its output is cached")
        monkeypatch.setattr(semantic_module, name, boom)


@pytest.mark.integration
def test_builds_every_artefact_with_the_documented_shapes(fresh_build, stage_args):
    report = fresh_build[1]
    stage = SemanticStage(**stage_args)
    stage.run()  # the copy: reuses every artefact (tested below), loads the sequences
    seqs = stage.sequences
    n, p = seqs.num_items, len(split_positions(seqs, "train")[0])
    tables = load_semantic_tables(stage.directory, stage.name, "test", seqs)

    assert tables.item_embeddings.shape == (n + 1, 384) and tables.user_embeddings.shape == (p, 384)
    assert torch.all(tables.item_embeddings[0] == 0)
    assert tables.item_neighbours.shape == (n + 1, 5) and tables.user_neighbours.shape == (p, 5)
    assert torch.all(tables.item_neighbours[0] == -1)
    rest = tables.item_neighbours[1:]
    assert rest.min() >= 1 and rest.max() <= n
    assert not torch.any(rest == torch.arange(1, n + 1)[:, None]), "an item is its own neighbour"
    assert not torch.any(tables.user_neighbours == torch.arange(p)[:, None]), "a prefix is its own neighbour"
    # Rows of the user tables follow the training prefixes; prefix_row inverts them.
    assert torch.equal(tables.prefix_row[tables.prefix_positions], torch.arange(p))
    assert report["num_prefixes"] == p and report["embedding_dim"] == 384
    assert report["item_text"]["num_items"] == n
    assert set(report["steps"]) == {"prepare", "item_embeddings", "item_neighbours", "user_embeddings",
                                    "user_neighbours"}
    # The pools' own-user share, by brute force over every anchor and neighbour.
    users, positions = stage.prefix_users, stage.prefix_positions
    pools = tables.user_neighbours.numpy()
    same = [[users[j] == users[i] for j in pools[i]] for i in range(p)]
    later = [[users[j] == users[i] and positions[j] > positions[i] for j in pools[i]] for i in range(p)]
    assert report["user_pool_same_user"] == {"top5": {
        "same_user": round(float(np.mean(same)), 4), "holding_target": round(float(np.mean(later)), 4),
        "anchors_with_one_holding_target": round(float(np.mean([any(row) for row in later])), 4)}}
    assert 0 < report["user_pool_same_user"]["top5"]["same_user"] < 1, "the synthetic pools mix users"
    manifest = read_manifest(stage.out / "item_embeddings.npy")
    assert manifest["params"]["encoder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["params"]["text_source"]["llm"] == {"backend": "none"}


@pytest.mark.integration
def test_neighbours_are_the_exact_cosine_top_k(stage_args):
    stage = SemanticStage(**stage_args)
    stage.run()
    tables = load_semantic_tables(stage.directory, stage.name, "test", stage.sequences)
    emb = torch.nn.functional.normalize(tables.item_embeddings[1:], dim=1)
    sims = emb @ emb.T
    sims.fill_diagonal_(-2.0)
    expected = sims.topk(5, dim=1).indices + 1
    # Exact search: equal sets up to float ties at the cut-off.
    agree = (tables.item_neighbours[1:].sort(1).values == expected.sort(1).values).all(1).float().mean()
    assert agree > 0.98


@pytest.mark.integration
def test_rerun_reuses_everything_and_a_changed_setting_rebuilds_only_its_dependants(stage_args, monkeypatch):
    SemanticStage(**stage_args).run()
    with monkeypatch.context() as m:
        _forbid(m, "embed_texts", "nearest_neighbours", "recency_weighted_prefix_embeddings")
        SemanticStage(**stage_args).run()

    # A larger pool rebuilds the pools only; the embeddings stay.
    with monkeypatch.context() as m:
        _forbid(m, "embed_texts", "recency_weighted_prefix_embeddings")
        stage = SemanticStage(**{**stage_args, "pool_size": 7})
        stage.run()
    assert np.load(stage.out / "user_neighbours.npy").shape[1] == 7

    # Another recency decay changes the user embeddings (and so the user pool), not the items.
    with monkeypatch.context() as m:
        _forbid(m, "embed_texts")
        SemanticStage(**{**stage_args, "recency_decay": 0.5}).run()


@pytest.mark.integration
def test_a_bf16_encoder_is_its_own_cache_and_close_to_fp32(stage_args, monkeypatch):
    fp32 = SemanticStage(**stage_args)
    fp32.run()
    reference = np.load(fp32.out / "item_embeddings.npy")  # (N + 1, E)
    bf16 = SemanticStage(**{**stage_args, "encoder_dtype": "bfloat16"})
    bf16.run()
    assert read_manifest(bf16.out / "item_embeddings.npy")["params"]["encoder"]["dtype"] == "bfloat16"
    vectors = np.load(bf16.out / "item_embeddings.npy")
    rows = np.linalg.norm(reference, axis=1) > 0  # row 0 is padding
    cosine = (vectors[rows] * reference[rows]).sum(1) / np.linalg.norm(vectors[rows], axis=1) / np.linalg.norm(
        reference[rows], axis=1)
    assert cosine.min() > 0.98 and not np.array_equal(vectors, reference)
    # The profile now holds the bf16 build: the default dtype is another key, so it embeds again.
    with monkeypatch.context() as m, pytest.raises(AssertionError, match="embed_texts was called"):
        _forbid(m, "embed_texts")
        SemanticStage(**stage_args).run()


@pytest.mark.integration
def test_interrupted_write_is_rebuilt_not_trusted(stage_args):
    stage = SemanticStage(**stage_args)
    stage.run()
    # A crash between the array and its manifest leaves no manifest: the artefact counts as missing.
    (stage.out / "user_neighbours.manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="user_neighbours"):
        load_semantic_tables(stage.directory, stage.name, "test", stage.sequences)
    SemanticStage(**stage_args).run()
    load_semantic_tables(stage.directory, stage.name, "test", stage.sequences)


@pytest.mark.integration
def test_same_user_and_leakage_exclusions(stage_args):
    stage = SemanticStage(**{**stage_args, "exclude_same_user": True, "exclude_leaking": True})
    stage.run()
    seqs = stage.sequences
    positions, users = split_positions(seqs, "train")
    table = np.load(stage.out / "user_neighbours.npy")  # (P, K)
    assert not np.any(users[table] == users[:, None]), "a neighbour is another prefix of the same user"
    ends = seqs.offsets[1:]
    for row in range(0, len(positions), 37):  # a sample of anchors, checked the slow way
        forbidden = {int(seqs.items[ends[users[row]] - 2]), int(seqs.items[ends[users[row]] - 1])}
        for cand in table[row]:
            history = seqs.items[seqs.offsets[users[cand]]:positions[cand]]
            assert not forbidden & set(history.tolist()), (row, cand)
    manifest = read_manifest(stage.out / "user_neighbours.npy")
    assert manifest["params"]["exclude_same_user"] and manifest["params"]["exclude_leaking"]


@pytest.mark.integration
def test_llm_summaries_are_embedded_and_cached(stage_args):
    backend = RecordingBackend()
    args = {**stage_args, "summarizer": backend, "user_source": "text", "max_length": 16, "profile": "llm"}
    stage = SemanticStage(**args)
    stage.run()
    num_requests = stage.sequences.num_items + len(stage.prefix_positions)
    # Every item and every prefix is summarised; identical prompts (equal short histories) are asked once.
    assert 0.5 * num_requests < backend.asked <= num_requests
    cache_lines = (stage.out.parent / "llm_responses.jsonl").read_text().splitlines()
    assert len(cache_lines) == backend.asked
    manifest = read_manifest(stage.out / "user_embeddings.npy")
    assert manifest["params"]["text_source"]["llm"] == {"backend": "recording", "model": "test"}

    # Same LLM settings, another profile: every answer comes from the cache, none is asked again (the summaries
    # alone, without embedding them a second time).
    again = RecordingBackend()
    other = SemanticStage(**{**args, "summarizer": again, "profile": "llm2"})
    other.prepare()
    assert len(other.item_texts()) == stage.sequences.num_items
    assert len(other.user_texts()) == len(stage.prefix_positions)
    assert again.asked == 0


@pytest.mark.integration
def test_raw_text_mode_embeds_attributes_not_instructions(stage_args):
    stage = SemanticStage(**{**stage_args, "user_source": "text", "max_length": 16})
    stage.prepare()
    texts = stage.item_texts()
    assert len(texts) == stage.sequences.num_items
    assert texts == [item_raw_text(r) for r in stage.records[1:]]
    titled = next(i for i, r in enumerate(stage.records[1:]) if r["title"])
    assert texts[titled].startswith(f"Title: {stage.records[titled + 1]['title']}")
    assert not any("summar" in t.lower() for t in texts), "an instruction leaked into the raw text"
    users = stage.user_texts()
    assert len(users) == len(stage.prefix_positions) and users[0].startswith("<")


@pytest.mark.unit
def test_item_raw_text_falls_back_without_title():
    record = {"title": None, "brand": "Acme", "categories": ["Sports", "Tents"], "price": None,
              "description": None, "extra": {"idgenrec_text_id": "two person tent"}}
    assert item_raw_text(record) == "Name: two person tent; Brand: Acme; Categories: Sports > Tents"
    assert item_raw_text(None) == ""


@pytest.mark.integration
def test_cooccurrence_fallback_needs_no_text(stage_args):
    stage = SemanticStage(**{**stage_args, "item_source": "cooccurrence", "cooccurrence_dim": 16,
                             "profile": "cooc"})
    report = stage.run()
    assert report["embedding_dim"] == 16 and "item_text" not in report
    with pytest.raises(ValueError, match="item_mean"):
        SemanticStage(**{**stage_args, "item_source": "cooccurrence", "user_source": "text"})


@pytest.mark.integration
def test_datamodule_loads_checked_tables(stage_args, synthetic_reviews):
    SemanticStage(**stage_args).run()
    data = SeqRecDataModule(dataset=str(synthetic_reviews), source_format="amazon",
                            data_root=stage_args["data_root"], semantic_profile="test", num_neighbours=3)
    data.prepare_data()
    data.setup("fit")
    tables = data.semantic
    assert tables.item_neighbours.shape[1] == 3 and tables.dim == 384
    train = data.datasets["train"]
    batch = train.__getitems__([5, 0, 17, 3])
    assert torch.equal(tables.prefix_row[batch.position], batch.prefix_row), "sample index == prefix row"
    assert batch.neighbour_input_ids.shape == (4, 3, data.max_len) and batch.neighbour_semantic.shape == (4, 3, 384)
    assert torch.equal(batch.neighbour_rows, tables.user_neighbours[batch.prefix_row])
    assert torch.equal(batch.semantic, tables.user_embeddings[batch.prefix_row])
    for b in range(4):
        for j in range(3):  # each neighbour window is exactly that neighbour sample's own input window
            neighbour = train.__getitems__([int(batch.neighbour_rows[b, j])])
            assert torch.equal(batch.neighbour_input_ids[b, j], neighbour.input_ids[0])
            assert torch.equal(batch.neighbour_semantic[b, j], neighbour.semantic[0])
    assert data.datasets["val"].__getitems__([0]).neighbour_input_ids is None, "evaluation needs no neighbours"

    too_many = SeqRecDataModule(dataset=str(synthetic_reviews), source_format="amazon",
                                data_root=stage_args["data_root"], semantic_profile="test", num_neighbours=9)
    with pytest.raises(ValueError, match="k=9"):
        too_many.setup("fit")
    missing = SeqRecDataModule(dataset=str(synthetic_reviews), source_format="amazon",
                               data_root=stage_args["data_root"], semantic_profile="nope")
    with pytest.raises(FileNotFoundError, match="data/semantic.py"):
        missing.setup("fit")


@pytest.mark.integration
def test_tables_of_another_dataset_are_refused(stage_args, tmp_path):
    stage = SemanticStage(**stage_args)
    stage.run()
    other = stage.sequences
    other.offsets = other.offsets.copy()
    other.offsets[1] += 1  # a different split of users: prefixes no longer match
    with pytest.raises(DataMismatchError, match="prefix_positions.npy was built for data"):
        load_semantic_tables(stage.directory, stage.name, "test", other)


@pytest.mark.integration
def test_profile_of_changed_sequences_is_refused_with_both_keys(stage_args):
    """Reversed sequences keep every shape and id range; only the manifests' data key tells the profile is stale."""
    stage = SemanticStage(**stage_args)
    stage.run()
    seqs = stage.sequences
    reversed_items = np.concatenate([seqs.sequence(u)[::-1] for u in range(seqs.num_users)])
    changed = Sequences(items=reversed_items, offsets=seqs.offsets, user_tokens=seqs.user_tokens,
                        item_tokens=seqs.item_tokens)
    old_key = read_manifest(stage.out / "user_neighbours.npy")["inputs"]["data"]
    new_key = sequences_key(changed.items, changed.offsets)
    with pytest.raises(DataMismatchError) as error:
        load_semantic_tables(stage.directory, stage.name, "test", changed)
    message = str(error.value)
    assert old_key[:12] in message and new_key[:12] in message
    assert "python data/semantic.py" in message and "--profile test" in message


def _load_cli():
    return load_script("data/semantic")


@pytest.mark.integration
@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs" / "semantic").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_semantic_config_parses(config, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    stage = _load_cli().build_stage(["--config", str(config)])
    assert stage.pool_size >= 10  # the paper's k = 10 must fit in every shipped pool
    text = config.read_text()
    assert text.startswith("#") and "python data/semantic.py" in text, "configs open with a comment and command"


@pytest.mark.integration
def test_cli_runs_the_stage(stage_args, capsys):
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in stage_args.items()]
    assert _load_cli().main(args) == 0
    assert '"num_prefixes"' in capsys.readouterr().out


@pytest.mark.unit
def test_own_user_share_of_the_pools_by_hand():
    # Prefixes 0-2 belong to user 0 (targets at flat positions 1, 2, 3), prefix 3 to user 1 (position 7).
    users, positions = np.array([0, 0, 0, 1]), np.array([1, 2, 3, 7])
    pools = np.array([[1, 3], [0, 2], [3, -1], [0, 1]])  # -1: no neighbour (counts as another user's)
    # Own user: (0: 1), (1: 0, 2), (2: none), (3: none) -> 3 of 8; later ones: (0: 1), (1: 2) -> 2 of 8, anchors 0, 1.
    assert same_user_share(pools, users, positions) == {
        "top2": {"same_user": 0.375, "holding_target": 0.25, "anchors_with_one_holding_target": 0.5}}
    top1 = same_user_share(pools, users, positions, ks=(1,))["top1"]
    assert top1 == {"same_user": 0.5, "holding_target": 0.25, "anchors_with_one_holding_target": 0.25}
