"""Full-ranking HR@K, NDCG@K and MRR@K as a DDP-safe ``torchmetrics.Metric`` (docs/method.md#evaluation).

Each user has one target, so with its 1-based rank ``r`` among all N items:
``HR@K = [r <= K]``, ``NDCG@K = [r <= K] / log2(r + 1)`` (IDCG = 1), ``MRR@K = [r <= K] / r``.

Tie rule (deterministic and pessimistic): ``r = 1 + #{items j != target : score_j >= score_target}``, i.e. an item
scoring *equal* to the target counts as ranked above it. A model that outputs constant scores therefore gets
rank N, not rank 1. The rank is computed by one comparison over the score row, without sorting or top-k.
NOTE: the released code breaks ties arbitrarily (argpartition, then argsort); docs/method.md#deviations, D28.

States are sums plus a count, reduced by summation across processes, so the result is the same at any
evaluation batch size and any number of processes as long as each user is fed exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def target_ranks(scores: Tensor, target_index: Tensor, exclude: Tensor | None = None) -> Tensor:
    """1-based pessimistic rank of each target.

    Args:
        scores: ``(B, N)`` scores of all candidate items.
        target_index: ``(B,)`` column of the target in ``scores``.
        exclude: ``(B, H)`` optional columns to drop from the ranking (e.g. already-seen items), ``-1`` for none.
            The target itself is never dropped.

    Returns:
        ``(B,)`` int64 ranks in ``1..N``.
    """
    scores = scores.float()
    target_score = scores.gather(1, target_index[:, None])  # (B, 1)
    ahead = scores >= target_score  # (B, N); includes the target itself
    if exclude is not None:
        keep = exclude >= 0
        rows = torch.arange(len(scores), device=scores.device)[:, None].expand_as(exclude)
        ahead[rows[keep], exclude[keep]] = False
    ahead.scatter_(1, target_index[:, None], True)  # the target is counted once, whatever was excluded
    return ahead.sum(dim=1)


class RankingMetrics(Metric):
    """HR@K, NDCG@K and MRR@K over the full item set.

    Args:
        ks: Cut-offs K.

    ``compute()`` returns ``{"hr@K": ..., "ndcg@K": ..., "mrr@K": ..., "count": ...}`` with ``count`` the number
    of users evaluated.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (5, 10, 20), **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        # sums[m, j] = sum over users of metric m (hr, ndcg, mrr) at cut-off ks[j]
        self.add_state("sums", torch.zeros(3, len(self.ks), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, target_index: Tensor, exclude: Tensor | None = None) -> None:
        """Add a batch: ``scores`` (B, N), ``target_index`` (B,), ``exclude`` (B, H); see :func:`target_ranks`."""
        self.update_ranks(target_ranks(scores, target_index, exclude))

    def update_ranks(self, ranks: Tensor) -> None:
        """Add a batch of already computed 1-based ranks ``(B,)``."""
        ranks = ranks.to(torch.float64)[:, None]  # (B, 1)
        ks = torch.tensor(self.ks, dtype=torch.float64, device=ranks.device)[None, :]  # (1, K)
        hit = (ranks <= ks).to(torch.float64)  # (B, K)
        ndcg = hit / torch.log2(ranks + 1.0)
        mrr = hit / ranks
        self.sums += torch.stack([hit.sum(0), ndcg.sum(0), mrr.sum(0)])
        self.count += ranks.shape[0]

    def compute(self) -> dict[str, Tensor]:
        means = self.sums / self.count.clamp_min(1)
        out: dict[str, Tensor] = {}
        for m, name in enumerate(("hr", "ndcg", "mrr")):
            for j, k in enumerate(self.ks):
                out[f"{name}@{k}"] = means[m, j].float()
        out["count"] = self.count
        return out
