"""LLM-ESR: the dual-view encoder (scores as the sum of the two views' dot products, PCA initialisation, the frozen
semantic table in checkpoints, padding ignored), the self-distillation against its hand-computed value, and
configs/llmesr.yaml through the CLI with a real semantic profile."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.llmesr import RetrievalDistillation
from sracl_lightning.methods.parts import MethodDims
from sracl_lightning.models.llmesr import LLMESR, principal_components
from tests.conftest import REPO_ROOT, run_train, tiny_args

N, L, D, E = 7, 4, 8, 6


def context(vectors: torch.Tensor, profile: str = "toy"):
    semantic = SimpleNamespace(item_embeddings=vectors, profile=profile)
    return SimpleNamespace(require_semantic=lambda part: semantic)


def fitted() -> tuple[LLMESR, torch.Tensor]:
    torch.manual_seed(0)
    encoder = LLMESR(N, max_len=L, semantic_dim=E, hidden_size=D).eval()
    vectors = torch.cat([torch.zeros(1, E), torch.randn(N, E)])  # (N + 1, E), row 0 padding
    encoder.setup(context(vectors))
    return encoder, vectors


@pytest.mark.unit
def test_scores_are_the_sum_of_both_views_dot_products():
    encoder, vectors = fitted()
    ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    h = encoder(ids)
    assert h.shape == (2, 2 * D) and encoder.hidden_size == 2 * D
    items = encoder.item_embeddings()  # (N, 2D)
    collaborative = encoder.item_embedding.weight[1:N + 1]
    semantic = encoder.adapter(vectors[1:])
    expected = h[:, :D] @ collaborative.T + h[:, D:] @ semantic.T
    assert torch.allclose(h @ items.T, expected, atol=1e-5)


@pytest.mark.unit
def test_collaborative_embeddings_start_from_the_principal_components():
    encoder, vectors = fitted()
    centred = vectors[1:].double() - vectors[1:].double().mean(0)
    projected = principal_components(vectors[1:], D)  # E = 6 < D = 8: two zero columns
    assert torch.allclose(projected[:, E:], torch.zeros(N, D - E))
    # Projections on orthonormal directions keep the centred vectors' norms, and their covariance is diagonal.
    assert torch.allclose(projected.double().norm(dim=1), centred.norm(dim=1), atol=1e-5)
    covariance = projected[:, :E].double().T @ projected[:, :E].double()
    assert torch.allclose(covariance - torch.diag(covariance.diagonal()), torch.zeros(E, E, dtype=torch.float64),
                          atol=1e-6)
    assert torch.allclose(encoder.item_embedding.weight[1:N + 1], projected)


@pytest.mark.unit
def test_the_semantic_table_is_checkpointed_and_its_width_checked():
    encoder, vectors = fitted()
    state = encoder.state_dict()
    assert torch.equal(state["semantic_items"][:N + 1], vectors)
    fresh = LLMESR(N, max_len=L, semantic_dim=E, hidden_size=D).eval()
    fresh.load_state_dict(state)
    ids = torch.tensor([[0, 1, 2, 3]])
    assert torch.allclose(fresh(ids), encoder(ids))
    with pytest.raises(UsageError, match="semantic_dim is 6, but semantic profile wide has width 5"):
        fresh.setup(context(torch.randn(N + 1, 5), profile="wide"))


@pytest.mark.unit
def test_padding_does_not_change_the_representation():
    encoder, _ = fitted()
    ids = torch.tensor([[0, 0, 2, 3]])
    before = encoder(ids)
    with torch.no_grad():
        encoder.item_embedding.weight[0] += 5.0
        encoder.semantic_items[0] += 5.0
    assert torch.allclose(encoder(ids), before, atol=1e-5)


@pytest.mark.unit
def test_distillation_is_the_mse_to_the_neighbours_mean_without_their_gradient():
    encoder, _ = fitted()
    neighbours = torch.tensor([[[0, 1, 2, 3], [0, 0, 4, 5]], [[6, 7, 1, 2], [0, 0, 0, 3]]])  # (B = 2, K = 2, L)
    batch = SeqBatch(input_ids=torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), target=torch.tensor([4, 1]),
                     position=torch.arange(2), user=torch.arange(2), neighbour_input_ids=neighbours)
    h = encoder(batch.input_ids)
    loss = RetrievalDistillation(MethodDims(N, L, 2 * D), weight=0.1)(batch, h, encoder)
    target = encoder(neighbours.view(4, L)).view(2, 2, -1).mean(1)
    assert loss.item() == pytest.approx(((h - target) ** 2).mean().item(), rel=1e-5)
    # Only h carries the gradient: the same as the MSE to a detached target, unlike the MSE to an attached one.
    weight = encoder.final_norm.weight
    (grad,) = torch.autograd.grad(loss, weight, retain_graph=True)
    (detached,) = torch.autograd.grad(((h - target.detach()) ** 2).mean(), weight, retain_graph=True)
    (attached,) = torch.autograd.grad(((h - target) ** 2).mean(), weight)
    assert torch.allclose(grad, detached, atol=1e-7) and not torch.allclose(grad, attached, atol=1e-7)
    with pytest.raises(UsageError, match="retrieved neighbours"):
        RetrievalDistillation(MethodDims(N, L, 2 * D))(SeqBatch(input_ids=batch.input_ids, target=batch.target,
                                                               position=batch.position, user=batch.user), h, encoder)


@pytest.mark.integration
def test_llmesr_config_trains_through_the_cli(tmp_path, synthetic_reviews, semantic_data_root):
    args = tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "llmesr.yaml"),
                     "--config", str(REPO_ROOT / "configs" / "llmesr" / "synthetic.yaml"),
                     "--data.data_root", semantic_data_root, "--model.init_args.encoder.init_args.hidden_size", "16",
                     "--trainer.max_epochs", "1")
    run_train(args)
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["encoder"] == "LLMESR"
    assert results["protocol"]["loss"] == ("full-softmax cross-entropy + 0.1·L_distill (MSE to the mean of the "
                                           "retrieved neighbours' representations)")
    assert results["semantic_profile"] and 0.0 <= results["metrics"]["hr@20"] <= 1.0
