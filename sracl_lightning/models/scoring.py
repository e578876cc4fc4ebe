"""Scores of every item for a batch of user representations, with already-seen items masked
(docs/method.md#evaluation).

The one scoring rule of the package: evaluation (``SRACLModule._update_ranking``), the sparse-user figure
(:func:`sracl_lightning.experiments.figures.metrics_by_length`) and serving
(:class:`sracl_lightning.serving.recommend.Recommender`) all score through :func:`score_items`, via
:meth:`SRACLModule.item_scores <sracl_lightning.methods.module.SRACLModule.item_scores>`.

Dimension letters: B users, D hidden, N items, H history columns.
"""

from __future__ import annotations

import torch
from torch import Tensor


def score_items(h: Tensor, item_embeddings: Tensor, exclude: Tensor | None = None,
                keep: Tensor | None = None) -> Tensor:
    """``h · e_j`` for every item, in fp32 even under mixed precision (bf16 would create spurious ties).

    Args:
        h: (B, D) user representations.
        item_embeddings: (N, D) embeddings of items 1..N; column ``j`` of the result is item ``j + 1``.
        exclude: (B, H) optional columns to set to ``-inf`` (e.g. already-seen items), ``-1`` for none.
        keep: (B,) optional column per row that keeps its score whatever ``exclude`` says (the evaluation target:
            an item seen before that is the target again is still ranked).

    Returns:
        (B, N) float32 scores, ``-inf`` at the excluded columns.

    Ranking the masked scores with :func:`~sracl_lightning.models.metrics.target_ranks` equals ranking the raw scores
    with the same ``exclude``.
    """
    with torch.autocast(device_type=h.device.type, enabled=False):
        scores = h.float() @ item_embeddings.float().T  # (B, N)
    if exclude is None:
        return scores
    kept = None if keep is None else scores.gather(1, keep[:, None])  # (B, 1)
    valid = exclude >= 0  # (B, H)
    rows = torch.arange(len(scores), device=scores.device)[:, None].expand_as(exclude)  # (B, H)
    scores[rows[valid], exclude[valid]] = float("-inf")
    if kept is not None:
        scores.scatter_(1, keep[:, None], kept)
    return scores
