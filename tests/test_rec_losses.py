"""The recommendation losses: the negative sampler's exclusions and uniformity, each loss against a hand-worked
case, gradients through the encoder, and every loss's YAML through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.methods.rec_losses import (
    BinaryCrossEntropy,
    FullSoftmaxCrossEntropy,
    GeneralisedBinaryCrossEntropy,
    SampledSoftmaxCrossEntropy,
    sample_negatives,
)
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, run_train, tiny_args, toy_batch


@pytest.mark.unit
def test_negatives_avoid_the_seen_items_and_are_uniform_over_the_rest():
    torch.manual_seed(0)
    # Row 0 has seen 2, 3 (twice) and 5 of N = 6 items, plus padding and an extra token (7); row 1 only item 1.
    seen = torch.tensor([[0, 3, 2, 3, 7, 5], [0, 0, 0, 0, 0, 1]])
    draws = sample_negatives(seen, num_items=6, num_negatives=60_000)  # (2, 60000)
    assert set(draws[0].tolist()) == {1, 4, 6} and set(draws[1].tolist()) == {2, 3, 4, 5, 6}
    for row, allowed in ((0, [1, 4, 6]), (1, [2, 3, 4, 5, 6])):
        shares = torch.bincount(draws[row], minlength=7)[allowed].float() / draws.shape[1]
        assert torch.allclose(shares, torch.full_like(shares, 1 / len(allowed)), atol=0.01)


@pytest.mark.unit
def test_a_row_that_has_seen_every_item_still_draws_valid_ids():
    draws = sample_negatives(torch.tensor([[1, 2, 3]]), num_items=3, num_negatives=50)
    assert draws.min() >= 1 and draws.max() <= 3


@pytest.mark.unit
def test_losses_equal_their_hand_computed_values():
    positive = torch.tensor([0.0, 2.0])  # (B,)
    negative = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # (B, k = 2)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    # BCE: -log σ(s⁺) - Σ log(1 - σ(s⁻)) = softplus(-s⁺) + Σ softplus(s⁻), averaged over the samples.
    bce = ((softplus(0) + softplus(0) + softplus(1)) + (softplus(-2) + softplus(-1) + softplus(0))) / 2
    assert BinaryCrossEntropy(2).loss(positive, negative, num_items=11).item() == pytest.approx(bce)
    # gBCE with N = 11, k = 2, t = 0.5: α = 2/10, β = 0.2 · (0.5 · (1 - 5) + 5) = 0.6; mean over the 1 + k terms.
    gbce = GeneralisedBinaryCrossEntropy(2, calibration=0.5)
    assert gbce.positive_weight(11) == pytest.approx(0.6)
    expected = ((0.6 * softplus(0) + softplus(0) + softplus(1)) + (0.6 * softplus(-2) + softplus(-1) + softplus(0)))
    assert gbce.loss(positive, negative, num_items=11).item() == pytest.approx(expected / 2 / 3)
    # t = 0 is plain BCE (β = 1), t = 1 weighs the positive by α.
    assert GeneralisedBinaryCrossEntropy(2, calibration=0.0).positive_weight(11) == pytest.approx(1.0)
    assert GeneralisedBinaryCrossEntropy(2, calibration=1.0).positive_weight(11) == pytest.approx(0.2)
    # Sampled softmax: logsumexp(s⁺, s⁻...) - s⁺.
    softmax = ((math.log(math.exp(0) + math.exp(0) + math.exp(1)) - 0)
               + (math.log(math.exp(2) + math.exp(-1) + math.exp(0)) - 2)) / 2
    assert SampledSoftmaxCrossEntropy(2).loss(positive, negative, num_items=11).item() == pytest.approx(softmax)


@pytest.mark.unit
def test_sampled_losses_score_the_drawn_items_and_train_the_encoder():
    torch.manual_seed(0)
    batch = toy_batch(torch.Generator().manual_seed(0))
    encoder = SASRec(num_items=30, max_len=batch.input_ids.shape[1], hidden_size=16, num_layers=1, num_heads=1)
    h = encoder(batch.input_ids)  # (B, D)
    for loss in (BinaryCrossEntropy(1), GeneralisedBinaryCrossEntropy(8), SampledSoftmaxCrossEntropy(8)):
        encoder.zero_grad()
        value = loss(batch, h, encoder)
        value.backward(retain_graph=True)
        assert value.ndim == 0 and torch.isfinite(value)
        assert encoder.item_embedding.weight.grad.abs().sum() > 0
    # Under the same random state the loss draws the sampler's negatives; with one per sample, BCE is two softplus
    # terms of the scores computed here by hand.
    torch.manual_seed(1)
    weight = encoder.item_embeddings()
    seen = torch.cat([batch.input_ids, batch.target[:, None]], dim=1)
    negatives = sample_negatives(seen, 30, 1)
    torch.manual_seed(1)
    got = BinaryCrossEntropy(1)(batch, h, encoder)
    positive = (h * weight[batch.target - 1]).sum(-1)
    negative = (h * weight[negatives[:, 0] - 1]).sum(-1)
    expected = (torch.nn.functional.softplus(-positive) + torch.nn.functional.softplus(negative)).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.unit
def test_bad_loss_arguments_name_the_argument():
    with pytest.raises(InvalidArgumentError, match="num_negatives"):
        BinaryCrossEntropy(0)
    with pytest.raises(InvalidArgumentError, match="calibration"):
        GeneralisedBinaryCrossEntropy(4, calibration=1.5)


@pytest.mark.unit
def test_every_loss_describes_itself_for_the_protocol():
    losses = (FullSoftmaxCrossEntropy(), BinaryCrossEntropy(1), GeneralisedBinaryCrossEntropy(),
              SampledSoftmaxCrossEntropy())
    descriptions = {type(loss).__name__: loss.describe() for loss in losses}
    assert descriptions == {
        "FullSoftmaxCrossEntropy": "full-softmax cross-entropy",
        "BinaryCrossEntropy": "binary cross-entropy, 1 sampled negative(s)",
        "GeneralisedBinaryCrossEntropy": "gBCE, 256 sampled negatives, t = 0.75",
        "SampledSoftmaxCrossEntropy": "sampled-softmax cross-entropy, 256 sampled negatives",
    }


@pytest.mark.integration
@pytest.mark.parametrize(("config", "printed"), [
    ("sasrec_bce.yaml", "binary cross-entropy, 1 sampled negative(s)"),
    ("sasrec_sampled_softmax.yaml", "sampled-softmax cross-entropy, 256 sampled negatives"),
    ("gsasrec.yaml", "gBCE, 256 sampled negatives, t = 0.75"),
])
def test_each_rec_loss_config_trains_through_the_cli(tmp_path, synthetic_reviews, config, printed):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / config),
                        "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["loss"] == printed
