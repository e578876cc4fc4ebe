"""InfoNCE (docs/method.md#infonce, Eqs. 9 and 11) against hand computation, a naive double-loop reference, and
2-process gloo.

Hand-computed fixture (B = 2, D = 2):
    a0 = (1, 0), a1 = (0, 0.5), p0 = (2, 1), p1 = (-1, 3)
    a0·p0 = 2, a0·p1 = -1, a1·p0 = 0.5, a1·p1 = 1.5, a0·a1 = 0, p0·p1 = 1
"""

from __future__ import annotations

import math
import socket
from itertools import product
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sracl_lightning.methods.losses import InfoNCE, info_nce

A = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
P = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])
MODES = list(product(("all", "positives"), (True, False)))  # (negatives, symmetric)


def ce(positive: float, negatives: list[float]) -> float:
    """-log softmax of the positive over [positive, negatives], by hand."""
    return -positive + math.log(math.exp(positive) + sum(math.exp(n) for n in negatives))


def reference(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 1.0, similarity: str = "dot",
              symmetric: bool = True, negatives: str = "all") -> torch.Tensor:
    """Naive float64 double loop over queries and keys, straight from docs/method.md#infonce and Eq. 9."""
    b = anchors.shape[0]
    z = torch.cat([anchors, positives]).double()  # (2B, D)

    def sim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if similarity == "cosine":
            x, y = x / x.norm(), y / y.norm()
        return torch.dot(x, y) / temperature

    losses = []
    for q in range(2 * b if symmetric else b):
        partner = q + b if q < b else q - b
        candidates = []  # the positive and every negative
        for k in range(2 * b):
            if k == q or (negatives == "positives" and (k < b) == (q < b)):
                continue
            candidates.append(sim(z[q], z[k]))
        losses.append(torch.logsumexp(torch.stack(candidates), 0) - sim(z[q], z[partner]))
    return torch.stack(losses).mean()


# --- hand-computed values ---------------------------------------------------------------------------------------


@pytest.mark.unit
def test_nt_xent_symmetric_by_hand() -> None:
    expected = (ce(2.0, [0.0, -1.0])  # a0: positive p0; negatives a1, p1
                + ce(1.5, [0.0, 0.5])  # a1: positive p1; negatives a0, p0
                + ce(2.0, [0.5, 1.0])  # p0: positive a0; negatives a1, p1
                + ce(1.5, [-1.0, 1.0])) / 4  # p1: positive a1; negatives a0, p0
    assert info_nce(A, P).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.unit
def test_nt_xent_one_sided_by_hand() -> None:
    expected = (ce(2.0, [0.0, -1.0]) + ce(1.5, [0.0, 0.5])) / 2
    assert info_nce(A, P, symmetric=False).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.unit
def test_paper_eq9_negatives_by_hand() -> None:
    one_sided = (ce(2.0, [-1.0]) + ce(1.5, [0.5])) / 2  # a_i against p_j only
    transposed = (ce(2.0, [0.5]) + ce(1.5, [-1.0])) / 2  # p_i against a_j only
    assert info_nce(A, P, negatives="positives", symmetric=False).item() == pytest.approx(one_sided, rel=1e-6)
    assert info_nce(A, P, negatives="positives").item() == pytest.approx((one_sided + transposed) / 2, rel=1e-6)


@pytest.mark.unit
def test_temperature_by_hand() -> None:
    t = 0.5
    expected = (ce(2.0 / t, [0.0, -1.0 / t]) + ce(1.5 / t, [0.0, 0.5 / t])) / 2
    assert info_nce(A, P, temperature=t, symmetric=False).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.unit
def test_cosine_by_hand() -> None:
    n_a0, n_a1, n_p0, n_p1 = 1.0, 0.5, math.sqrt(5), math.sqrt(10)
    expected = (ce(2.0 / (n_a0 * n_p0), [0.0, -1.0 / (n_a0 * n_p1)])
                + ce(1.5 / (n_a1 * n_p1), [0.0, 0.5 / (n_a1 * n_p0)])) / 2
    assert info_nce(A, P, similarity="cosine", symmetric=False).item() == pytest.approx(expected, rel=1e-6)


# --- properties -------------------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("negatives,symmetric", MODES)
def test_positive_is_at_the_right_index(negatives: str, symmetric: bool) -> None:
    torch.manual_seed(0)
    anchors = torch.randn(16, 8)
    positives = anchors + 0.1 * torch.randn(16, 8)
    aligned = info_nce(anchors, positives, negatives=negatives, symmetric=symmetric)
    shuffled = info_nce(anchors, positives.roll(1, dims=0), negatives=negatives, symmetric=symmetric)
    assert shuffled > aligned + 1.0


@pytest.mark.unit
@pytest.mark.parametrize("negatives,symmetric", MODES)
def test_perfect_alignment_gives_zero_loss(negatives: str, symmetric: bool) -> None:
    # Orthogonal rows of norm 10: positive logit 100, every negative 0. The self-similarity (also 100) must be
    # masked, otherwise "all" would give log 2.
    anchors = 10 * torch.eye(4, 6)
    assert info_nce(anchors, anchors.clone(), negatives=negatives, symmetric=symmetric).item() < 1e-30


@pytest.mark.unit
def test_temperature_scales_dot_logits() -> None:
    torch.manual_seed(1)
    anchors, positives = torch.randn(5, 4), torch.randn(5, 4)
    t = 0.2
    scaled = info_nce(anchors / math.sqrt(t), positives / math.sqrt(t))
    assert info_nce(anchors, positives, temperature=t).item() == pytest.approx(scaled.item(), rel=1e-5)


@pytest.mark.unit
def test_cosine_ignores_row_norms_dot_does_not() -> None:
    torch.manual_seed(2)
    anchors, positives = torch.randn(5, 4), torch.randn(5, 4)
    scale = torch.rand(5, 1) * 5 + 0.5  # a positive norm per row
    cosine = info_nce(anchors, positives, similarity="cosine")
    assert info_nce(anchors * scale, positives, similarity="cosine").item() == pytest.approx(cosine.item(), rel=1e-5)
    unit_a, unit_p = torch.nn.functional.normalize(anchors, dim=1), torch.nn.functional.normalize(positives, dim=1)
    assert info_nce(unit_a, unit_p).item() == pytest.approx(cosine.item(), rel=1e-5)
    assert info_nce(anchors, positives).item() != pytest.approx(cosine.item(), rel=1e-2)


@pytest.mark.unit
@pytest.mark.parametrize("negatives", ["all", "positives"])
def test_symmetric_is_the_mean_of_both_directions(negatives: str) -> None:
    torch.manual_seed(3)
    anchors, positives = torch.randn(6, 4), 2 * torch.randn(6, 4)
    forward = info_nce(anchors, positives, negatives=negatives, symmetric=False)
    backward = info_nce(positives, anchors, negatives=negatives, symmetric=False)
    symmetric = info_nce(anchors, positives, negatives=negatives)
    assert symmetric.item() == pytest.approx((forward + backward).item() / 2, rel=1e-5)
    assert forward.item() != pytest.approx(backward.item(), rel=1e-2)  # the two directions differ here


@pytest.mark.unit
def test_paper_negatives_are_a_subset_of_the_code_negatives() -> None:
    # Same positives, fewer negatives: the Eq. 9 loss is never larger than NT-Xent's.
    torch.manual_seed(4)
    anchors, positives = torch.randn(8, 4), torch.randn(8, 4)
    assert info_nce(anchors, positives, negatives="positives") < info_nce(anchors, positives)


@pytest.mark.unit
@pytest.mark.parametrize("negatives,symmetric", MODES)
def test_batch_of_one_has_no_negatives(negatives: str, symmetric: bool) -> None:
    anchors, positives = torch.randn(1, 4, requires_grad=True), torch.randn(1, 4, requires_grad=True)
    loss = info_nce(anchors, positives, negatives=negatives, symmetric=symmetric)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(anchors.grad, torch.zeros(1, 4)) and torch.equal(positives.grad, torch.zeros(1, 4))


@pytest.mark.unit
@pytest.mark.parametrize("similarity,temperature", [("dot", 1.0), ("dot", 0.3), ("cosine", 0.1)])
@pytest.mark.parametrize("negatives,symmetric", MODES)
def test_matches_naive_reference_value_and_gradient(negatives: str, symmetric: bool, similarity: str,
                                                    temperature: float) -> None:
    torch.manual_seed(5)
    anchors, positives = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    kwargs = dict(temperature=temperature, similarity=similarity, symmetric=symmetric, negatives=negatives)
    ours_a, ours_p = anchors.clone().requires_grad_(), positives.clone().requires_grad_()
    ref_a, ref_p = anchors.clone().requires_grad_(), positives.clone().requires_grad_()
    ours = info_nce(ours_a, ours_p, **kwargs)
    ref = reference(ref_a, ref_p, **kwargs)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # Gradients flow to both inputs (in the inputs' dtype) and match the reference.
    torch.testing.assert_close(ours_a.grad, ref_a.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours_p.grad, ref_p.grad, rtol=1e-4, atol=1e-6)
    assert ours_a.grad.abs().sum() > 0 and ours_p.grad.abs().sum() > 0
    # The module without gathering is the same loss.
    module = InfoNCE(temperature, similarity, symmetric, negatives, gather_across_ranks="with_grad")
    assert module(anchors, positives).item() == pytest.approx(ours.item(), rel=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_under_autocast_is_computed_in_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(6)
    layer = torch.nn.Linear(16, 64)
    x, y = torch.randn(32, 16), torch.randn(32, 16)
    full = info_nce(layer(x), layer(y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_x, h_y = layer(x).to(dtype), layer(y).to(dtype)  # (B, D) half-precision encodings
        loss = InfoNCE()(h_x, h_y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # Exactly the float32 loss of the rounded inputs: nothing was computed in half precision ...
    assert loss.item() == pytest.approx(info_nce(h_x.float(), h_y.float()).item(), rel=1e-6)
    # ... and close to the float32 loss of the unrounded ones.
    assert loss.item() == pytest.approx(full.item(), rel=2e-2)


@pytest.mark.unit
def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="B, D"):
        info_nce(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="B, D"):
        info_nce(torch.randn(0, 4), torch.randn(0, 4))
    with pytest.raises(ValueError, match="similarity"):
        info_nce(A, P, similarity="l2")
    with pytest.raises(ValueError, match="negatives"):
        InfoNCE(negatives="anchors")
    with pytest.raises(ValueError, match="gather_across_ranks"):
        InfoNCE(gather_across_ranks="yes")


# --- 2-process gloo -----------------------------------------------------------------------------------------------

DDP_SIZES = [(3, 3), (3, 2)]  # equal batches, and a smaller last batch on rank 1
DDP_CASES = [(sizes, gather, negatives, symmetric, similarity)
             for sizes in DDP_SIZES for gather in ("with_grad", "no_grad")
             for negatives, symmetric in MODES for similarity in ("dot", "cosine")]


def ddp_inputs(sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch, identical on every process."""
    generator = torch.Generator().manual_seed(sum(sizes))
    return torch.randn(sum(sizes), 4, generator=generator), torch.randn(sum(sizes), 4, generator=generator)


def ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One rank: the loss of its slice with gathered negatives, and the gradient of its slice."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        results = []
        for sizes, gather, negatives, symmetric, similarity in DDP_CASES:
            anchors, positives = ddp_inputs(sizes)
            start, size = sum(sizes[:rank]), sizes[rank]
            local_a = anchors[start:start + size].clone().requires_grad_()
            local_p = positives[start:start + size].clone().requires_grad_()
            loss = InfoNCE(1.0, similarity, symmetric, negatives, gather)(local_a, local_p)
            # What DDP does to a per-rank mean, reweighted to the global mean for unequal batches (weight 1 if equal).
            (loss * size * world_size / sum(sizes)).backward()
            results.append((loss.detach(), local_a.grad, local_p.grad))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


class FixedGlobalBatch(InfoNCE):
    """A variant overriding ``gather`` only: the global batch is given, the other ranks' rows are constants."""

    def __init__(self, anchors: torch.Tensor, positives: torch.Tensor, start: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.global_anchors, self.global_positives, self.start = anchors, positives, start

    def gather(self, anchors: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        end = self.start + anchors.shape[0]
        return (torch.cat([self.global_anchors[:self.start], anchors, self.global_anchors[end:]]),
                torch.cat([self.global_positives[:self.start], positives, self.global_positives[end:]]), self.start)


def local_only_gradient(anchors: torch.Tensor, positives: torch.Tensor, sizes: tuple[int, ...], rank: int,
                        world_size: int, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s input gradient when the gather carries no gradient, computed in one process."""
    start, size = sum(sizes[:rank]), sizes[rank]
    local_a = anchors[start:start + size].clone().requires_grad_()
    local_p = positives[start:start + size].clone().requires_grad_()
    loss = FixedGlobalBatch(anchors, positives, start, **kwargs)(local_a, local_p)
    (loss * size * world_size / sum(sizes)).backward()
    return local_a.grad, local_p.grad


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_gather_across_two_gloo_ranks_equals_the_concatenated_batch(tmp_path) -> None:
    """Gathered negatives on 2 ranks reproduce the single-process loss on the concatenated batch.

    Averaging convention: each rank returns the mean over its own query rows, so the global loss is the rows-weighted
    mean sum_r loss_r · B_r / G (the plain mean of the ranks' losses with equal batches). With "with_grad", backward
    of loss_r · B_r · W / G on every rank (plain loss_r with equal batches, as under DDP) leaves W × the
    single-process gradient on each rank's slice; DDP's ÷ W averaging removes the factor W.
    "no_grad" gives the same loss value and a gradient that only covers the local queries.
    """
    world_size = 2
    mp.spawn(ddp_worker, args=(world_size, free_port(), str(tmp_path)), nprocs=world_size, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    for i, (sizes, gather, negatives, symmetric, similarity) in enumerate(DDP_CASES):
        case = f"{sizes} {gather} {negatives} symmetric={symmetric} {similarity}"
        anchors, positives = ddp_inputs(sizes)
        anchors.requires_grad_()
        positives.requires_grad_()
        single = info_nce(anchors, positives, similarity=similarity, symmetric=symmetric, negatives=negatives)
        single.backward()
        losses = [ranks[r][i][0] for r in range(world_size)]
        weighted = sum(loss * size / sum(sizes) for loss, size in zip(losses, sizes, strict=True))
        assert weighted.item() == pytest.approx(single.item(), rel=1e-5), case
        grad_a = torch.cat([ranks[r][i][1] for r in range(world_size)])
        grad_p = torch.cat([ranks[r][i][2] for r in range(world_size)])
        assert torch.isfinite(grad_a).all() and torch.isfinite(grad_p).all(), case
        if gather == "with_grad":
            torch.testing.assert_close(grad_a, world_size * anchors.grad, rtol=1e-4, atol=1e-6, msg=case)
            torch.testing.assert_close(grad_p, world_size * positives.grad, rtol=1e-4, atol=1e-6, msg=case)
        else:  # only the local queries' gradient: the other rank's rows are constants
            expected = [local_only_gradient(anchors.detach(), positives.detach(), sizes, r, world_size,
                                            similarity=similarity, symmetric=symmetric, negatives=negatives)
                        for r in range(world_size)]
            torch.testing.assert_close(grad_a, torch.cat([e[0] for e in expected]), rtol=1e-4, atol=1e-6, msg=case)
            torch.testing.assert_close(grad_p, torch.cat([e[1] for e in expected]), rtol=1e-4, atol=1e-6, msg=case)
