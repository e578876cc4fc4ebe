"""GRU4Rec: shapes, init, padding invariance, parity with RecBole's layout, gradients, training, CLI, checkpoints."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.gru4rec import GRU4Rec, left_align
from tests.conftest import REPO_ROOT, run_train, tiny_args
from tests.conftest import left_padded as pad

NUM_ITEMS, MAX_LEN = 50, 8


def make_model(max_len: int = MAX_LEN, **kwargs) -> GRU4Rec:
    torch.manual_seed(0)
    return GRU4Rec(NUM_ITEMS, max_len, **{"hidden_size": 16, "gru_hidden_size": 24, **kwargs})


def left_padded(*sequences: list[int], width: int = MAX_LEN) -> torch.Tensor:
    return pad(*sequences, width=width)


# ------------------------------------------------------------------------------------------------------ unit
@pytest.mark.unit
def test_output_shape_and_init() -> None:
    model = make_model()
    h = model(left_padded([1, 2, 3], [4]))
    assert h.shape == (2, 16)
    assert model.item_embeddings().shape == (NUM_ITEMS, 16)  # padding row excluded
    assert model.gru.bias is False and model.gru.hidden_size == 24  # RecBole: no GRU biases
    expected_std = math.sqrt(2 / (NUM_ITEMS + 1 + 16))  # xavier-normal over the (N + 1, D) table
    assert abs(model.item_embedding.weight.std().item() - expected_std) < 0.2 * expected_std
    bound = math.sqrt(6 / sum(model.gru.weight_ih_l0.shape))  # xavier-uniform
    assert model.gru.weight_ih_l0.abs().max() <= bound and model.gru.weight_ih_l0.abs().max() > 0.8 * bound


@pytest.mark.unit
def test_default_has_the_parameters_of_old_checkpoints() -> None:
    """No extra tokens by default: state_dict keys, order and shapes as before extra tokens existed."""
    model = make_model()
    assert model.extra_tokens == ()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
        ("item_embedding.weight", (NUM_ITEMS + 1, 16)), ("gru.weight_ih_l0", (72, 16)),
        ("gru.weight_hh_l0", (72, 24)), ("dense.weight", (16, 24)), ("dense.bias", (16,))]
    masked = make_model(extra_tokens=("mask",))
    assert masked.item_embedding.weight.shape == (NUM_ITEMS + 2, 16) and masked.item_embeddings().shape == (
        NUM_ITEMS, 16)


@pytest.mark.unit
def test_defaults_are_recbole_gru4rec() -> None:
    model = GRU4Rec(NUM_ITEMS)
    assert (model.hidden_size, model.gru.hidden_size, model.gru.num_layers) == (64, 128, 1)
    assert model.embedding_dropout.p == 0.3 and model.gru.bias is False


@pytest.mark.unit
def test_left_align_rolls_items_to_the_front() -> None:
    aligned, lengths = left_align(left_padded([1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [12], width=8))
    assert lengths.tolist() == [3, 8, 1]
    assert aligned.tolist() == [[1, 2, 3, 0, 0, 0, 0, 0], list(range(4, 12)), [12, 0, 0, 0, 0, 0, 0, 0]]


@pytest.mark.unit
@pytest.mark.parametrize("gru_bias", [False, True], ids=["recbole", "with-bias"])
def test_output_does_not_depend_on_left_padding(gru_bias: bool) -> None:
    """Same items, windows of width 5, 8 and 12, pad row corrupted: one output. A naive run would differ."""
    model = make_model(max_len=12, gru_bias=gru_bias, num_layers=2).eval()
    with torch.no_grad():
        model.item_embedding.weight[0].normal_(std=5.0)  # pads must never reach the read-out
    sequences = ([3, 1, 4, 1, 5], [9, 2], [6])
    outputs = [model(left_padded(*sequences, width=width)) for width in (5, 8, 12)]
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], outputs[2])
    # A model built for another max_len has the same parameters (a GRU has no position table): same outputs.
    other = make_model(max_len=5, gru_bias=gru_bias, num_layers=2).eval()
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(left_padded(*sequences, width=5)), outputs[2])
    # The test has teeth: running the GRU over the leading pads, as they come, gives something else.
    naive_states, _ = model.gru(model.item_embedding(left_padded(*sequences, width=12)))
    assert not torch.allclose(model.dense(naive_states[:, -1]), outputs[2])


@pytest.mark.unit
def test_parity_with_recbole_forward_on_left_aligned_rows() -> None:
    """RecBole: sequences left-aligned, GRU over the whole row, dense, gather at length - 1."""
    model = make_model(num_layers=2).eval()
    sequences = ([5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [9])
    item_seq = torch.zeros(3, MAX_LEN, dtype=torch.long)  # RecBole's layout: right-padded
    for row, seq in enumerate(sequences):
        item_seq[row, :len(seq)] = torch.tensor(seq)
    item_seq_len = torch.tensor([len(seq) for seq in sequences])
    gru_output, _ = model.gru(model.embedding_dropout(model.item_embedding(item_seq)))
    reference = model.dense(gru_output)[torch.arange(3), item_seq_len - 1]  # (B, D)
    torch.testing.assert_close(model(left_padded(*sequences)), reference)


@pytest.mark.unit
def test_eval_is_deterministic_and_rows_are_independent() -> None:
    model = make_model().eval()
    ids = left_padded([7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8])
    torch.testing.assert_close(model(ids), model(ids), rtol=0, atol=0)
    torch.testing.assert_close(model(ids[:1])[0], model(ids)[0])
    model.train()
    assert not torch.equal(model(ids), model(ids))  # embedding dropout is active in training


@pytest.mark.unit
def test_every_parameter_gets_a_gradient() -> None:
    model = make_model(num_layers=2, gru_bias=True)
    ids = left_padded([1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11])
    logits = model(ids) @ model.item_embeddings().T  # (B, N)
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


# -------------------------------------------------------------------------------------------------- property
@pytest.mark.unit
def test_module_with_gru4rec_overfits_one_batch() -> None:
    torch.manual_seed(0)
    encoder = partial(GRU4Rec, hidden_size=16, gru_hidden_size=32, embedding_dropout=0.0)
    module = SRACLModule(NUM_ITEMS, MAX_LEN, encoder=encoder, optimizer=partial(torch.optim.Adam, lr=1e-2))
    assert not module.objectives  # the backbone alone
    assert isinstance(module.encoder, GRU4Rec)
    generator = torch.Generator().manual_seed(1)
    batch = SeqBatch(input_ids=torch.randint(1, NUM_ITEMS + 1, (16, MAX_LEN), generator=generator),
                     target=torch.randint(1, NUM_ITEMS + 1, (16,), generator=generator),
                     position=torch.arange(16), user=torch.arange(16))
    batch.input_ids[::2, :3] = 0  # some windows are padded
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.stack(list(module.loss_terms(batch).values())).sum()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    module.eval()
    assert module.item_scores(module(batch.input_ids)).argmax(1).eq(batch.target - 1).all()


# ----------------------------------------------------------------------------------------------- integration
CONFIG_ARGS = ["--config", str(REPO_ROOT / "configs" / "gru4rec.yaml")]  # on top of tiny_args' debug.yaml


def train_gru4rec(reviews: Path, tmp_path: Path, *extra: str) -> None:
    """train.py on the small synthetic dataset with the debug config and GRU4Rec, everything under tmp_path."""
    run_train(tiny_args(reviews, tmp_path, *CONFIG_ARGS, *extra))


@pytest.mark.integration
def test_config_selects_gru4rec_and_fast_dev_run(tmp_path, synthetic_reviews) -> None:
    train_gru4rec(synthetic_reviews, tmp_path, "--trainer.fast_dev_run", "true")
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["encoder"] == "GRU4Rec"
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0


@pytest.mark.integration
def test_checkpoint_loads_with_weights_only(tmp_path, synthetic_reviews) -> None:
    train_gru4rec(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
                  "--trainer.limit_test_batches", "1")
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    state = torch.load(last, weights_only=True)["state_dict"]  # only tensors and primitive types
    assert state["encoder.gru.weight_hh_l0"].shape == (3 * 128, 128)
    model = SRACLModule.load_from_checkpoint(last, map_location="cpu")
    assert isinstance(model.encoder, GRU4Rec) and model.encoder.embedding_dropout.p == 0.3
    # gru4rec.yaml wins over debug.yaml's SASRec sizes (same-named init_args survive a class_path switch).
    assert (model.encoder.hidden_size, model.encoder.gru.num_layers) == (64, 1)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
