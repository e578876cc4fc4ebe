"""Full-ranking HR@K, NDCG@K and MRR@K as a DDP-safe ``torchmetrics.Metric`` (docs/method.md#evaluation).

Each user has one target, so with its 1-based rank ``r`` among all N items:
``HR@K = [r <= K]``, ``NDCG@K = [r <= K] / log2(r + 1)`` (IDCG = 1), ``MRR@K = [r <= K] / r``.

Tie rule (deterministic and pessimistic): ``r = 1 + #{items j != target : score_j >= score_target}``, i.e. an item
scoring *equal* to the target counts as ranked above it. A model that outputs constant scores therefore gets
rank N, not rank 1. The rank is computed by one comparison over the score row, without sorting or top-k.
NOTE: the released code breaks ties arbitrarily (argpartition, then argsort); docs/method.md#deviations, D28.

States are sums plus a count, reduced by summation across processes, so the result is the same at any
evaluation batch size and any number of processes as long as each user is fed exactly once. With ``keep_ranks`` the
metric also keeps every user's rank (gathered across processes), for per-user statistics such as bootstrap
confidence intervals (:func:`per_user_values` is the one place the three formulas are written).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def per_user_values(ranks: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """``{"hr@K": (U,), "ndcg@K": (U,), "mrr@K": (U,)}`` float64 per-user values of 1-based ``ranks`` (U,)."""
    ranks = ranks.to(torch.float64)
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = (ranks <= k).to(torch.float64)
        out[f"hr@{k}"], out[f"ndcg@{k}"], out[f"mrr@{k}"] = hit, hit / torch.log2(ranks + 1.0), hit / ranks
    return out


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
        keep_ranks: Also keep each user's rank (:meth:`user_ranks`); updates must then give the users.

    ``compute()`` returns ``{"hr@K": ..., "ndcg@K": ..., "mrr@K": ..., "count": ...}`` with ``count`` the number
    of users evaluated.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (5, 10, 20), keep_ranks: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        # sums[m, j] = sum over users of metric m (hr, ndcg, mrr) at cut-off ks[j]
        self.add_state("sums", torch.zeros(3, len(self.ks), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.keep_ranks = keep_ranks
        if keep_ranks:  # (user, rank) of every update, concatenated across processes
            self.add_state("users", [], dist_reduce_fx="cat")
            self.add_state("ranks", [], dist_reduce_fx="cat")

    def update(self, scores: Tensor, target_index: Tensor, exclude: Tensor | None = None) -> None:
        """Add a batch: ``scores`` (B, N), ``target_index`` (B,), ``exclude`` (B, H); see :func:`target_ranks`."""
        self._add_ranks(target_ranks(scores, target_index, exclude))

    def update_ranks(self, ranks: Tensor, users: Tensor | None = None) -> None:
        """Add a batch of already computed 1-based ranks ``(B,)`` of the users ``(B,)`` (needed with
        ``keep_ranks``)."""
        # What torchmetrics' wrapper does around update(): drop the cached compute() result and count the update
        # (else compute() after update_ranks() alone warns that nothing was updated, and could return a stale value).
        self._computed = None
        self._update_count += 1
        self._add_ranks(ranks, users)

    def _add_ranks(self, ranks: Tensor, users: Tensor | None = None) -> None:
        values = per_user_values(ranks, self.ks)
        self.sums += torch.stack([torch.stack([values[f"{name}@{k}"].sum() for k in self.ks])
                                  for name in ("hr", "ndcg", "mrr")])
        self.count += ranks.shape[0]
        if self.keep_ranks:
            if users is None:
                raise ValueError("RankingMetrics(keep_ranks=True) needs the users of each batch")
            self.users.append(users.to(torch.int64))
            self.ranks.append(ranks.to(torch.int64))

    def user_ranks(self) -> tuple[Tensor, Tensor]:
        """``(users, ranks)``, both (U,) int64 and sorted by user, over every process (call before ``reset``)."""
        if not self.keep_ranks:
            raise RuntimeError("this RankingMetrics keeps no ranks: build it with keep_ranks=True")
        with self.sync_context(should_sync=True, should_unsync=True):
            users, ranks = dim_zero_cat(self.users), dim_zero_cat(self.ranks)
        order = users.argsort()
        return users[order].cpu(), ranks[order].cpu()

    def compute(self) -> dict[str, Tensor]:
        means = self.sums / self.count.clamp_min(1)
        out: dict[str, Tensor] = {}
        for m, name in enumerate(("hr", "ndcg", "mrr")):
            for j, k in enumerate(self.ks):
                out[f"{name}@{k}"] = means[m, j].float()
        out["count"] = self.count
        return out
