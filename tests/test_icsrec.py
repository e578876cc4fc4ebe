"""ICSRec: the loss against its hand-composed terms (same-target and same-intent false negatives masked), the
intents over every training subsequence, and configs/icsrec.yaml through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.methods.duorec import SameTargetInfoNCE
from sracl_lightning.methods.icsrec import CrossSubsequenceContrast
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, run_train, tiny_args, toy_samples

USERS = {"a": [1, 2, 3, 4, 5, 6], "b": [2, 3, 4, 5, 1, 2], "c": [6, 5, 4, 3, 2, 1]}


def fitted(**kwargs) -> tuple[CrossSubsequenceContrast, SASRec]:
    samples = toy_samples(USERS, num_items=6, max_len=4)
    objective = CrossSubsequenceContrast(MethodDims(6, 4, 8), seed=0, **kwargs)
    objective.setup(TrainingContext(num_items=6, max_len=4, train_samples=samples))
    torch.manual_seed(0)
    return objective, SASRec(6, max_len=4, hidden_size=8, num_heads=2, inner_size=16)


@pytest.mark.unit
def test_every_training_subsequence_is_clustered():
    objective, _ = fitted(num_intents=2)
    # Three users with training parts of 4 items: 3 prefixes each.
    assert objective.intents.windows.tolist() == [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3],
                                                  [0, 0, 0, 2], [0, 0, 2, 3], [0, 2, 3, 4],
                                                  [0, 0, 0, 6], [0, 0, 6, 5], [0, 6, 5, 4]]


@pytest.mark.unit
def test_the_loss_is_coarse_plus_fine_with_their_false_negatives_masked(monkeypatch):
    objective, encoder = fitted(num_intents=3, coarse_weight=0.3, fine_weight=0.1)
    first, second = torch.randn(4, 8), torch.randn(4, 8)
    monkeypatch.setattr(objective.views, "forward", lambda batch, h, encoder: (first, second))
    targets = torch.tensor([2, 3, 2, 5])  # rows 0 and 2 share a target: false negatives of each other
    batch = SeqBatch(input_ids=torch.ones(4, 4, dtype=torch.long), target=targets, position=torch.arange(4),
                     user=torch.arange(4))
    masked = SameTargetInfoNCE()
    coarse = masked(first, second, targets)
    assert coarse.item() != pytest.approx(InfoNCE()(first, second).item())  # the mask matters here
    assert objective(batch, first, encoder).item() == pytest.approx(0.3 * coarse.item(), rel=1e-6)  # no intents yet

    objective.on_train_epoch_start(encoder)
    centroids = objective.intents.centroids
    fine = 0.0
    for view in (first, second):
        intent = ((view[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)  # nearest, Euclidean
        c = centroids[intent] / centroids[intent].norm(dim=1, keepdim=True)
        fine += masked(view, c, intent).item()  # same-intent rows out of the negatives
    assert objective(batch, first, encoder).item() == pytest.approx(0.3 * coarse.item() + 0.1 * fine, rel=1e-5)


@pytest.mark.unit
def test_bad_arguments_are_named():
    with pytest.raises(InvalidArgumentError, match="CrossSubsequenceContrast.num_intents"):
        CrossSubsequenceContrast(MethodDims(6, 4, 8), num_intents=0)
    with pytest.raises(InvalidArgumentError, match="coarse_weight"):
        CrossSubsequenceContrast(MethodDims(6, 4, 8), coarse_weight=-1)


@pytest.mark.integration
def test_icsrec_config_trains_through_the_cli(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "icsrec.yaml"),
                        "--model.init_args.base_objective.init_args.num_intents", "8", "--trainer.max_epochs", "2"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["loss"].startswith("full-softmax cross-entropy + 1.0·L_ICSRec (0.3·coarse same-target "
                                                  "+ 0.1·fine intent, K=8 k-means intents of the samples' windows")
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0 and results["metrics"]["users"] > 0
