"""BERT4Rec: the bidirectional encoder with its appended mask, the cloze objective against a hand-worked case, and
configs/bert4rec.yaml through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import InvalidArgumentError, UsageError
from sracl_lightning.methods import bert4rec as cloze
from sracl_lightning.methods.bert4rec import MaskedItemPrediction, cloze_inputs
from sracl_lightning.methods.parts import MethodDims
from sracl_lightning.models.bert4rec import BERT4Rec
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, run_train, tiny_args

N, L, D = 9, 4, 8


def tiny_encoder() -> BERT4Rec:
    torch.manual_seed(0)
    return BERT4Rec(N, max_len=L, hidden_size=D, num_heads=2, inner_size=16).eval()


def batch(ids: list[list[int]], target: list[int]) -> SeqBatch:
    b = len(ids)
    return SeqBatch(input_ids=torch.tensor(ids), target=torch.tensor(target), position=torch.arange(b),
                    user=torch.arange(b))


@pytest.mark.unit
def test_the_encoder_owns_a_mask_token_and_one_position_more_than_the_window():
    encoder = tiny_encoder()
    assert encoder.token_id("mask") == N + 1
    assert encoder.item_embedding.weight.shape == (N + 2, D)
    assert encoder.position_embedding.weight.shape == (L + 1, D)
    assert encoder.item_embeddings().shape == (N, D)  # the mask is never ranked
    assert BERT4Rec(N, max_len=L, extra_tokens=("mask", "cls")).extra_tokens == ("mask", "cls")


@pytest.mark.unit
def test_attention_looks_both_ways_and_ignores_padding():
    encoder = tiny_encoder()
    ids = torch.tensor([[0, 3, 4, 5, 6]])
    later = ids.clone()
    later[0, 4] = 7  # change the newest item
    # An earlier position's output changes with a later item: bidirectional (SASRec's causal mask would not).
    assert not torch.allclose(encoder.cloze_states(ids)[0, 1], encoder.cloze_states(later)[0, 1])
    causal = SASRec(N, max_len=L + 1, hidden_size=D, num_heads=2, inner_size=16).eval()
    assert torch.allclose(causal.forward_all(ids)[0, 1], causal.forward_all(later)[0, 1])
    # Padding is never attended to: two windows that differ only in a padded slot's embedding agree.
    with torch.no_grad():
        before = encoder.cloze_states(ids)[0, 1:]
        encoder.item_embedding.weight[0] += 1.0
        assert torch.allclose(encoder.cloze_states(ids)[0, 1:], before, atol=1e-6)


@pytest.mark.unit
def test_the_representation_is_the_output_at_the_appended_mask():
    encoder = tiny_encoder()
    ids = torch.tensor([[0, 0, 2, 3], [1, 2, 3, 4]])
    appended = torch.cat([ids, torch.full((2, 1), N + 1)], dim=1)  # [..., mask]
    assert torch.allclose(encoder(ids), encoder.cloze_states(appended)[:, -1], atol=1e-6)
    vectors = encoder.item_embedding(ids)
    assert torch.allclose(encoder.encode_embedded(ids, vectors), encoder(ids), atol=1e-6)


@pytest.mark.unit
def test_cloze_inputs_replace_exactly_the_chosen_positions():
    sequence = torch.tensor([[0, 3, 4, 5, 6]])
    chosen = torch.tensor([[False, True, False, True, False]])
    assert cloze_inputs(sequence, chosen, mask_id=10).tolist() == [[0, 10, 4, 10, 6]]


@pytest.mark.unit
def test_cloze_loss_equals_its_hand_computed_value(monkeypatch):
    encoder = tiny_encoder()
    toy = batch([[0, 3, 4, 5], [1, 2, 7, 8]], target=[6, 9])
    # Fix the draw: row 0 masks items 3 and 5, row 1 item 2, and both targets are drawn too (never masked).
    drawn = torch.tensor([[False, True, False, True, True], [False, True, False, False, True]])
    monkeypatch.setattr(cloze, "substitution_mask", lambda sequence, p: drawn.clone())
    loss = MaskedItemPrediction(MethodDims(N, L, D), mask_ratio=0.5)(toy, encoder(toy.input_ids), encoder)

    m = N + 1
    masked = torch.tensor([[0, m, 4, m, 6], [1, m, 7, 8, 9]])  # the targets stay visible
    states = encoder.cloze_states(masked)  # (2, 5, D)
    logits = states @ encoder.item_embeddings().T  # (2, 5, N)
    terms = [(0, 1, 3), (0, 3, 5), (1, 1, 2)]  # (row, position, original item)
    expected = sum(math.log(logits[b, j].exp().sum().item()) - logits[b, j, item - 1].item()
                   for b, j, item in terms) / len(terms)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.unit
def test_masking_draws_real_window_items_at_the_ratio_and_never_the_target(monkeypatch):
    seen = []
    real = cloze.substitution_mask

    def record(sequence, p):
        chosen = real(sequence, p)
        seen.append((sequence.clone(), chosen))
        return chosen

    monkeypatch.setattr(cloze, "substitution_mask", record)
    encoder = tiny_encoder()
    torch.manual_seed(1)
    ids = torch.randint(1, N + 1, (2000, L))
    ids[:, 0] = 0  # one padded slot per row
    toy = batch(ids.tolist(), target=[1] * 2000)
    MaskedItemPrediction(MethodDims(N, L, D), mask_ratio=0.3)(toy, encoder(ids), encoder)
    sequence, chosen = seen[0]
    # substitution_mask returned the chosen positions before the target column was cleared in place.
    assert not chosen[:, -1].any() and not chosen[sequence == 0].any()
    assert chosen[:, 1:L].float().mean().item() == pytest.approx(0.3, abs=0.02)


@pytest.mark.unit
def test_nothing_masked_gives_a_zero_loss_with_a_graph_and_the_wrong_encoder_is_refused(monkeypatch):
    encoder = tiny_encoder()
    toy = batch([[0, 3, 4, 5]], target=[6])
    monkeypatch.setattr(cloze, "substitution_mask", lambda sequence, p: torch.zeros_like(sequence, dtype=torch.bool))
    loss = MaskedItemPrediction(MethodDims(N, L, D))(toy, encoder(toy.input_ids), encoder)
    assert loss.item() == 0.0 and loss.requires_grad
    sasrec = SASRec(N, max_len=L, hidden_size=D, num_heads=2, inner_size=16, extra_tokens=("mask",))
    with pytest.raises(UsageError, match="bidirectional encoder"):
        MaskedItemPrediction(MethodDims(N, L, D))(toy, sasrec(toy.input_ids), sasrec)
    with pytest.raises(InvalidArgumentError, match="mask_ratio"):
        MaskedItemPrediction(MethodDims(N, L, D), mask_ratio=1.0)


@pytest.mark.integration
def test_bert4rec_config_trains_through_the_cli(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "bert4rec.yaml"),
                        "--model.init_args.encoder.init_args.hidden_size", "16",
                        "--model.init_args.encoder.init_args.inner_size", "32", "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["encoder"] == "BERT4Rec"
    assert results["protocol"]["loss"] == ("full-softmax cross-entropy + 1.0·L_cloze (mask ρ=0.2, full-softmax "
                                           "cross-entropy)")
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0 and results["metrics"]["users"] > 0
