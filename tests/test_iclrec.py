"""ICLRec: the users' training windows, nearest intents, the loss against its hand-composed terms, warm-started
k-means that survives a checkpoint, and configs/iclrec.yaml through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.iclrec import IntentContrast, last_training_windows, nearest_centroids
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.semantic.neighbours import kmeans
from tests.conftest import REPO_ROOT, run_train, tiny_args, toy_samples

USERS = {"a": [1, 2, 3, 4, 5, 6], "b": [2, 3, 4, 5, 1, 2], "c": [6, 5, 4, 3, 2, 1], "d": [1, 3, 5, 2, 4, 6]}


def fitted(num_intents: int = 2, **kwargs) -> tuple[IntentContrast, SASRec]:
    samples = toy_samples(USERS, num_items=6, max_len=4)
    objective = IntentContrast(MethodDims(6, 4, 8), num_intents=num_intents, seed=0, **kwargs)
    objective.setup(TrainingContext(num_items=6, max_len=4, train_samples=samples))
    torch.manual_seed(0)
    return objective, SASRec(6, max_len=4, hidden_size=8, num_heads=2, inner_size=16, extra_tokens=("mask",))


@pytest.mark.unit
def test_each_user_is_clustered_by_its_training_sequence():
    # items[:-3] of each user: the input of its last training sample (targets stop at items[-3]).
    windows = last_training_windows(toy_samples(USERS, num_items=6, max_len=4))
    assert windows.tolist() == [[0, 1, 2, 3], [0, 2, 3, 4], [0, 6, 5, 4], [0, 1, 3, 5]]


@pytest.mark.unit
def test_nearest_centroids_are_euclidean():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 3.0]])
    h = torch.tensor([[1.0, 1.0], [8.0, 1.0], [0.0, 2.0], [-5.0, -5.0]])
    # By dot product, row 1 would pick centroid 1 and row 3 centroid 0 anyway; row 2 (0, 2) is 1 from centroid 2.
    assert nearest_centroids(h, centroids).tolist() == [0, 1, 2, 0]


@pytest.mark.unit
def test_kmeans_finds_separated_clusters_and_starts_from_given_centroids():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (50, 2)) + 5, rng.normal(0, 0.1, (50, 2)) - 5])
    centroids = kmeans(points, 2, seed=3)
    assert sorted(np.round(centroids[:, 0]).tolist()) == [-5.0, 5.0]
    # One iteration from given centroids moves them to the means of their points, whatever the seed.
    start = np.array([[4.0, 4.0], [-4.0, -4.0]], dtype=np.float32)
    moved = kmeans(points, 2, niter=1, nredo=1, seed=99, initial=start)
    assert np.allclose(moved, [points[:50].mean(0), points[50:].mean(0)], atol=1e-4)
    with pytest.raises(ValueError, match="M >= k"):
        kmeans(points[:1], 2)


@pytest.mark.unit
def test_the_loss_is_the_weighted_sum_of_its_nt_xent_terms(monkeypatch):
    objective, encoder = fitted(instance_weight=0.1, intent_weight=0.3)
    first, second = torch.randn(4, 8), torch.randn(4, 8)
    monkeypatch.setattr(objective.views, "forward", lambda batch, h, encoder: (first, second))
    batch = SeqBatch(input_ids=torch.ones(4, 4, dtype=torch.long), target=torch.ones(4, dtype=torch.long),
                     position=torch.arange(4), user=torch.arange(4))
    h = torch.randn(4, 8)
    nt_xent = InfoNCE()
    # Before any clustering: the instance term alone.
    assert objective(batch, h, encoder).item() == pytest.approx(0.1 * nt_xent(first, second).item(), rel=1e-6)
    objective.on_train_epoch_start(encoder)
    assert objective.intents.clustered
    centroids = objective.intents.centroids
    nearest = centroids[((h[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    intents = nearest / nearest.norm(dim=1, keepdim=True)
    expected = 0.1 * nt_xent(first, second) + 0.3 * 0.5 * (nt_xent(first, intents) + nt_xent(second, intents))
    assert objective(batch, h, encoder).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.unit
def test_clustering_runs_in_eval_mode_warm_starts_and_is_checkpointed(monkeypatch):
    objective, encoder = fitted()
    calls = []
    real = kmeans

    def record(vectors, k, **kwargs):
        calls.append((vectors, kwargs["initial"]))
        return real(vectors, k, **kwargs)

    monkeypatch.setattr("sracl_lightning.methods.iclrec.kmeans", record)
    encoder.train()
    objective.on_train_epoch_start(encoder)
    assert encoder.training  # restored after the eval-mode pass
    encoder.eval()
    assert np.allclose(calls[0][0], encoder(objective.intents.windows).detach().numpy(), atol=1e-6)  # no dropout
    assert calls[0][1] is None  # the first clustering starts from a random draw
    first = objective.intents.centroids.clone()
    objective.on_train_epoch_start(encoder)
    assert np.array_equal(calls[1][1], first.numpy())  # then from the previous centroids
    state = objective.state_dict()
    assert {"intents.centroids", "intents.epochs_started"} <= set(state) and "intents.windows" not in state
    resumed, _ = fitted()
    resumed.load_state_dict(state)
    assert resumed.intents.clustered and torch.equal(resumed.intents.centroids, objective.intents.centroids)


@pytest.mark.unit
def test_more_intents_than_users_is_refused_by_name():
    with pytest.raises(UsageError, match="num_intents is 5, but only 4 users"):
        fitted(num_intents=5)


@pytest.mark.integration
def test_iclrec_config_trains_through_the_cli(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "iclrec.yaml"),
                        "--model.init_args.base_objective.init_args.num_intents", "8", "--trainer.max_epochs", "2"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["loss"].startswith("full-softmax cross-entropy + 1.0·L_ICLRec (0.1·instance + "
                                                  "0.1·intent, K=8")
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0 and results["metrics"]["users"] > 0
