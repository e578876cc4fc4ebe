"""MCLRec: the margin regulariser against a hand-worked case, two different augmentations per sequence, the
augmenters, the loss against its hand-composed terms, and the three alternating updates per batch through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.mclrec import (
    Augmenter,
    DistinctAugmentations,
    MetaContrast,
    margin_regulariser,
)
from sracl_lightning.methods.mclrec_module import MetaOptimisedModule
from sracl_lightning.methods.parts import MethodDims
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, run_train, tiny_args


def batch_of(ids: torch.Tensor) -> SeqBatch:
    b = ids.shape[0]
    return SeqBatch(input_ids=ids, target=torch.ones(b, dtype=torch.long), position=torch.arange(b),
                    user=torch.arange(b))


@pytest.mark.unit
def test_margin_regulariser_by_hand():
    # B = 2, D = 1: rows [a1, a2, b1, b2] = [1, 2, 3, 0]; scores are products.
    a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [0.0]])
    # Row 0 (a1): positive a1·b1 = 3, negatives a1·a2 = 2, a1·b2 = 0 -> max 2: relu(3 - 2) = 1; high 3: 1, 3.
    # Row 1 (a2): positive a2·b2 = 0, negatives 2, 6 -> max 6: relu(0 - 0) = 0; high 6: 4, 0.
    # Row 2 (b1): positive 3, negatives 6, 0 -> max 6: 0; high 6: 0, 6.
    # Row 3 (b2): positive 0, negatives 0, 0 -> max 0: 0; high 0: 0, 0.
    expected = (1 + 0 + 0 + 0) / 4 + (1 + 3 + 4 + 0 + 0 + 6 + 0 + 0) / 8
    assert margin_regulariser(a, b).item() == pytest.approx(expected)


def classify(view: torch.Tensor, original: torch.Tensor, mask_id: int) -> str:
    if (view == mask_id).any():
        return "mask"
    if (view != 0).sum() < (original != 0).sum():
        return "crop"
    assert sorted(view.tolist()) == sorted(original.tolist())
    return "reorder"


@pytest.mark.unit
def test_each_sequence_gets_two_different_augmentations_and_one_item_windows_none():
    torch.manual_seed(0)
    encoder = SASRec(9, max_len=6, hidden_size=8, num_heads=2, inner_size=16, extra_tokens=("mask",))
    views = DistinctAugmentations(MethodDims(9, 6, 8))
    captured = []
    real = encoder.forward
    encoder.forward = lambda ids: (captured.append(ids.clone()), real(ids))[1]
    ids = torch.tensor([[0, 1, 2, 3, 4, 5]] * 300 + [[0, 0, 0, 0, 0, 7]])
    first, second = views(batch_of(ids), None, encoder)
    assert first.shape == second.shape == (301, 8)
    encoded = captured[0]  # one pass: [first views; second views]
    pairs = [(classify(encoded[i], ids[i], 10), classify(encoded[301 + i], ids[i], 10)) for i in range(300)]
    assert all(a != b for a, b in pairs)
    assert {a for a, _ in pairs} == {"mask", "crop", "reorder"}
    assert encoded[300].tolist() == encoded[601].tolist() == [0, 0, 0, 0, 0, 7]


@pytest.mark.unit
def test_augmenters_are_normalised_mlps_of_the_hidden_width():
    augmenter = Augmenter(64)
    assert [tuple(layer.weight.shape) for layer in augmenter.layers] == [(32, 64), (16, 32), (64, 16)]
    assert torch.allclose(augmenter(torch.randn(5, 64)).norm(dim=1), torch.ones(5))


@pytest.mark.unit
def test_the_losses_are_their_hand_composed_terms(monkeypatch):
    torch.manual_seed(0)
    objective = MetaContrast(MethodDims(9, 6, 8), instance_weight=0.2, meta_weight=0.05, regulariser_weight=0.1)
    first, second = torch.randn(4, 8), torch.randn(4, 8)
    monkeypatch.setattr(objective.views, "forward", lambda batch, h, encoder: (first, second))
    z1, z2 = objective.augmenters[0](first), objective.augmenters[1](second)
    nce = InfoNCE()
    pairs = ((first, z2), (second, z1), (z1, z2))
    meta = sum(nce(a, b) for a, b in pairs) + 0.1 * sum(margin_regulariser(a, b) for a, b in pairs)
    batch = batch_of(torch.ones(4, 6, dtype=torch.long))
    assert objective(batch, first, None).item() == pytest.approx((0.2 * nce(first, second) + 0.05 * meta).item(),
                                                                  rel=1e-5)
    assert objective.augmenter_loss(batch, None).item() == pytest.approx((0.2 * nce(first, second) + meta).item(),
                                                                          rel=1e-5)


@pytest.mark.unit
def test_the_module_needs_a_meta_contrast_and_splits_the_parameters():
    with pytest.raises(UsageError, match="one MetaContrast objective"):
        MetaOptimisedModule(num_items=9, max_len=6)
    module = MetaOptimisedModule(num_items=9, max_len=6, base_objective=MetaContrast)
    model, augmenters = module.configure_optimizers()
    held = [{id(p) for group in o.param_groups for p in group["params"]} for o in (model, augmenters)]
    assert held[1] == {id(p) for p in module.meta.augmenters.parameters()} and not held[0] & held[1]
    assert held[0] | held[1] == {id(p) for p in module.parameters()}
    assert not any(key.startswith("meta.") for key in module.state_dict())  # held once, in its slot


@pytest.mark.integration
def test_mclrec_config_makes_three_updates_per_batch_through_the_cli(tmp_path, synthetic_reviews):
    # configs/debug.yaml: 5 batches in one epoch -> 10 model updates, 5 augmenter updates.
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "mclrec.yaml"),
                        "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["loss"].startswith("full-softmax cross-entropy + 1.0·L_MCLRec (0.0·L_cl + "
                                                  "0.05·L_meta")
    checkpoint = torch.load(next((tmp_path / "runs").rglob("*.ckpt")), weights_only=False)
    steps = [int(next(iter(state["state"].values()))["step"]) for state in checkpoint["optimizer_states"]]
    assert steps == [10, 5]
    assert any("augmenters" in key for key in checkpoint["state_dict"])
