"""Recommendation losses: the term every method trains with, ``L_rec`` of Eq. 12.

A recommendation loss is a module ``forward(batch, h, encoder) -> scalar`` over the recommendation pass ``h`` of a
training batch; the module is injected into :class:`~sracl_lightning.methods.module.SRACLModule` as ``rec_loss``
(in YAML, ``model.init_args.rec_loss`` with a ``class_path``), so any method trains with any of them:

* :class:`FullSoftmaxCrossEntropy`: over all N items, the paper's and the RecBole lineage's loss (the default);
* :class:`BinaryCrossEntropy`: the target against k sampled negatives (k = 1: SASRec and the S3-Rec lineage);
* :class:`GeneralisedBinaryCrossEntropy`: gSASRec's gBCE;
* :class:`SampledSoftmaxCrossEntropy`: cross-entropy over the target and k sampled negatives.

Shapes: B batch, D hidden, N items, k sampled negatives per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import check_at_least, check_in_range
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import linear_cross_entropy


class RecLoss(nn.Module):
    """Base class of the recommendation losses."""

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """The loss in words, for the printed protocol."""
        return type(self).__name__


class FullSoftmaxCrossEntropy(RecLoss):
    """Cross-entropy over all N items (the paper's and the released code's ``L_rec``, docs/method.md#backbone).

    Padding and the encoder's extra tokens are never classes: the logits are ``h @ item_embeddings().T`` (B, N),
    computed with their loss and gradient block by block (:func:`~sracl_lightning.models.kernels.linear_cross_entropy`).
    """

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        return linear_cross_entropy(h, encoder.item_embeddings(), batch.target - 1)

    def describe(self) -> str:
        return "full-softmax cross-entropy"


def sample_negatives(seen: Tensor, num_items: int, num_negatives: int) -> Tensor:
    """Item ids drawn uniformly, with replacement, from the items a row has not seen.

    Exact and free of host synchronisation: row ``b`` excludes the ``M_b`` distinct items of ``seen[b]`` (ids
    outside ``1..N``, padding and extra tokens, are ignored), draws ranks ``r`` uniformly in ``1..N - M_b`` and maps
    each to the ``r``-th item not excluded, ``r + #{j : e_j - j - 1 < r}`` over the sorted excluded ids ``e_j``
    (``j`` 0-based), found by binary search.

    Args:
        seen: ``(B, S)`` int64 ids to exclude per row (the window and the target).
        num_items: ``N``.
        num_negatives: ``k`` draws per row.

    Returns:
        ``(B, k)`` int64 item ids in ``1..N``, none of them in its row of ``seen``. A row that has seen every item
        (possible only when ``N <= S``) draws from all items.
    """
    batch = seen.shape[0]
    valid = (seen >= 1) & (seen <= num_items)
    ids = torch.where(valid, seen, num_items + 1).sort(dim=1).values  # (B, S), invalid ids sorted last
    repeat = torch.zeros_like(valid)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    ids = torch.where(repeat, num_items + 1, ids).sort(dim=1).values  # (B, S): distinct excluded ids, then N + 1
    excluded = (ids <= num_items).sum(dim=1, keepdim=True)  # (B, 1) M_b
    position = torch.arange(ids.shape[1], device=seen.device)
    full = excluded >= num_items  # (B, 1): a row that has seen every item draws from all of them
    # (B, S) non-decreasing: e_j - j - 1 = how many allowed items precede e_j; the padding sorts after every rank
    keys = torch.where((ids <= num_items) & ~full, ids - position - 1, num_items + 1).contiguous()
    allowed = torch.where(full, num_items, num_items - excluded)  # (B, 1)
    draws = torch.rand(batch, num_negatives, device=seen.device)
    ranks = (draws * allowed).long().clamp(max=allowed - 1) + 1  # (B, k) uniform in 1..N - M_b
    return ranks + torch.searchsorted(keys, ranks)  # (B, k): ranks shifted past the excluded ids below them


class SampledRecLoss(RecLoss):
    """A recommendation loss over the target's score and the scores of ``k`` sampled negatives.

    Negatives are drawn per sample, uniformly with replacement, from the items that are neither the target nor in
    the sample's window (:func:`sample_negatives`); a variant overrides :meth:`loss`.

    NOTE: SASRec's and S3-Rec's code exclude the user's whole training sequence; a training batch carries only
    the window (the last L items), so for a history longer than L an item seen before the window may be drawn.

    Args:
        num_negatives: ``k``, negatives per sample.
    """

    def __init__(self, num_negatives: int = 1) -> None:
        super().__init__()
        check_at_least(f"{type(self).__name__}.num_negatives", num_negatives, 1)
        self.num_negatives = num_negatives

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        weight = encoder.item_embeddings()  # (N, D)
        seen = torch.cat([batch.input_ids, batch.target[:, None]], dim=1)  # (B, L + 1)
        negatives = sample_negatives(seen, encoder.num_items, self.num_negatives)  # (B, k)
        candidates = torch.cat([batch.target[:, None], negatives], dim=1)  # (B, 1 + k), the target first
        scores = torch.einsum("bd,bcd->bc", h, weight[candidates - 1]).float()  # (B, 1 + k)
        return self.loss(scores[:, 0], scores[:, 1:], encoder.num_items)

    def loss(self, positive: Tensor, negative: Tensor, num_items: int) -> Tensor:
        """The scalar loss from the target's scores ``(B,)`` and the negatives' ``(B, k)``."""
        raise NotImplementedError


class BinaryCrossEntropy(SampledRecLoss):
    """Binary cross-entropy of the target against ``k`` sampled negatives (SASRec, Kang & McAuley ICDM 2018; the
    S3-Rec lineage's loss, Table 1's SASRec row with ``k = 1``):
    ``mean_b [-log σ(s_b⁺) - Σ_j log(1 - σ(s_bj⁻))]``.

    NOTE: SASRec scores every position of a user's sequence in one pass; here each training prefix is a sample
    (docs/method.md#samples-and-windows), which weights the positions the same way.
    """

    def positive_weight(self, num_items: int) -> float:
        """The weight of the target's term (1; gBCE's β)."""
        return 1.0

    def loss(self, positive: Tensor, negative: Tensor, num_items: int) -> Tensor:
        # -log σ(s) = softplus(-s) and -log(1 - σ(s)) = softplus(s), stable at any score
        per_sample = self.positive_weight(num_items) * F.softplus(-positive) + F.softplus(negative).sum(-1)
        return per_sample.mean()

    def describe(self) -> str:
        return f"binary cross-entropy, {self.num_negatives} sampled negative(s)"


class GeneralisedBinaryCrossEntropy(BinaryCrossEntropy):
    """gBCE (gSASRec, Petrov & Macdonald RecSys 2023): BCE whose positive term is raised to the power β, which
    undoes the overconfidence that negative sampling teaches:
    ``β = α (t (1 - 1/α) + 1/α)`` with sampling rate ``α = k / (N - 1)`` and calibration ``t ∈ [0, 1]``
    (``t = 0``: β = 1, plain BCE; ``t = 1``: β = α). As in the official code, the loss is the mean over the
    ``1 + k`` terms of each sample.

    NOTE: the official code computes α with ``N - 2`` (its pool size is ``num_items - 1``); here ``N - 1``, the
    items a negative can be, as in the paper's definition.

    Args:
        num_negatives: ``k`` (gSASRec's default 256).
        calibration: ``t`` (gSASRec's default 0.75).
    """

    def __init__(self, num_negatives: int = 256, calibration: float = 0.75) -> None:
        super().__init__(num_negatives)
        check_in_range("GeneralisedBinaryCrossEntropy.calibration", calibration, 0.0, 1.0)
        self.calibration = calibration

    def positive_weight(self, num_items: int) -> float:
        alpha = self.num_negatives / max(num_items - 1, 1)
        return alpha * (self.calibration * (1 - 1 / alpha) + 1 / alpha)

    def loss(self, positive: Tensor, negative: Tensor, num_items: int) -> Tensor:
        return super().loss(positive, negative, num_items) / (1 + self.num_negatives)

    def describe(self) -> str:
        return f"gBCE, {self.num_negatives} sampled negatives, t = {self.calibration}"


class SampledSoftmaxCrossEntropy(SampledRecLoss):
    """Cross-entropy over the target and ``k`` sampled negatives (SASRec with sampled softmax: Klenitskiy &
    Vasilev RecSys 2023; eSASRec, RecSys 2025): ``mean_b [logsumexp(s_b⁺, s_b1⁻, ..., s_bk⁻) - s_b⁺]``.

    Negatives are uniform, so the softmax needs no log-Q correction.

    Args:
        num_negatives: ``k``.
    """

    def __init__(self, num_negatives: int = 256) -> None:
        super().__init__(num_negatives)

    def loss(self, positive: Tensor, negative: Tensor, num_items: int) -> Tensor:
        logits = torch.cat([positive[:, None], negative], dim=1)  # (B, 1 + k), the target in column 0
        return F.cross_entropy(logits, torch.zeros_like(positive, dtype=torch.long))

    def describe(self) -> str:
        return f"sampled-softmax cross-entropy, {self.num_negatives} sampled negatives"
