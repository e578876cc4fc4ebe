"""CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022): two random augmentations of
each training sequence, pulled together by NT-Xent, added to the recommendation loss as ``λ·L_CL``.

Each view applies one of three augmentations, drawn uniformly per sequence and view, to its real (non-padding) items
``s = [v_1, ..., v_n]``:

* **crop** η: a random contiguous run of ``max(1, ⌊η·n⌋)`` items;
* **mask** γ: ``⌊γ·n⌋`` positions, drawn without replacement, replaced by the encoder's mask token;
* **reorder** β: a random contiguous run of ``⌊β·n⌋`` items, shuffled.

The defaults η = 0.2, γ = 0.7, β = 0.2, λ = 0.1 and τ = 1 are those of the CL4SRec implementation in the CoSeRec
authors' code (``data_augmentation.py``: ``Crop(tao=0.2)``, ``Mask(gamma=0.7)``, ``Reorder(beta=0.2)``), which the
SRA-CL paper's Table 1 follows for the S3-Rec lineage. Everything is batched tensor work on the device: no Python
loop over sequences.

NOTE: the augmentations act on the model's input window (the last ``max_len`` items before the target), not on the
user's whole training sequence as in the CoSeRec code, so that a view costs one encoder pass like every other view
here. The mask token is the encoder's extra token ``mask`` (``extra_tokens: [mask]``, configs/cl4srec.yaml): it is
never ranked. Shapes: B batch, L window, n real items of a row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sracl_lightning.errors import UsageError, check_in_range
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims
from sracl_lightning.methods.views import IdViews, ViewContrast, ViewGenerator
from sracl_lightning.models.encoder import SequenceEncoder


def mask_token_id(encoder: SequenceEncoder, method: str, config: str) -> int:
    """The encoder's ``mask`` token id, or a :class:`UsageError` saying how ``method``'s config (``config``) gets
    one."""
    try:
        return encoder.token_id("mask")
    except KeyError:
        raise UsageError(f"{method}'s mask augmentation needs an encoder with a mask token: set "
                         f"--model.init_args.encoder.init_args.extra_tokens [mask] ({config} does)") from None


def right_align(ids: Tensor, keys: Tensor) -> Tensor:
    """Gather ``ids`` (B, L) by ``keys`` (B, L) source positions, ``-1`` meaning padding."""
    return torch.where(keys >= 0, ids.gather(1, keys.clamp_min(0)), 0)


def crop(ids: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """A random contiguous run of ``max(1, ⌊ratio·n⌋)`` of each row's n real items, right-aligned (B, L)."""
    b, width = ids.shape
    n = (ids != 0).sum(1)  # (B,)
    keep = torch.clamp((ratio * n).floor().long(), min=1)  # (B,)
    start = (torch.rand(b, generator=generator, device=ids.device) * (n - keep + 1)).long()  # (B,) in 0..n-keep
    start = torch.minimum(start, n - keep)
    j = torch.arange(width, device=ids.device)  # (L,)
    offset = j[None, :] - (width - keep)[:, None]  # (B, L) index into the kept run, < 0 before it
    source = (width - n + start)[:, None] + offset  # (B, L) position of that item in the window
    return right_align(ids, torch.where(offset >= 0, source, -1))


def mask(ids: Tensor, ratio: float, mask_id: int, generator: torch.Generator | None = None) -> Tensor:
    """``⌊ratio·n⌋`` of each row's real positions, drawn without replacement, set to ``mask_id`` (B, L)."""
    real = ids != 0  # (B, L)
    count = (ratio * real.sum(1)).floor().long()  # (B,)
    keys = torch.rand(ids.shape, generator=generator, device=ids.device).masked_fill(~real, 2.0)  # padding last
    rank = keys.argsort(1).argsort(1)  # (B, L) rank of each position's key within its row
    return torch.where(rank < count[:, None], mask_id, ids)


def reorder(ids: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """A random contiguous run of ``⌊ratio·n⌋`` of each row's real items, shuffled in place (B, L)."""
    b, width = ids.shape
    n = (ids != 0).sum(1)  # (B,)
    length = (ratio * n).floor().long()  # (B,)
    start = (torch.rand(b, generator=generator, device=ids.device) * (n - length + 1)).long()
    start = (width - n + torch.minimum(start, n - length))[:, None]  # (B, 1) first position of the run
    j = torch.arange(width, device=ids.device)[None, :].expand(b, -1)  # (B, L)
    inside = (j >= start) & (j < start + length[:, None])  # (B, L)
    # Positions outside the run keep their integer key; inside, a random key in [start, start + length), so sorting
    # the keys permutes the run only.
    spread = torch.rand(ids.shape, generator=generator, device=ids.device) * length[:, None]
    keys = torch.where(inside, start + spread, j.to(spread.dtype))
    return ids.gather(1, keys.argsort(1))


class CL4SRecAugmentations(IdViews):
    """CL4SRec's views: per sequence and view, one of crop, mask and reorder, drawn uniformly.

    Args:
        dims: The module's sizes.
        crop_ratio: η, the share of items a crop keeps.
        mask_ratio: γ, the share of items masked.
        reorder_ratio: β, the share of items in the shuffled run.
    """

    def __init__(self, dims: MethodDims, crop_ratio: float = 0.2, mask_ratio: float = 0.7,
                 reorder_ratio: float = 0.2) -> None:
        super().__init__(dims)
        for name, value in (("crop_ratio", crop_ratio), ("mask_ratio", mask_ratio), ("reorder_ratio", reorder_ratio)):
            check_in_range(f"CL4SRecAugmentations.{name}", value, 0, 1)
        self.crop_ratio, self.mask_ratio, self.reorder_ratio = crop_ratio, mask_ratio, reorder_ratio

    def view(self, input_ids: Tensor, encoder: SequenceEncoder) -> Tensor:
        mask_id = mask_token_id(encoder, "CL4SRec", "configs/cl4srec.yaml")
        choice = torch.randint(3, (input_ids.shape[0], 1), device=input_ids.device)  # (B, 1)
        views = (crop(input_ids, self.crop_ratio), mask(input_ids, self.mask_ratio, mask_id),
                 reorder(input_ids, self.reorder_ratio))
        return torch.where(choice == 0, views[0], torch.where(choice == 1, views[1], views[2]))

    def describe(self) -> str:
        return f"crop η={self.crop_ratio} / mask γ={self.mask_ratio} / reorder β={self.reorder_ratio}"


class CL4SRecContrast(ViewContrast):
    """CL4SRec's objective: NT-Xent between two augmented views of each window (2B − 2 negatives).

    Args:
        dims: The module's sizes.
        weight: λ (0.1).
        views: The view generator (default: :class:`CL4SRecAugmentations`).
        loss: The InfoNCE (default τ = 1, dot product, as the CoSeRec code's CL4SRec).
    """

    name = "cl4srec"

    def __init__(self, dims: MethodDims, weight: float = 0.1,
                 views: Callable[[MethodDims], ViewGenerator] = CL4SRecAugmentations,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight, views=views, loss=loss)

    def describe(self) -> str:
        return f"L_CL4SRec ({self.views.describe()}, {self.loss.extra_repr()})"
