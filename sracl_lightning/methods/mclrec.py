"""MCLRec (Qin et al., "Meta-optimized Contrastive Learning for Sequential Recommendation", SIGIR 2023): two
learnable augmenters turn the representations of two randomly augmented views into two more views, and are trained
in alternation with the encoder.

Per sample, two *different* augmentations among crop (keep ⌊0.5·n⌋ contiguous items), mask (⌊0.5·n⌋ items) and
reorder (shuffle a run of ⌊0.8·n⌋ items) give the views, encoded to ``h¹, h²`` (B, D); a window of one item is left
as it is. The augmenters are MLPs ``D → D/2 → D/4 → D`` with GELU between and an L2 normalisation last:
``z¹ = g₁(h¹)``, ``z² = g₂(h²)``. With NT-Xent ``ℓ`` (τ = 1, dot product, 2B − 2 negatives):

    L_cl  = ℓ(h¹, h²)
    L_meta = ℓ(h¹, z²) + ℓ(h², z¹) + ℓ(z¹, z²) + γ · (R(h¹, z²) + R(h², z¹) + R(z¹, z²))
    R(a, b) = mean_rows relu(p − min(p, n_max)) + mean_{rows, negatives} relu(max(p, n_max) − n)

where, row by row of the 2B × 2B similarity matrix of ``[a; b]``, p is the positive's score and n the negatives'
(the official ``meta_contrast_rl``; γ = 0.1). Every training batch makes three updates
(:class:`~sracl_lightning.methods.mclrec_module.MetaOptimisedModule`, the Lightning edge):

1. the model (encoder and everything but the augmenters) on ``L_rec + λ·L_cl + β·L_meta``;
2. the augmenters on ``λ·L_cl + L_meta``, with fresh views;
3. the model again, as in 1.

Defaults are the official code's (commit bc8d622) with its Beauty script's weights: λ = 0, β = 0.05 (Sports:
λ = 0.04, β = 0.4; Yelp: λ = 0.03, β = 0.1); the augmenters' Adam has the model's learning rate, 1e-3.

NOTE: deviations from the official code: mask writes the encoder's mask token (the official code writes 0); the
views act on the window (length 20 under this project's protocol; the official code runs RecBole at length 50);
the augmenters are part of the model, so checkpoints hold them and a resumed run continues them (the official
trainer keeps them outside the model and never saves them); their widths follow D (the official code hard-wires
64 → 32 → 16 → 64, the same at D = 64). Lightning counts each of the three updates as a global step.

Shapes: B batch, L window, D hidden.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import check_at_least, check_in_range
from sracl_lightning.methods.cl4srec import crop, mask, mask_token_id, reorder
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, Objective
from sracl_lightning.methods.views import ViewGenerator
from sracl_lightning.models.encoder import SequenceEncoder


class DistinctAugmentations(ViewGenerator):
    """MCLRec's random views: per sequence, two different augmentations among crop, mask and reorder.

    Args:
        dims: The module's sizes.
        crop_ratio: The share of items a crop keeps (0.5; the official ``crop_ratio`` 0.5 is the share removed).
        mask_ratio: The share of items masked (0.5).
        reorder_ratio: The share of items in the shuffled run (0.8).
    """

    def __init__(self, dims: MethodDims, crop_ratio: float = 0.5, mask_ratio: float = 0.5,
                 reorder_ratio: float = 0.8) -> None:
        super().__init__(dims)
        for name, value in (("crop_ratio", crop_ratio), ("mask_ratio", mask_ratio), ("reorder_ratio", reorder_ratio)):
            check_in_range(f"DistinctAugmentations.{name}", value, 0, 1)
        self.crop_ratio, self.mask_ratio, self.reorder_ratio = crop_ratio, mask_ratio, reorder_ratio

    def augment(self, input_ids: Tensor, choice: Tensor, mask_id: int) -> Tensor:
        """Each row (B, L) augmented by its ``choice`` (B, 1): 0 crop, 1 mask, 2 reorder."""
        views = (crop(input_ids, self.crop_ratio), mask(input_ids, self.mask_ratio, mask_id),
                 reorder(input_ids, self.reorder_ratio))
        return torch.where(choice == 0, views[0], torch.where(choice == 1, views[1], views[2]))

    def forward(self, batch: SeqBatch, h: Tensor | None, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        mask_id = mask_token_id(encoder, "MCLRec", "configs/mclrec.yaml")
        ids = batch.input_ids  # (B, L)
        first = torch.randint(3, (ids.shape[0], 1), device=ids.device)  # (B, 1)
        second = (first + 1 + torch.randint(2, first.shape, device=ids.device)) % 3  # another one, uniformly
        single = (ids != 0).sum(1, keepdim=True) <= 1  # (B, 1): a one-item window stays as it is
        views = [torch.where(single, ids, self.augment(ids, choice, mask_id)) for choice in (first, second)]
        encoded = encoder(torch.cat(views))  # (2B, D): one pass for both views
        return encoded[:len(ids)], encoded[len(ids):]

    def describe(self) -> str:
        return (f"two of crop (keep {self.crop_ratio}) / mask {self.mask_ratio} / reorder {self.reorder_ratio}, "
                "distinct")


class Augmenter(nn.Module):
    """A learnable augmenter: ``normalize(W₃ GELU(W₂ GELU(W₁ h)))``, widths D → D/2 → D/4 → D; (B, D) -> (B, D)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        widths = (hidden_size, max(hidden_size // 2, 1), max(hidden_size // 4, 1), hidden_size)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, h: Tensor) -> Tensor:
        x = h
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.gelu(x)
        return F.normalize(x, dim=1)


def margin_regulariser(a: Tensor, b: Tensor) -> Tensor:
    """MCLRec's R(a, b) over the NT-Xent similarities of ``[a; b]`` (dot product), (B, D) each -> scalar:
    ``mean relu(p − min(p, n_max)) + mean relu(max(p, n_max) − n)``, row by row of the 2B rows."""
    b_size = a.shape[0]
    z = torch.cat([a, b]).float()  # (2B, D)
    scores = z @ z.T  # (2B, 2B)
    rows = torch.arange(2 * b_size, device=z.device)
    partner = (rows + b_size) % (2 * b_size)
    positive = scores[rows, partner]  # (2B,)
    negative_mask = torch.ones_like(scores, dtype=torch.bool)
    negative_mask[rows, rows] = False
    negative_mask[rows, partner] = False
    negatives = scores[negative_mask].view(2 * b_size, 2 * b_size - 2)  # (2B, 2B − 2)
    hardest = negatives.max(1).values  # (2B,)
    low, high = torch.minimum(positive, hardest), torch.maximum(positive, hardest)
    return (positive - low).clamp_min(0).mean() + (high[:, None] - negatives).clamp_min(0).mean()


class MetaContrast(Objective):
    """MCLRec's objective: ``λ·L_cl + β·L_meta`` for the model's updates, ``λ·L_cl + L_meta`` for the augmenters'
    (:meth:`augmenter_loss`). Train it with :class:`~sracl_lightning.methods.mclrec_module.MetaOptimisedModule`,
    which makes the alternating updates.

    Args:
        dims: The module's sizes.
        weight: Scale of the whole term in the model's updates (1).
        instance_weight: λ (``lmd``; 0 in the Beauty script).
        meta_weight: β (``beta``; 0.05 in the Beauty script).
        regulariser_weight: γ of R (0.1, fixed in the official code).
        views: The view generator (default: :class:`DistinctAugmentations`).
        loss: The NT-Xent (default τ = 1, dot product; the official meta terms fix both).
    """

    name = "mclrec"

    def __init__(self, dims: MethodDims, weight: float = 1.0, instance_weight: float = 0.0,
                 meta_weight: float = 0.05, regulariser_weight: float = 0.1,
                 views: Callable[[MethodDims], ViewGenerator] = DistinctAugmentations,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight)
        check_at_least("MetaContrast.instance_weight", instance_weight, 0)
        check_at_least("MetaContrast.meta_weight", meta_weight, 0)
        check_at_least("MetaContrast.regulariser_weight", regulariser_weight, 0)
        self.instance_weight, self.meta_weight = instance_weight, meta_weight
        self.regulariser_weight = regulariser_weight
        self.views = views(dims)
        self.augmenters = nn.ModuleList([Augmenter(dims.hidden_size), Augmenter(dims.hidden_size)])
        self.loss = loss or InfoNCE()

    def terms(self, batch: SeqBatch, h: Tensor | None, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        """``(L_cl, L_meta)`` of fresh views of the batch."""
        first, second = self.views(batch, h, encoder)  # (B, D) each
        learned_first, learned_second = self.augmenters[0](first), self.augmenters[1](second)  # (B, D) each
        pairs = ((first, learned_second), (second, learned_first), (learned_first, learned_second))
        meta = sum(self.loss(a, b) for a, b in pairs)
        if self.regulariser_weight > 0:
            meta = meta + self.regulariser_weight * sum(margin_regulariser(a, b) for a, b in pairs)
        instance = self.loss(first, second) if self.instance_weight > 0 else first.new_zeros(())
        return instance, meta

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        instance, meta = self.terms(batch, h, encoder)
        return self.instance_weight * instance + self.meta_weight * meta

    def augmenter_loss(self, batch: SeqBatch, encoder: SequenceEncoder) -> Tensor:
        """The augmenters' loss, ``λ·L_cl + L_meta`` (no recommendation loss, no β)."""
        instance, meta = self.terms(batch, None, encoder)
        return self.instance_weight * instance + meta

    def describe(self) -> str:
        return (f"L_MCLRec ({self.instance_weight}·L_cl + {self.meta_weight}·L_meta, R weight "
                f"{self.regulariser_weight}, {self.views.describe()}, {self.loss.extra_repr()})")
