"""DuoRec (Qiu et al., "Contrastive Learning for Representation Degeneration Problem in Sequential Recommendation",
WSDM 2022) as an objective, to which SRA-CL's terms attach unchanged (SRA-CL paper Fig. 3).

DuoRec is a SASRec encoder (:class:`~sracl_lightning.models.sasrec.SASRec`, nothing new there) trained with
full-softmax cross-entropy plus the contrastive regularization ``λ·L_DuoRec``, as in the released code's RecBole
``DuoRec`` (github.com/RuihongQiu/DuoRec) with ``contrast='us_x'``. Here that is
:class:`~sracl_lightning.methods.module.SRACLModule` with :class:`DuoRecContrast` as its ``base_objective``
(``configs/duorec.yaml``): a :class:`~sracl_lightning.methods.views.ViewContrast` whose views and loss are

* model-level augmentation: the anchor window is encoded once more, so its dropout mask differs from the rec pass;
* supervised positive: another *training* sample whose target is the same item, drawn uniformly; when none exists
  besides the anchor, the anchor's own window (so the positive is a second dropout view of the anchor);
* NT-Xent over the 2B rows ``[anchor views; positive views]`` (dot product, τ = 1): each row's partner is the
  positive and the other rows are negatives, except those whose target is the query's. NOTE: the released code
  keeps those as negatives; ``mask_same_target=False`` does too (see :func:`same_target_info_nce`).

Same-target sampling runs on the batch's device with no Python loop: :class:`SameTargetSampler` holds the training
samples as pointers into the flat item array (non-persistent buffers filled in ``setup``, never checkpointed),
sorted by target with per-target ``[start, end)`` ranges, and gathers the picked samples' windows exactly like
:meth:`SequenceSamples.input_windows <sracl_lightning.datasets.samples.SequenceSamples.input_windows>`.

Dimension letters: B batch, L window, D hidden, N items, T interactions (flat item array), S training samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.samples import SequenceSamples, right_aligned_windows
from sracl_lightning.methods.losses import InfoNCE, Similarity, partner_labels
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.methods.views import ViewContrast, ViewGenerator
from sracl_lightning.models.encoder import SequenceEncoder


# ----------------------------------------------------------------------------------------------------- loss
def same_target_keys(targets: Tensor) -> Tensor:
    """Keys that share the query's target, other than its partner: DuoRec's false negatives.

    Args:
        targets: (B,) target item of each anchor; row i of the positives has the same target by construction.

    Returns:
        (2B, 2B) boolean mask over the rows ``[anchors; positives]``, True where the key's target equals the
        query's and the key is not the query's partner (the query's own row is included; it is excluded anyway).
    """
    b = targets.shape[0]
    both = targets.repeat(2)  # (2B,) target of each row of [anchors; positives]
    same = both[:, None] == both[None, :]  # (2B, 2B)
    same[torch.arange(2 * b, device=targets.device), partner_labels(b, b, device=targets.device)] = False
    return same


class SameTargetInfoNCE(InfoNCE):
    """DuoRec's contrastive regulariser: :class:`~sracl_lightning.methods.losses.InfoNCE` (NT-Xent over the local 2B
    rows, 2B − 2 negatives, both directions) whose :meth:`excluded` also drops the keys sharing the query's target.

    ``forward(anchors, positives, targets)`` with (B, D), (B, D) and (B,); see :func:`same_target_info_nce`.

    Args:
        temperature: τ, dividing every logit (1.0 in the released code).
        similarity: ``"dot"`` (the released code) or ``"cosine"``.
        mask_same_target: Exclude same-target rows from the negatives; False is the plain NT-Xent of the
            released code.
    """

    def __init__(self, temperature: float = 1.0, similarity: Similarity = "dot", mask_same_target: bool = True) -> None:
        super().__init__(temperature, similarity)
        self.mask_same_target = mask_same_target

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_same_target={self.mask_same_target}"

    def excluded(self, local_size: int, global_size: int, offset: int, device: torch.device,
                 targets: Tensor | None = None) -> Tensor:
        """(2B, 2B) the query's own row and, with ``mask_same_target``, the rows of :func:`same_target_keys`."""
        excluded = super().excluded(local_size, global_size, offset, device)  # (2B, 2B) own row
        return excluded | same_target_keys(targets) if self.mask_same_target else excluded

    def forward(self, anchors: Tensor, positives: Tensor, targets: Tensor | None = None) -> Tensor:
        if targets is None or anchors.dim() != 2 or anchors.shape != positives.shape \
                or targets.shape != anchors.shape[:1]:
            raise ValueError(f"expected (B, D) anchors and positives and (B,) targets, got {tuple(anchors.shape)}, "
                             f"{tuple(positives.shape)} and {None if targets is None else tuple(targets.shape)}")
        return super().forward(anchors, positives, targets)


def same_target_info_nce(anchors: Tensor, positives: Tensor, targets: Tensor, *, temperature: float = 1.0,
                         similarity: Similarity = "dot", mask_same_target: bool = True) -> Tensor:
    """DuoRec's contrastive regulariser: NT-Xent with same-target false negatives taken out of the softmax
    (:class:`SameTargetInfoNCE` as a function).

    With ``mask_same_target=False`` it equals the released code's ``info_nce`` + ``mask_correlated_samples`` (and
    :func:`sracl_lightning.methods.losses.info_nce`): 2B − 2 negatives per row, averaged over the 2B rows.

    NOTE: the released code (RuihongQiu/DuoRec, ``mask_correlated_samples``) masks only each row's own and partner
    entries; the default here also masks in-batch rows with the same target, which are positives by DuoRec's own
    definition of a supervised positive. ``mask_same_target=False`` reproduces the released code.

    Args:
        anchors: (B, D) dropout views of the anchors.
        positives: (B, D) encodings of the same-target samples; row i pairs with anchors[i].
        targets: (B,) target item of each anchor.
        temperature: τ, dividing every logit (1.0 in the released code).
        similarity: ``"dot"`` (the released code) or ``"cosine"``.
        mask_same_target: Exclude same-target rows from the negatives.

    Returns:
        Scalar float32 loss; inputs are cast to float32 and the logits computed with autocast off, as in
        :func:`sracl_lightning.methods.losses.info_nce`.
    """
    return SameTargetInfoNCE(temperature, similarity, mask_same_target)(anchors, positives, targets)


# -------------------------------------------------------------------------------------------------- sampler
class SameTargetSampler(nn.Module):
    """DuoRec's supervised positives: for each anchor, a uniform pick among the training samples sharing its target.

    The candidates are all training samples (every prefix of every user's training part, as RecBole's DuoRec,
    whose training set is likewise every prefix), and each call draws afresh, so a sample's positive changes from
    step to step. Holds no parameters: only non-persistent buffers (so checkpoints stay small) that follow the
    module's device. Empty until :meth:`load` is called, from the training dataset's pointers.

    Args:
        max_len: Window length ``L`` of the gathered windows.
    """

    def __init__(self, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        empty = torch.empty(0, dtype=torch.int64)
        self.register_buffer("items", empty, persistent=False)  # (T,) flat item array
        self.register_buffer("positions", empty.clone(), persistent=False)  # (S,) target position of each sample
        self.register_buffer("starts", empty.clone(), persistent=False)  # (S,) start position of its user
        self.register_buffer("order", empty.clone(), persistent=False)  # (S,) sample indices sorted by target
        self.register_buffer("rank", empty.clone(), persistent=False)  # (S,) place of each sample in `order`
        self.register_buffer("sorted_targets", empty.clone(), persistent=False)  # (S,) targets[order]
        self.register_buffer("range_start", empty.clone(), persistent=False)  # (N + 1,) first place of item i
        self.register_buffer("range_end", empty.clone(), persistent=False)  # (N + 1,) one past its last place

    @property
    def loaded(self) -> bool:
        return self.positions.numel() > 0

    @torch.no_grad()
    def load(self, samples: SequenceSamples, num_items: int) -> None:
        """Index the training samples by target, on this module's current device.

        Args:
            samples: The training dataset (its ``positions`` must be increasing, as :func:`split_positions` gives).
            num_items: ``N``; targets must lie in 1..N.
        """
        device = self.items.device
        items, positions = samples.items.to(device), samples.positions.to(device)  # (T,), (S,)
        if len(positions) == 0:
            raise ValueError("DuoRec needs at least one training sample")
        if bool((positions[1:] <= positions[:-1]).any()):
            raise ValueError("training sample positions must be strictly increasing")
        targets = items[positions]  # (S,)
        if int(targets.min()) < 1 or int(targets.max()) > num_items:
            raise ValueError(f"training targets must lie in 1..{num_items}")
        self.items, self.positions, self.starts = items, positions, samples.starts.to(device)
        self.sorted_targets, self.order = torch.sort(targets, stable=True)  # (S,) each
        self.rank = torch.empty_like(self.order)
        self.rank[self.order] = torch.arange(len(self.order), device=device)
        ids = torch.arange(num_items + 1, device=device)  # (N + 1,)
        self.range_start = torch.searchsorted(self.sorted_targets, ids)  # (N + 1,)
        self.range_end = torch.searchsorted(self.sorted_targets, ids, right=True)  # (N + 1,)

    def sample(self, positions: Tensor, targets: Tensor) -> Tensor:
        """One same-target training sample per anchor, uniform over the candidates other than the anchor itself.

        Args:
            positions: (B,) flat target positions of the anchors (``SeqBatch.position``); an anchor that is not a
                training sample excludes nothing.
            targets: (B,) their targets, in 1..N.

        Returns:
            (B,) sample indices, -1 where no training sample other than the anchor has its target.
        """
        if not self.loaded:
            raise RuntimeError("same-target index not loaded: call load() (SameTargetViews does in setup)")
        s = len(self.positions)
        anchor = torch.searchsorted(self.positions, positions).clamp_max(s - 1)  # (B,) anchor's sample index
        lo, hi = self.range_start[targets], self.range_end[targets]  # (B,) its target's places in `order`
        place = self.rank[anchor]  # (B,)
        own = (self.positions[anchor] == positions) & (place >= lo) & (place < hi)  # anchor is a candidate
        count = hi - lo - own.long()  # (B,) candidates other than the anchor
        draw = (torch.rand(len(targets), device=targets.device) * count).long()  # uniform in [0, count)
        draw = torch.minimum(draw, (count - 1).clamp_min(0))  # guards float rounding up to count
        draw = draw + (own & (draw >= place - lo)).long()  # skip over the anchor's own place
        pick = self.order[(lo + draw).clamp_max(s - 1)]  # (B,)
        return torch.where(count > 0, pick, -1)

    def windows(self, indices: Tensor) -> Tensor:
        """(B, L) right-aligned, left-padded windows of samples ``indices`` (:func:`right_aligned_windows`)."""
        return right_aligned_windows(self.items, self.positions[indices], self.starts[indices], self.max_len)


# ------------------------------------------------------------------------------------------ views, objective
class SameTargetViews(ViewGenerator):
    """The two views of ``contrast='us_x'``: a fresh dropout view of each anchor and a same-target training sample.

    NOTE: the released code encodes the anchor again and the positive in two passes; both go through one pass
    here (dropout masks are drawn per element, so the views are distributed alike). The rec pass ``h`` is not
    used, as in ``us_x``.

    Args:
        dims: The module's sizes.
    """

    def __init__(self, dims: MethodDims) -> None:
        super().__init__(dims)
        self.same_target = SameTargetSampler(dims.max_len)  # filled in setup()

    def setup(self, context: TrainingContext) -> None:
        """Index the training samples by target, for the positives."""
        self.same_target = self.same_target.to(context.device)
        self.same_target.load(context.train_samples, context.num_items)

    def positive_windows(self, batch: SeqBatch) -> Tensor:
        """(B, L) windows of the supervised positives; the anchor's own window where it has no other."""
        picks = self.same_target.sample(batch.position, batch.target)  # (B,)
        windows = self.same_target.windows(picks.clamp_min(0))  # (B, L)
        return torch.where((picks >= 0)[:, None], windows, batch.input_ids)

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        b = len(batch)
        views = encoder(torch.cat([batch.input_ids, self.positive_windows(batch)]))  # (2B, D)
        return views[:b], views[b:]

    def describe(self) -> str:
        return "us_x: dropout view vs same-target sample"


class DuoRecContrast(ViewContrast):
    """L_DuoRec, DuoRec's contrastive regularization: NT-Xent between a dropout view of each anchor and a training
    sample with the same target (:class:`SameTargetViews`, :class:`SameTargetInfoNCE`).

    Args:
        dims: The module's sizes.
        weight: λ (the released code's ``lmd_sem`` = 0.1, which weighs the ``us_x`` term; its ``lmd`` weighs only
            the unsupervised term of the ``us``/``un`` modes).
        temperature: τ (``tau`` = 1 in the released code).
        similarity: ``"dot"`` (``sim='dot'``, the released code) or ``"cosine"``.
        mask_same_target: Take in-batch rows sharing the query's target out of the negatives. NOTE: the released
            code does not (see :func:`same_target_info_nce`); False reproduces it.
    """

    name = "duorec"

    def __init__(self, dims: MethodDims, weight: float = 0.1, temperature: float = 1.0,
                 similarity: Similarity = "dot", mask_same_target: bool = True) -> None:
        super().__init__(dims, weight, views=SameTargetViews,
                         loss=SameTargetInfoNCE(temperature, similarity, mask_same_target))

    def describe(self) -> str:
        negatives = "same-target negatives masked" if self.loss.mask_same_target else "2B-2 negatives"
        return (f"L_DuoRec ({self.views.describe()}, τ={self.loss.temperature}, {self.loss.similarity}, "
                f"{negatives})")
