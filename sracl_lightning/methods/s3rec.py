"""S3-Rec (Zhou et al., "S3-Rec: Self-Supervised Learning for Sequential Recommendation with Mutual Information
Maximization", CIKM 2020; official code RUCAIBox/CIKM2020-S3Rec at 2a81540): self-supervised pre-training of the
SASRec encoder with bidirectional attention, then ordinary fine-tuning.

Pre-training sequences are the training prefixes *with* their target (the official ``PretrainDataset``: every
prefix of each user's training part, the last L items), ``s = [v_1, ..., v_n]``, encoded bidirectionally (padding
keys masked, no causal mask) by the fine-tuning encoder's own blocks: ``F = enc↔(s')`` (B, L, D).

* **MIP** (masked item prediction): every item but the last is replaced by the ``mask`` token with probability
  ρ = 0.2, the last always; at each masked position t, with a negative item v⁻ not in s,
  ``ℓ = BCE(σ(σ(⟨W_MIP F_t, e_{v_t}⟩) − σ(⟨W_MIP F_t, e_{v⁻}⟩)), 1)``.
* **SP** (segment prediction): a random segment of 1..⌊n/2⌋ items is masked out of s; the masked sequence's last
  output ``c``, the segment alone (every other position masked) ``s⁺`` and a segment of the same length from
  elsewhere in the training data ``s⁻`` (last outputs) give ``ℓ = BCE(σ(σ(⟨W_SP c, s⁺⟩) − σ(⟨W_SP c, s⁻⟩)), 1)``.
* **AAP / MAP** (associated / masked attribute prediction) need item attributes: they are not built here (below).

``L_pre = w_MIP Σ ℓ_MIP + w_SP Σ ℓ_SP``, summed as in the official code and divided by the batch size (the
official weights: MIP 1.0, SP 0.5; AAP 0.2, MAP 1.0). Pre-training runs ``pretrain_epochs`` epochs before the first
fine-tuning epoch (:class:`~sracl_lightning.methods.s3rec_module.S3RecModule`); fine-tuning is the ordinary
causal SASRec with the module's recommendation loss.

NOTE: deviations from the official code: no attribute objectives (AAP, MAP), so on every dataset this is S3-Rec's
MIP + SP pre-training (the paper's Office and Yelp have no attributes in this project's data either); pre-training
batches are the fine-tuning batch size (the official ``pre_batch_size`` is 100); sums are divided by the batch size
(the same relative weights, a loss independent of the batch size); negatives for MIP are drawn outside the
sequence's window only, and SP's negative segment comes from the flat training array (the official code: from the
concatenation of all users' sequences); ``pretrain_epochs`` defaults to 100 (the official run script pre-trains
300 epochs and its reproduction fine-tunes from epoch 150 on Beauty, 100 on Sports).

Shapes: B batch, L window, D hidden, N items, T flat interactions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.datasets.samples import SequenceSamples, right_aligned_windows
from sracl_lightning.errors import UsageError, check_at_least, check_in_range
from sracl_lightning.methods.parts import MethodDims, Part, TrainingContext
from sracl_lightning.methods.rec_losses import sample_negatives
from sracl_lightning.models.sasrec import MASK_VALUE, SASRec


def bidirectional_states(encoder: SASRec, ids: Tensor) -> Tensor:
    """The encoder's blocks over (B, L) ids with padding keys masked and no causal mask: (B, L, D)."""
    keep = (ids != 0)[:, None, None, :].expand(-1, 1, ids.shape[1], -1)  # (B, 1, L, L)
    bias = torch.zeros(keep.shape, device=ids.device).masked_fill_(~keep, MASK_VALUE)
    x = encoder.embed(ids)
    for block in encoder.blocks:
        x = block(x, x, bias)
    return x


def pairwise_bce(positive: Tensor, negative: Tensor) -> Tensor:
    """The official ``BCE(σ(p − n), 1)`` of sigmoid scores p, n, summed: ``Σ softplus(−(p − n))``."""
    return F.softplus(-(positive - negative)).sum()


def segment_masks(ids: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool: a random contiguous segment of 1..⌊n/2⌋ of each row's n real items (none when n < 2)."""
    b, width = ids.shape
    n = (ids != 0).sum(1)  # (B,)
    most = (n // 2).clamp_min(1)
    length = (torch.rand(b, generator=generator, device=ids.device) * most).long() + 1  # (B,) in 1..⌊n/2⌋
    start = (torch.rand(b, generator=generator, device=ids.device) * (n - length + 1)).long()
    start = torch.minimum(start, n - length) + (width - n)  # (B,) first position of the segment
    j = torch.arange(width, device=ids.device)[None, :]
    return (j >= start[:, None]) & (j < (start + length)[:, None]) & (n >= 2)[:, None]


class S3RecPretraining(Part):
    """S3-Rec's MIP and SP pre-training objectives over a SASRec encoder (bidirectional during pre-training).

    Args:
        dims: The module's sizes.
        mask_ratio: ρ, the probability that an item (but the last, always masked) is masked for MIP (0.2).
        mip_weight: Weight of MIP (1.0).
        sp_weight: Weight of SP (0.5).
    """

    def __init__(self, dims: MethodDims, mask_ratio: float = 0.2, mip_weight: float = 1.0,
                 sp_weight: float = 0.5) -> None:
        super().__init__(dims)
        check_in_range("S3RecPretraining.mask_ratio", mask_ratio, 0, 1, high_inclusive=False)
        check_at_least("S3RecPretraining.mip_weight", mip_weight, 0)
        check_at_least("S3RecPretraining.sp_weight", sp_weight, 0)
        self.mask_ratio, self.mip_weight, self.sp_weight = mask_ratio, mip_weight, sp_weight
        self.mip_head = nn.Linear(dims.hidden_size, dims.hidden_size)  # W_MIP
        self.sp_head = nn.Linear(dims.hidden_size, dims.hidden_size)  # W_SP
        for layer in (self.mip_head, self.sp_head):  # the official init: N(0, 0.02), bias 0
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        self.register_buffer("items", torch.empty(0, dtype=torch.int64), persistent=False)  # (T,) flat items

    def setup(self, context: TrainingContext) -> None:
        self.items = context.train_samples.items.to(context.device)

    @staticmethod
    def sequences(samples: SequenceSamples, indices: Tensor) -> Tensor:
        """(B, L) pre-training sequences: the last L items of training samples ``indices`` up to *and with* their
        target."""
        return right_aligned_windows(samples.items, samples.positions[indices] + 1, samples.starts[indices],
                                     samples.max_len)

    def mip_inputs(self, ids: Tensor, mask_id: int) -> tuple[Tensor, Tensor]:
        """``(masked ids, chosen)``: (B, L) each; every real item but the last masked w.p. ρ, the last always."""
        real = ids != 0
        chosen = real & (torch.rand(ids.shape, device=ids.device) < self.mask_ratio)
        chosen[:, -1] = real[:, -1]
        return torch.where(chosen, mask_id, ids), chosen

    def forward(self, ids: Tensor, encoder: SASRec) -> Tensor:
        """The pre-training loss of (B, L) sequences (their last item real)."""
        if not isinstance(encoder, SASRec):
            raise UsageError("S3-Rec pre-trains a SASRec encoder (its blocks, bidirectionally)")
        if self.items.numel() == 0:
            raise RuntimeError("training items not loaded: S3-Rec pre-trains inside trainer.fit")
        mask_id = encoder.token_id("mask")
        b = ids.shape[0]
        weight = encoder.item_embedding.weight  # (N + 1 + T, D)
        loss = ids.new_zeros((), dtype=torch.float32)
        if self.mip_weight > 0:
            masked, chosen = self.mip_inputs(ids, mask_id)
            states = self.mip_head(bidirectional_states(encoder, masked)[chosen])  # (M, D)
            targets = ids[chosen]  # (M,)
            rows = chosen.nonzero()[:, 0]  # (M,) the row of each masked position
            negatives = sample_negatives(ids, encoder.num_items, 1)[rows, 0]  # (M,) outside the row's window
            positive = torch.sigmoid((states * weight[targets]).sum(-1))
            negative = torch.sigmoid((states * weight[negatives]).sum(-1))
            loss = loss + self.mip_weight * pairwise_bce(positive.float(), negative.float())
        if self.sp_weight > 0:
            segment = segment_masks(ids)  # (B, L)
            length = segment.sum(1)  # (B,)
            offset = segment.float().argmax(1)  # (B,) first position of the segment (0 where there is none)
            draw = (torch.rand(b, device=ids.device) * (len(self.items) - length + 1)).long()  # (B,)
            j = torch.arange(ids.shape[1], device=ids.device)[None, :]
            elsewhere = self.items[(draw[:, None] + j - offset[:, None]).clamp(0, len(self.items) - 1)]  # (B, L)
            real = ids != 0
            context = torch.where(segment, mask_id, ids)
            positive_segment = torch.where(segment, ids, torch.where(real, mask_id, 0))
            negative_segment = torch.where(segment, elsewhere, torch.where(real, mask_id, 0))
            short = (real.sum(1) < 2)[:, None]  # the official code's degenerate case: all three are s
            context, positive_segment, negative_segment = (torch.where(short, ids, x) for x in
                                                           (context, positive_segment, negative_segment))
            last = bidirectional_states(encoder, torch.cat([context, positive_segment, negative_segment]))[:, -1]
            c, s_pos, s_neg = self.sp_head(last[:b]), last[b:2 * b], last[2 * b:]  # (B, D) each
            positive = torch.sigmoid((c * s_pos).sum(-1))
            negative = torch.sigmoid((c * s_neg).sum(-1))
            loss = loss + self.sp_weight * pairwise_bce(positive.float(), negative.float())
        return loss / b

    def describe(self) -> str:
        return f"S3-Rec pre-training (MIP ρ={self.mask_ratio} × {self.mip_weight}, SP × {self.sp_weight})"
