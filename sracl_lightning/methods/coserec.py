"""CoSeRec (Liu et al., "Contrastive Self-supervised Sequential Recommendation with Robust Augmentation", 2021):
CL4SRec's contrast with two more augmentations, *substitute* and *insert*, that use item-item similarity.

Each view applies one augmentation, drawn uniformly per sequence and view. A window with more than ``threshold``
real items draws among crop, mask, reorder, substitute and insert; a shorter one among ``short_augmentations``
(the official ``augment_type_for_short``, default ``SIM``: substitute, insert, mask). Crop, mask and reorder are
CL4SRec's (:mod:`sracl_lightning.methods.cl4srec`); on the n real items of a window:

* **substitute** rate r_s: ``max(1, ⌊r_s·n⌋)`` positions, drawn without replacement, each item replaced by its
  most similar item;
* **insert** rate r_i: ``max(1, ⌊r_i·n⌋)`` positions, drawn without replacement; before each chosen item its most
  similar item is inserted, and the window keeps its newest L items.

The most similar item is the top-1 of **ItemCF-IUF** over the training sequences (offline):

    sim(i, j) = Σ_{u ∋ i, j} 1 / log(1 + |I_u|)  /  sqrt(|U_i| · |U_j|),   i ≠ j

with ``I_u`` the distinct items of user u's training part and ``U_i`` the users who have item i. After
``warm_up_epochs`` epochs the table becomes *hybrid*: each item's offline top-1 competes with its online top-1, the
item whose embedding has the largest dot product with its own, recomputed at the start of every epoch from the
model's item embeddings; each score is min-max normalised over its whole similarity matrix and the offline item
wins ties (the official ``_ensmeble_sim_models``).

The contrast is CL4SRec's: NT-Xent between the two views (τ = 1, dot product, λ = 0.1), added to the
recommendation loss. Defaults are the official code's ``main.py`` (commit 8e68707).

NOTE: deviations from the official code, each deliberate:

* the augmentations act on the model's input window (the last L items), not on the whole training sequence before
  truncation, as :mod:`~sracl_lightning.methods.cl4srec`'s; so ``threshold`` compares with the window's length;
* the two views are compared by the encoder's representation ``h`` (the last position), the one vector every
  backbone here returns; the official code flattens the whole output sequence (50 × 64 values);
* mask writes the encoder's ``mask`` token, never ranked (the official code writes 0, the padding id);
* reorder uses ``reorder_ratio`` (β = 0.2, the paper's); the official code's thresholded mode passes γ (0.7) there;
* ItemCF-IUF counts each user's training part ``items[:-2]`` (the official code ``items[:-3]``, which leaves out the
  last training target); ties go to the smallest item id (the official code: dict order); an item that co-occurs
  with none (seen only as a validation or test target) is its own most similar item, so substitute leaves it and
  insert repeats it (the official code draws a random item);
* the online similarity ranks items 1..N (the official code's matrix includes the padding and mask rows);
* the table is computed when training starts, in one sparse product (about a second on Beauty), not cached on disk.

Shapes: B batch, L window, N items, D hidden, U users.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sracl_lightning.errors import InvalidArgumentError, check_at_least, check_in_range
from sracl_lightning.methods.cl4srec import crop, mask, mask_token_id, reorder
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.methods.views import IdViews, ViewContrast, ViewGenerator
from sracl_lightning.models.encoder import SequenceEncoder

#: The augmentations, in the order of their index in a view's draw.
AUGMENTATIONS = ("crop", "mask", "reorder", "substitute", "insert")


# ------------------------------------------------------------------------------------------------ item similarity
def training_parts(items: Tensor, positions: Tensor, users: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
    """Each user's training part ``items[start : last training target + 1]`` as (user, item) pairs.

    Args:
        items: (T,) flat items.
        positions, users, starts: (S,) the training samples' target positions, users and user starts.

    Returns:
        ``(user, item)``, both (P,) int64, one pair per interaction of a training part.
    """
    num_users = int(users.max()) + 1
    end = torch.full((num_users,), -1, dtype=torch.int64).scatter_reduce(0, users, positions, "amax")  # (U,)
    start = torch.zeros(num_users, dtype=torch.int64).scatter_reduce(0, users, starts, "amax")
    present = end >= 0
    user_ids = torch.arange(num_users)[present]
    lengths = end[present] - start[present] + 1  # (U',)
    offsets = torch.cumsum(lengths, 0) - lengths
    rank = torch.arange(int(lengths.sum())) - torch.repeat_interleave(offsets, lengths)  # (P,)
    flat = torch.repeat_interleave(start[present], lengths) + rank
    return torch.repeat_interleave(user_ids, lengths), items[flat]


def itemcf_iuf_top1(user: Tensor, item: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    """The ItemCF-IUF most similar item of every item, and its min-max normalised score.

    Args:
        user, item: (P,) interactions (duplicates count once).
        num_items: N.

    Returns:
        ``(top1, score)``: (N + 1,) int64 ids and (N + 1,) float32 scores in [0, 1] (min-max over every stored
        pair, i ≠ j). Row 0 is padding (itself, 0); an item with no co-occurring item is itself with score 0.
    """
    pairs = torch.unique(user * (num_items + 1) + item)  # distinct (user, item)
    user, item = pairs // (num_items + 1), pairs % (num_items + 1)
    num_users = int(user.max()) + 1
    distinct = torch.bincount(user, minlength=num_users).double()  # (U,) |I_u|
    holders = torch.bincount(item, minlength=num_items + 1).double()  # (N + 1,) |U_i|
    shape = (num_items + 1, num_users)
    incidence = torch.sparse_coo_tensor(torch.stack([item, user]), torch.ones(len(user), dtype=torch.float64), shape,
                                        check_invariants=True)
    weighted = torch.sparse_coo_tensor(torch.stack([user, item]), 1.0 / torch.log1p(distinct[user]),
                                       (num_users, num_items + 1), check_invariants=True)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state", from inside torch.sparse.mm
        warnings.simplefilter("ignore", UserWarning)
        counts = torch.sparse.mm(incidence.coalesce(), weighted.coalesce()).coalesce()  # (N + 1, N + 1)
    i, j = counts.indices()
    keep = i != j
    i, j = i[keep], j[keep]
    sim = counts.values()[keep] / torch.sqrt(holders[i] * holders[j])  # (Q,)
    top1 = torch.arange(num_items + 1)
    score = torch.zeros(num_items + 1, dtype=torch.float64)
    if len(sim):
        best = torch.full((num_items + 1,), -1.0, dtype=torch.float64).scatter_reduce(0, i, sim, "amax")
        winner = sim == best[i]  # the maximal pairs of each row
        top1 = top1.scatter_reduce(0, i[winner], j[winner], "amin", include_self=False)  # ties: smallest id
        low, high = sim.min(), sim.max()
        span = (high - low).clamp_min(1e-12)
        has = best >= 0
        score[has] = (best[has] - low) / span
    return top1, score.float()


def dot_product_top1(embeddings: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """The online most similar item: for each of the N items, the other item with the largest dot product.

    Args:
        embeddings: (N, D) item embeddings of items 1..N.
        chunk: Rows scored at a time; no (N, N) matrix is held.

    Returns:
        ``(top1, score)``: (N + 1,) ids and scores, min-max normalised over the full (N, N) product (the diagonal
        included, as in the official code); row 0 is padding (itself, 0).
    """
    with torch.autocast(embeddings.device.type, enabled=False):  # fp32 scores also under bf16-mixed
        return _dot_product_top1(embeddings.detach().float(), chunk)


def _dot_product_top1(weights: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    n = weights.shape[0]
    top1 = torch.zeros(n + 1, dtype=torch.int64, device=weights.device)
    best = torch.zeros(n + 1, device=weights.device)
    low, high = torch.tensor(float("inf"), device=weights.device), torch.tensor(float("-inf"), device=weights.device)
    for first in range(0, n, chunk):
        scores = weights[first:first + chunk] @ weights.T  # (C, N)
        low, high = torch.minimum(low, scores.min()), torch.maximum(high, scores.max())
        rows = torch.arange(scores.shape[0], device=weights.device)
        scores[rows, first + rows] = float("-inf")  # not itself
        value, index = scores.max(1) if n > 1 else (scores[:, 0], rows * 0 + first)
        top1[first + 1:first + 1 + len(rows)] = index + 1
        best[first + 1:first + 1 + len(rows)] = value
    best[1:] = (best[1:] - low) / (high - low).clamp_min(1e-12)
    best[0] = 0.0
    return top1, best


# --------------------------------------------------------------------------------------------------- augmentations
def draw_positions(ids: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool: ``max(1, ⌊rate·n⌋)`` of each row's n real positions, drawn without replacement."""
    real = ids != 0  # (B, L)
    count = torch.clamp((rate * real.sum(1)).floor().long(), min=1)  # (B,)
    keys = torch.rand(ids.shape, generator=generator, device=ids.device).masked_fill(~real, 2.0)  # padding last
    rank = keys.argsort(1).argsort(1)  # (B, L)
    return (rank < count[:, None]) & real


def substitute(ids: Tensor, similar: Tensor, chosen: Tensor) -> Tensor:
    """The ``chosen`` (B, L) items replaced by their most similar item ``similar`` (N + 1,)."""
    return torch.where(chosen, similar[ids], ids)


def insert(ids: Tensor, similar: Tensor, chosen: Tensor) -> Tensor:
    """Before each ``chosen`` (B, L) item its most similar item inserted; the newest L items kept, right-aligned."""
    b, width = ids.shape
    slots = (ids != 0).long() + chosen.long()  # (B, L) output slots each position takes
    after = slots.flip(1).cumsum(1).flip(1) - slots  # (B, L) slots taken by the newer positions
    item_at = width - 1 - after  # (B, L) output index of each item; < 0 falls off the window
    sim_at = item_at - 1  # its inserted neighbour, just before it
    drop = width  # a scratch column for everything that falls off or is padding
    out = torch.zeros(b, width + 1, dtype=ids.dtype, device=ids.device)
    item_index = torch.where((ids != 0) & (item_at >= 0), item_at, drop)
    sim_index = torch.where(chosen & (sim_at >= 0), sim_at, drop)
    out.scatter_(1, item_index, ids)
    out.scatter_(1, sim_index, similar[ids])
    return out[:, :width]


class CoSeRecAugmentations(IdViews):
    """CoSeRec's views: per sequence and view, one augmentation, drawn uniformly among the five (or among
    ``short_augmentations`` for a window of at most ``threshold`` items).

    Args:
        dims: The module's sizes.
        crop_ratio: η (0.2).
        mask_ratio: γ (0.7).
        reorder_ratio: β (0.2).
        substitute_rate: r_s, the share of items substituted (0.1).
        insert_rate: r_i, the share of items with an insertion (0.4).
        threshold: Windows of at most this many items draw among ``short_augmentations`` (4); -1: every window
            draws among all five.
        short_augmentations: The augmentations of short windows (``SIM``: substitute, insert, mask).
        warm_up_epochs: Epochs before the online similarity joins the offline one (160; early stopping often ends a
            run before).
    """

    def __init__(self, dims: MethodDims, crop_ratio: float = 0.2, mask_ratio: float = 0.7, reorder_ratio: float = 0.2,
                 substitute_rate: float = 0.1, insert_rate: float = 0.4, threshold: int = 4,
                 short_augmentations: Sequence[str] = ("substitute", "insert", "mask"),
                 warm_up_epochs: int = 160) -> None:
        super().__init__(dims)
        for name, value in (("crop_ratio", crop_ratio), ("mask_ratio", mask_ratio), ("reorder_ratio", reorder_ratio),
                            ("substitute_rate", substitute_rate), ("insert_rate", insert_rate)):
            check_in_range(f"CoSeRecAugmentations.{name}", value, 0, 1)
        check_at_least("CoSeRecAugmentations.threshold", threshold, -1)
        check_at_least("CoSeRecAugmentations.warm_up_epochs", warm_up_epochs, 0)
        short = tuple(short_augmentations)
        if not short or isinstance(short_augmentations, str) or any(name not in AUGMENTATIONS for name in short):
            raise InvalidArgumentError("CoSeRecAugmentations.short_augmentations", short_augmentations,
                                       f"a non-empty list of {list(AUGMENTATIONS)}")
        self.crop_ratio, self.mask_ratio, self.reorder_ratio = crop_ratio, mask_ratio, reorder_ratio
        self.substitute_rate, self.insert_rate = substitute_rate, insert_rate
        self.threshold, self.short_augmentations, self.warm_up_epochs = threshold, short, warm_up_epochs
        self.register_buffer("short_choices", torch.tensor([AUGMENTATIONS.index(name) for name in short]),
                             persistent=False)
        # Frozen offline table (set in setup(), never checkpointed) and the table the views use, (N + 1,) each.
        self.register_buffer("offline_top1", torch.empty(0, dtype=torch.int64), persistent=False)
        self.register_buffer("offline_score", torch.empty(0), persistent=False)
        self.register_buffer("similar", torch.empty(0, dtype=torch.int64), persistent=False)
        # Epochs started, checkpointed so that a resumed run switches to the hybrid table when the unbroken run does.
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.int64))

    def setup(self, context: TrainingContext) -> None:
        samples = context.train_samples
        user, item = training_parts(samples.items, samples.positions, samples.users, samples.starts)
        top1, score = itemcf_iuf_top1(user, item, context.num_items)
        self.offline_top1, self.offline_score = top1.to(context.device), score.to(context.device)
        self.similar = self.offline_top1

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        if self.offline_top1.numel() == 0:
            raise RuntimeError("item similarity not computed: CoSeRec's views run inside trainer.fit")
        # The official code refreshes at epoch index > warm_up_epochs (0-based).
        if int(self.epochs_started) > self.warm_up_epochs:
            online_top1, online_score = dot_product_top1(encoder.item_embeddings())
            self.similar = torch.where(self.offline_score >= online_score, self.offline_top1, online_top1)
        else:
            self.similar = self.offline_top1
        self.epochs_started += 1

    def view(self, input_ids: Tensor, encoder: SequenceEncoder) -> Tensor:
        if self.similar.numel() == 0:
            raise RuntimeError("item similarity not computed: CoSeRec's views run inside trainer.fit")
        mask_id = mask_token_id(encoder, "CoSeRec", "configs/coserec.yaml")
        b = input_ids.shape[0]
        n = (input_ids != 0).sum(1)  # (B,)
        every = torch.randint(len(AUGMENTATIONS), (b,), device=input_ids.device)
        short = self.short_choices[torch.randint(len(self.short_choices), (b,), device=input_ids.device)]
        choice = torch.where(n > self.threshold, every, short)[:, None] if self.threshold >= 0 else every[:, None]
        views = (crop(input_ids, self.crop_ratio), mask(input_ids, self.mask_ratio, mask_id),
                 reorder(input_ids, self.reorder_ratio),
                 substitute(input_ids, self.similar, draw_positions(input_ids, self.substitute_rate)),
                 insert(input_ids, self.similar, draw_positions(input_ids, self.insert_rate)))  # (B, L) each
        out = views[-1]
        for index in range(len(views) - 2, -1, -1):
            out = torch.where(choice == index, views[index], out)
        return out

    def describe(self) -> str:
        return (f"crop η={self.crop_ratio} / mask γ={self.mask_ratio} / reorder β={self.reorder_ratio} / "
                f"substitute {self.substitute_rate} / insert {self.insert_rate} (ItemCF-IUF, online after "
                f"{self.warm_up_epochs} epochs), short (<= {self.threshold}): {'/'.join(self.short_augmentations)}")


class CoSeRecContrast(ViewContrast):
    """CoSeRec's objective: NT-Xent between two of its augmented views of each window.

    Args:
        dims: The module's sizes.
        weight: λ (``cf_weight`` 0.1).
        views: The view generator (default: :class:`CoSeRecAugmentations`).
        loss: The InfoNCE (default τ = 1, dot product, as the official code).
    """

    name = "coserec"

    def __init__(self, dims: MethodDims, weight: float = 0.1,
                 views: Callable[[MethodDims], ViewGenerator] = CoSeRecAugmentations,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight, views=views, loss=loss)

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        self.views.on_train_epoch_start(encoder)

    def describe(self) -> str:
        return f"L_CoSeRec ({self.views.describe()}, {self.loss.extra_repr()})"
