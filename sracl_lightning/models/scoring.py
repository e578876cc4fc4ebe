"""Scores of every item for a batch of user representations, with already-seen items masked
(docs/method.md#evaluation).

The one scoring rule of the package: evaluation (``SRACLModule._update_ranking``), the sparse-user figure
(:func:`sracl_lightning.experiments.figures.metrics_by_length`) and serving
(:class:`sracl_lightning.serving.recommend.Recommender`) all score through :func:`score_items`, via
:meth:`SRACLModule.item_scores <sracl_lightning.methods.module.SRACLModule.item_scores>`.

Dimension letters: B users, D hidden, N items, H history columns.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def score_items(h: Tensor, item_embeddings: Tensor, exclude: Tensor | None = None,
                keep: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """``h · e_j`` for every item, in fp32 even under mixed precision (bf16 would create spurious ties).

    Args:
        h: (B, D) user representations.
        item_embeddings: (N, D) embeddings of items 1..N; column ``j`` of the result is item ``j + 1``.
        exclude: (B, H) optional columns to set to ``-inf`` (e.g. already-seen items), ``-1`` for none.
        keep: (B,) optional column per row that keeps its score whatever ``exclude`` says (the evaluation target:
            an item seen before that is the target again is still ranked).
        out: optional (B, N) float32 tensor to write the scores into (a buffer reused across chunks).

    Returns:
        (B, N) float32 scores, ``-inf`` at the excluded columns.

    Ranking the masked scores with :func:`~sracl_lightning.models.metrics.target_ranks` equals ranking the raw scores
    with the same ``exclude``.
    """
    with torch.autocast(device_type=h.device.type, enabled=False):
        scores = torch.mm(h.float(), item_embeddings.float().T, out=out)  # (B, N)
    if exclude is None:
        return scores
    kept = None if keep is None else scores.gather(1, keep[:, None])  # (B, 1)
    valid = exclude >= 0  # (B, H)
    rows = torch.arange(len(scores), device=scores.device)[:, None].expand_as(exclude)  # (B, H)
    scores[rows[valid], exclude[valid]] = float("-inf")
    if kept is not None:
        scores.scatter_(1, keep[:, None], kept)
    return scores


#: Users scored at once by :func:`rank_targets` on a CPU: a (64, N) fp32 block stays in cache while it is compared,
#: which makes ranking about 6x faster than scoring 1024 users at once (bench/backbone.py measures it).
CPU_CHUNK = 64
#: On a GPU, larger blocks keep the device busy.
GPU_CHUNK = 4096

ScoreFn = Callable[[Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor]


def rank_targets(h: Tensor, target: Tensor, score: ScoreFn, exclude: Tensor | None = None,
                 chunk_size: int | None = None) -> Tensor:
    """1-based pessimistic rank (B,) of each row's target column, scored ``chunk_size`` users at a time.

    The rule is :func:`~sracl_lightning.models.metrics.target_ranks`'s: ``1 + #{j != target, not excluded:
    score_j >= score_target}``. Per chunk the scores go into one reused buffer (``score(..., out=buffer)``, e.g.
    :func:`score_items` or ``SRACLModule.item_scores``), excluded columns at ``-inf`` and the target's kept, and are
    compared in place: no (users x items) matrix beyond a chunk is ever held.

    Args:
        h: (B, D) user representations.
        target: (B,) target column of each row.
        score: ``score(h_chunk, exclude_chunk, keep, out) -> (b, N)`` fp32 scores.
        exclude: (B, H) optional columns to leave out, ``-1`` for none.
        chunk_size: Users per block (default :data:`CPU_CHUNK` on a CPU, :data:`GPU_CHUNK` otherwise).

    Returns:
        (B,) int64 ranks in ``1..N``.
    """
    size = chunk_size or (CPU_CHUNK if h.device.type == "cpu" else GPU_CHUNK)
    ranks, buffer = [], None
    for lo in range(0, len(h), size):
        rows = slice(lo, lo + size)
        keep = target[rows]  # (b,)
        scores = score(h[rows], None if exclude is None else exclude[rows], keep,
                       None if buffer is None else buffer[:len(keep)])  # (b, N)
        buffer = scores if buffer is None else buffer
        own = scores.gather(1, keep[:, None])  # (b, 1)
        ranks.append(scores.ge_(own).sum(1, dtype=torch.int64))  # in place: the block is not needed afterwards
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.int64, device=h.device)
