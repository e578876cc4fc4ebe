"""SRA-CL in the module: loss terms, gradients, the w/o-CL switch, and a CLI run on a built semantic profile."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import yaml

from sracl_lightning.batch import SeqBatch
from sracl_lightning.cli import SRACLCLI
from sracl_lightning.gru4rec import GRU4Rec
from sracl_lightning.module import SRACLModule
from sracl_lightning.sasrec import SASRec
from sracl_lightning.semantic import SemanticStage
from tests.conftest import REPO_ROOT
from tests.test_cli import load_script, run_train, tiny_args

N, L, K, E, B = 30, 6, 3, 8, 5


def toy_batch(generator: torch.Generator) -> SeqBatch:
    """A training batch with neighbours, left-padded like the real data."""
    ids = torch.randint(1, N + 1, (B, L), generator=generator)
    ids[0, :3] = 0  # a short prefix
    neighbours = torch.randint(1, N + 1, (B, K, L), generator=generator)
    neighbours[:, 0, :2] = 0
    return SeqBatch(input_ids=ids, target=torch.randint(1, N + 1, (B,), generator=generator),
                    position=torch.arange(B), user=torch.arange(B), prefix_row=torch.arange(B),
                    semantic=torch.randn(B, E, generator=generator), neighbour_rows=torch.zeros(B, K, dtype=torch.long),
                    neighbour_input_ids=neighbours, neighbour_semantic=torch.randn(B, K, E, generator=generator))


def item_table(generator: torch.Generator) -> torch.Tensor:
    """(N + 1, K) neighbour ids 1..N, never the item itself; row 0 = -1."""
    table = (torch.arange(N + 1)[:, None] + torch.randint(1, N, (N + 1, K), generator=generator)) % N + 1
    table[0] = -1
    return table


def sracl(encoder=None, **kwargs) -> SRACLModule:
    encoder = encoder or partial(SASRec, hidden_size=16, num_layers=1, num_heads=1, inner_size=32)
    module = SRACLModule(N, L, encoder=encoder, semantic_dim=E, **kwargs)
    module.item_neighbours = item_table(torch.Generator().manual_seed(1))
    return module


@pytest.mark.parametrize("encoder", [None, partial(GRU4Rec, hidden_size=16, gru_hidden_size=16)],
                         ids=["sasrec", "gru4rec"])
def test_every_parameter_gets_a_gradient(encoder):
    torch.manual_seed(0)
    module = sracl(encoder)
    terms = module.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
    assert set(terms) == {"rec", "user_cl", "item_cl"} and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_terms_are_weighted_and_each_can_be_turned_off():
    generator = torch.Generator().manual_seed(0)
    batch = toy_batch(generator)
    torch.manual_seed(0)
    base = sracl(user_cl_weight=1.0, item_cl_weight=1.0).eval()  # eval: no dropout, equal passes
    torch.manual_seed(0)
    half = sracl(user_cl_weight=0.5, item_cl_weight=0.5).eval()
    half.load_state_dict(base.state_dict())
    torch.manual_seed(3)
    full_terms = base.loss_terms(batch)
    torch.manual_seed(3)
    half_terms = half.loss_terms(batch)
    assert torch.allclose(half_terms["user_cl"], 0.5 * full_terms["user_cl"])
    assert torch.allclose(half_terms["item_cl"], 0.5 * full_terms["item_cl"])
    assert set(sracl(user_cl_weight=0.0).loss_terms(batch)) == {"rec", "item_cl"}
    assert set(sracl(item_cl_weight=0.0).loss_terms(batch)) == {"rec", "user_cl"}


def test_backbone_alone_needs_no_semantics_and_sracl_says_what_is_missing():
    plain = SRACLModule(N, L, user_cl_weight=0.0, item_cl_weight=0.0)
    assert plain.synthesizer is None
    ids = torch.randint(1, N + 1, (B, L))
    assert set(plain.loss_terms(SeqBatch(ids, torch.randint(1, N + 1, (B,)), torch.arange(B), torch.arange(B)))) \
        == {"rec"}
    with pytest.raises(ValueError, match="semantic_profile"):
        SRACLModule(N, L)  # α > 0 by default: the synthesizer needs the semantic width
    module = SRACLModule(N, L, semantic_dim=E, item_cl_weight=0.0)
    with pytest.raises(ValueError, match="neighbours"):
        module.user_cl_loss(SeqBatch(ids, ids[:, -1], torch.arange(B), torch.arange(B)), torch.zeros(B, 64))


def test_inference_uses_the_backbone_alone():
    module = sracl().eval()
    ids = torch.randint(1, N + 1, (B, L))
    assert torch.equal(module(ids), module.encoder(ids))


def test_one_batch_overfits_with_all_terms():
    torch.manual_seed(0)
    module = sracl(optimizer=partial(torch.optim.Adam, lr=1e-2))
    batch = toy_batch(torch.Generator().manual_seed(0))
    optimizer = module.configure_optimizers()
    first = None
    for _ in range(80):
        terms = module.loss_terms(batch)
        loss = sum(terms.values())
        first = first if first is not None else terms["rec"].item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert terms["rec"].item() < 0.2 * first


def test_sracl_trains_through_the_cli_on_a_semantic_profile(monkeypatch, tmp_path, synthetic_reviews):
    SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=str(tmp_path / "processed"),
                  profile="test", user_source="item_mean", pool_size=5, progress=False).run()
    args = tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--data.semantic_profile", "test", "--data.num_neighbours", "3",
                     "--model.init_args.user_cl_weight", "0.1", "--model.init_args.item_cl_weight", "0.1")
    run_train(monkeypatch, args)
    run = next((tmp_path / "runs").rglob("test_metrics.json"))
    assert "L_CS" in json.loads(run.read_text())["protocol"]["loss"]
    metrics = (run.parent.parent / "csv").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    assert "train/user_cl_loss_epoch" in header and "train/item_cl_loss_epoch" in header
    checkpoint = torch.load(next(run.parent.rglob("last.ckpt")), weights_only=True)
    assert checkpoint["hyper_parameters"]["semantic_dim"] == 384
    assert "item_neighbours" not in checkpoint["state_dict"], "frozen data must not bloat checkpoints"
    assert any(key.startswith("synthesizer.") for key in checkpoint["state_dict"])

    # evaluate.py restores an SRA-CL checkpoint (synthesizer included) and ranks with the backbone alone.
    trained = json.loads(run.read_text())["metrics"]
    best = json.loads(run.read_text())["checkpoint"]
    evaluated = load_script("evaluate").evaluate(best, output_dir=str(tmp_path / "eval"), accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(trained["ndcg@10"], abs=1e-7)


# ------------------------------------------------------------------------------------------ memory-bank mode
def test_memory_bank_mode_reads_neighbours_from_the_bank_and_refreshes_anchor_rows():
    from sracl_lightning.memory_bank import MemoryBankSRACL

    torch.manual_seed(0)
    module = MemoryBankSRACL(N, L, encoder=partial(SASRec, hidden_size=16, num_layers=1, num_heads=1,
                                                   inner_size=32), semantic_dim=E)
    module.item_neighbours = item_table(torch.Generator().manual_seed(1))
    module.bank = torch.randn(B, 16)
    batch = toy_batch(torch.Generator().manual_seed(0))
    batch.neighbour_rows = torch.randint(0, B, (B, K))
    before = module.bank.clone()
    assert torch.equal(module.neighbour_hidden(batch), before[batch.neighbour_rows])
    terms = module.loss_terms(batch)
    sum(terms.values()).backward()
    assert not torch.equal(module.bank, before), "the anchors' rows were not refreshed"
    assert not module.bank.requires_grad
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_memory_bank_mode_trains_through_the_cli(monkeypatch, tmp_path, synthetic_reviews):
    SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=str(tmp_path / "processed"),
                  profile="test", user_source="item_mean", pool_size=5, progress=False).run()
    args = tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--model.class_path", "sracl_lightning.memory_bank.MemoryBankSRACL",
                     "--data.semantic_profile", "test",
                     "--model.init_args.user_cl_weight", "0.1", "--model.init_args.item_cl_weight", "0.1")
    run_train(monkeypatch, args)
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    # Loaders import the package's subclass named in the checkpoint (Lightning would refuse it otherwise).
    evaluated = load_script("evaluate").evaluate(results["checkpoint"], output_dir=str(tmp_path / "eval"),
                                                 accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(results["metrics"]["ndcg@10"], abs=1e-7)

    # A checkpoint from before the CL weights were arguments holds the backbone alone: it loads with α = β = 0.
    from sracl_lightning.module import load_trained

    checkpoint = torch.load(results["checkpoint"], weights_only=True)
    legacy = {k: v for k, v in checkpoint["hyper_parameters"].items()
              if k not in {"user_cl_weight", "item_cl_weight", "semantic_dim", "bank_batch_size"}}
    checkpoint["hyper_parameters"] = legacy | {"_class_path": "sracl_lightning.module.SRACLModule"}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("synthesizer.")}
    torch.save(checkpoint, tmp_path / "legacy.ckpt")
    model = load_trained(tmp_path / "legacy.ckpt")
    assert model.user_cl_weight == model.item_cl_weight == 0.0 and model.synthesizer is None


# ------------------------------------------------------------------------------------------------- configs
SRACL_CONFIGS = sorted((REPO_ROOT / "configs" / "sracl").glob("*.yaml"))


@pytest.mark.parametrize("config", SRACL_CONFIGS, ids=lambda p: p.stem)
def test_every_sracl_config_instantiates_on_a_built_profile(config, tmp_path, synthetic_reviews):
    text = config.read_text()
    assert text.startswith("#") and "python train.py" in text, "configs open with a comment and the command"
    data_root = str(tmp_path / "processed")
    profile = yaml.safe_load(text).get("data", {}).get("semantic_profile", "minilm_nollm")
    cooccurrence = profile == "cooccurrence"
    SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=data_root, profile=profile,
                  user_source="item_mean", item_source="cooccurrence" if cooccurrence else "text",
                  cooccurrence_dim=16, pool_size=10, progress=False).run()
    # Overlays go on top of what they modify: faithful.yaml on a dataset's SRA-CL config, duorec.yaml on DuoRec.
    configs = {"faithful": [REPO_ROOT / "configs" / "sracl" / "beauty.yaml"],
               "learnable_substitution": [REPO_ROOT / "configs" / "sracl" / "beauty.yaml"],
               "duorec": [REPO_ROOT / "configs" / "duorec.yaml"]}.get(config.stem, [])
    args = [arg for c in [*configs, config] for arg in ("--config", str(c))]
    cli = SRACLCLI(args=[*args, "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                         "--data.data_root", data_root, "--trainer.default_root_dir", str(tmp_path / "runs")])
    model, data = cli.model, cli.datamodule
    assert model.user_cl_weight == model.item_cl_weight == 0.1
    assert model.hparams.semantic_dim == data.semantic_dim == (16 if cooccurrence else 384)
    expected = {"faithful": "SRACLModule", "duorec": "MemoryBankDuoRec",
                "learnable_substitution": "LearnableSubstitutionSRACL"}.get(config.stem, "MemoryBankSRACL")
    assert type(model).__name__ == expected


ABLATIONS = sorted((REPO_ROOT / "configs" / "ablations").glob("*/*.yaml"))


@pytest.fixture(scope="module")
def both_profiles(tmp_path_factory, synthetic_reviews) -> str:
    """A data root holding the two profiles the shipped configs name, built on the small synthetic dataset."""
    data_root = str(tmp_path_factory.mktemp("profiles") / "processed")
    for profile, item_source in (("minilm_nollm", "text"), ("cooccurrence", "cooccurrence")):
        SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=data_root, profile=profile,
                      item_source=item_source, user_source="item_mean", cooccurrence_dim=16, pool_size=10,
                      progress=False).run()
    return data_root


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_ablation_config_instantiates(ablation, both_profiles, tmp_path, synthetic_reviews):
    text = ablation.read_text()
    assert text.startswith("# Table 2") and "Paper: HR@20" in text and "python train.py" in text
    dataset = ablation.parent.name
    base = REPO_ROOT / "configs" / "sracl" / f"{dataset}.yaml"
    cli = SRACLCLI(args=["--config", str(base), "--config", str(ablation),
                         "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                         "--data.data_root", both_profiles, "--trainer.default_root_dir", str(tmp_path / "runs")])
    model = cli.model
    expected = {"wo_cl": (0.0, 0.0), "wo_lcs": (0.0, 0.1), "wo_lis": (0.1, 0.0)}.get(ablation.stem, (0.1, 0.1))
    assert (model.user_cl_weight, model.item_cl_weight) == expected
    if ablation.stem == "wo_learnable":
        assert type(model).__name__ == "RandomNeighbourSRACL" and model.synthesizer is None
    if ablation.stem == "wo_semantic":
        assert cli.datamodule.semantic_profile == "cooccurrence"
    if ablation.stem == "wo_cl":
        assert cli.datamodule.semantic_profile is None and model.synthesizer is None


def test_random_neighbour_positive_is_one_of_the_neighbours():
    from sracl_lightning.ablations import RandomNeighbourSRACL

    module = RandomNeighbourSRACL(N, L, semantic_dim=E)
    module.bank = torch.randn(B, 64)
    batch = toy_batch(torch.Generator().manual_seed(0))
    batch.neighbour_rows = torch.randint(0, B, (B, K))
    positive = module.user_positive(batch)  # (B, D)
    for b in range(B):
        assert any(torch.equal(positive[b], module.bank[r]) for r in batch.neighbour_rows[b])
    assert not any(name.startswith("synthesizer") for name, _ in module.named_parameters())
