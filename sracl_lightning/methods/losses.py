"""The contrastive losses of SRA-CL: inter-user L_CS (Eq. 9) and intra-user L_IS (Eq. 11), as in
docs/method.md#inter-user-loss and docs/method.md#intra-user-loss.

Both losses pair row i of ``anchors`` with row i of ``positives``:

* L_CS: anchors h_u (the user's sequence), positives h⁺_u (the synthesizer's weighted sum of neighbour encodings);
* L_IS: anchors h′_u and positives h″_u (the two semantic-substitution views).

Every variant below is one cross-entropy over a (Q, 2G) logit matrix, as in docs/method.md#infonce: the queries are
z = [anchors; positives], the keys are the same rows (gathered from every DDP rank when asked), the label of a query
is its partner row (i ± G), and a boolean mask takes the keys that are not candidates out of the softmax:

* ``negatives="all"`` (the released code's NT-Xent, docs/method.md#infonce): only the query's own row is masked, so the
  other 2G − 2 rows (other anchors *and* other positives) are negatives. The code uses it for both L_CS and L_IS.
* ``negatives="positives"`` (the paper's Eq. 9): an anchor query sees only positive keys and a positive query only
  anchor keys, so the negatives are the G − 1 other partners.
* ``symmetric=False`` keeps only the anchor rows as queries.

Shapes: B rows on this rank, G rows in the global batch (the sum of B over ranks; G = B without gathering),
D embedding width, Q query rows (2B, or B one-sided).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.distributed import all_gather_rows, is_distributed

Similarity = Literal["dot", "cosine"]
Negatives = Literal["all", "positives"]
GatherMode = Literal["none", "with_grad", "no_grad"]

_SIMILARITIES = ("dot", "cosine")
_NEGATIVES = ("all", "positives")
_GATHER_MODES = ("none", "with_grad", "no_grad")


def similarity_logits(queries: Tensor, keys: Tensor, *, temperature: float = 1.0,
                      similarity: Similarity = "dot") -> Tensor:
    """Similarity of every query to every key, divided by the temperature τ.

    Args:
        queries: (Q, D) query rows.
        keys: (K, D) key rows.
        temperature: τ; the released code uses 1.0.
        similarity: ``"dot"`` (raw inner product, the paper and the code) or ``"cosine"`` (L2-normalised rows).

    Returns:
        (Q, K) logits.
    """
    if similarity == "cosine":
        queries, keys = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
    return queries @ keys.T / temperature  # (Q, K)


def partner_labels(local_size: int, global_size: int, offset: int = 0, device: torch.device | None = None) -> Tensor:
    """Key index of each query's positive partner.

    The keys are [all anchors (G); all positives (G)] and this rank's rows start at ``offset`` in each half.

    Args:
        local_size: B, the rows on this rank.
        global_size: G, the rows on all ranks.
        offset: index of this rank's first row in the global batch.
        device: device of the result.

    Returns:
        (2B,) labels: anchor query i -> positive key G + offset + i; positive query i -> anchor key offset + i.
    """
    rows = torch.arange(local_size, device=device) + offset  # (B,)
    return torch.cat([rows + global_size, rows])  # (2B,)


def excluded_keys(local_size: int, global_size: int, offset: int = 0, negatives: Negatives = "all",
                  device: torch.device | None = None) -> Tensor:
    """Mask of the keys that are *not* candidates of a query (neither its positive nor one of its negatives).

    Args:
        local_size: B, the rows on this rank.
        global_size: G, the rows on all ranks.
        offset: index of this rank's first row in the global batch.
        negatives: ``"all"`` masks only the query's own row (NT-Xent); ``"positives"`` masks the query's own side
            (anchors for an anchor query, positives for a positive query), as in Eq. 9.
        device: device of the result.

    Returns:
        (2B, 2G) boolean mask, True where the key is excluded.
    """
    if negatives == "all":
        own = torch.arange(local_size, device=device) + offset  # (B,)
        own = torch.cat([own, own + global_size])  # (2B,) each query's own key
        return own[:, None] == torch.arange(2 * global_size, device=device)[None, :]  # (2B, 2G)
    if negatives == "positives":
        query_is_positive = torch.arange(2 * local_size, device=device) >= local_size  # (2B,)
        key_is_positive = torch.arange(2 * global_size, device=device) >= global_size  # (2G,)
        return query_is_positive[:, None] == key_is_positive[None, :]  # (2B, 2G) same side as the query
    raise ValueError(f"negatives must be one of {_NEGATIVES}, got {negatives!r}")


def masked_cross_entropy(logits: Tensor, labels: Tensor, excluded: Tensor) -> Tensor:
    """Mean cross-entropy with the excluded logits set to the dtype's most negative finite value.

    A finite value (not -inf) keeps a row finite even if everything but its label were masked, and taking it from
    the logits' own dtype keeps it representable should an override return half-precision logits.

    Args:
        logits: (Q, K) logits.
        labels: (Q,) index of each row's positive key; never excluded.
        excluded: (Q, K) boolean mask of keys that are not candidates.

    Returns:
        Scalar loss, averaged over the Q rows.
    """
    logits = logits.masked_fill(excluded, torch.finfo(logits.dtype).min)  # (Q, K)
    return F.cross_entropy(logits, labels)


def info_nce(anchors: Tensor, positives: Tensor, *, temperature: float = 1.0, similarity: Similarity = "dot",
             symmetric: bool = True, negatives: Negatives = "all") -> Tensor:
    """InfoNCE between row-aligned anchors and positives of one process (docs/method.md#infonce, Eqs. 9 and 11).

    The defaults are the released code's ``info_nce(z_i, z_j, temp=1.0, sim="dot")``: NT-Xent over the 2B rows of
    [anchors; positives], the 2B − 2 other rows as negatives, averaged over all 2B rows.

    NOTE: the paper's Eq. 9 states for L_CS the N − 1 other synthesized positives as negatives and one direction
    only; that is ``negatives="positives", symmetric=False`` (docs/method.md#deviations, D22).

    NOTE: the inputs are cast to float32 and the logits computed with autocast off. With τ = 1 and no normalisation
    the logits of 64-d encodings reach the hundreds, where bf16 spacing is 1-2, so half-precision logits would lose
    the differences the softmax is about (docs/method.md#deviations, D29).

    With B = 1 there are no negatives: each row's only candidate is its positive and the loss (and its gradient)
    is exactly 0 in every mode.

    Args:
        anchors: (B, D) anchors (h_u for L_CS, h′_u for L_IS).
        positives: (B, D) positives, row i pairs with anchors[i] (h⁺_u for L_CS, h″_u for L_IS).
        temperature: τ, dividing every logit.
        similarity: ``"dot"`` or ``"cosine"``.
        symmetric: average over anchor and positive queries (2B rows); False uses the B anchor queries only.
        negatives: ``"all"`` (NT-Xent, 2B − 2 negatives) or ``"positives"`` (Eq. 9, the B − 1 other partners).

    Returns:
        Scalar float32 loss: :class:`InfoNCE` without gathering, the one NT-Xent body.
    """
    return InfoNCE(temperature, similarity, symmetric, negatives)(anchors, positives)


class InfoNCE(nn.Module):
    """InfoNCE as a module of small overridable steps, with negatives optionally gathered across DDP ranks.

    ``forward`` = ``gather`` -> ``similarity_logits`` -> ``labels`` / ``excluded`` -> masked cross-entropy: the one
    NT-Xent body of the package. A research variant (another similarity, false-negative masking, ...) is a subclass
    overriding one of them, e.g. DuoRec's :class:`~sracl_lightning.methods.duorec.SameTargetInfoNCE` (its ``excluded``
    also drops the keys sharing the query's target, given to ``forward`` as ``targets``). Without gathering it
    equals :func:`info_nce`.

    Gathering (``gather_across_ranks``): the local 2B rows are the queries and the global 2G rows are the keys, so
    every rank's queries see the negatives of the global batch and the labels shift by this rank's offset.

    * ``"none"``: local negatives only; each rank's loss is that of its own batch.
    * ``"with_grad"``: ``torch.distributed.nn.functional.all_gather``, whose backward sums the key gradients of every
      rank's loss back onto the rank owning the row. After backward each rank's inputs hold world_size × the
      gradient of the global-batch loss, and DDP's gradient averaging (÷ world_size) makes the parameter gradients
      exactly those of the single-process loss on the concatenated batch.
    * ``"no_grad"``: ``torch.distributed.all_gather``, which carries no gradient: the other ranks' rows are
      constants and only the local slice (put back in place) keeps its gradient, so each rank's inputs get
      the gradient of its own queries' loss only. The loss value equals the ``"with_grad"`` one.

    Averaging convention: each rank returns the mean over its own Q query rows. With equal batches on every rank the
    mean of the ranks' losses is the single-process loss on the concatenated batch. Unequal batches (a smaller last
    batch) are supported: the batch sizes are gathered first and the rows padded to the largest for the collective.
    DDP then still weighs every rank equally, so rows of a smaller batch count a little more; multiplying the
    returned loss by B · world_size / G restores the exact global mean.

    Gathering is a no-op when ``torch.distributed`` is not initialised or has one process. Every rank must call
    ``forward`` (and, with ``"with_grad"``, ``backward``) the same number of times, with B ≥ 1 and the same D.

    Args:
        temperature: τ, dividing every logit; the released code uses 1.0.
        similarity: ``"dot"`` (the paper and the code) or ``"cosine"``.
        symmetric: average over anchor and positive queries (the code); False uses the anchor queries only.
        negatives: ``"all"`` (the code's NT-Xent, 2G − 2 negatives) or ``"positives"`` (the G − 1 other partners).
            NOTE: the paper's Eq. 9 states N − 1 synthesized negatives for L_CS, i.e. ``negatives="positives"``;
            the default follows the released code (docs/method.md#deviations, D22).
        gather_across_ranks: ``"none"``, ``"with_grad"`` or ``"no_grad"``, see above.
            NOTE: the released code is single-GPU, so ``"none"`` is its behaviour (docs/method.md#deviations, D30).
    """

    def __init__(self, temperature: float = 1.0, similarity: Similarity = "dot", symmetric: bool = True,
                 negatives: Negatives = "all", gather_across_ranks: GatherMode = "none") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
        if negatives not in _NEGATIVES:
            raise ValueError(f"negatives must be one of {_NEGATIVES}, got {negatives!r}")
        if gather_across_ranks not in _GATHER_MODES:
            raise ValueError(f"gather_across_ranks must be one of {_GATHER_MODES}, got {gather_across_ranks!r}")
        self.temperature = temperature
        self.similarity = similarity
        self.symmetric = symmetric
        self.negatives = negatives
        self.gather_across_ranks = gather_across_ranks

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, similarity={self.similarity!r}, symmetric={self.symmetric}, "
                f"negatives={self.negatives!r}, gather_across_ranks={self.gather_across_ranks!r}")

    def similarity_logits(self, queries: Tensor, keys: Tensor) -> Tensor:
        """(Q, D) queries × (K, D) keys -> (Q, K) logits."""
        return similarity_logits(queries, keys, temperature=self.temperature, similarity=self.similarity)

    def gather(self, anchors: Tensor, positives: Tensor) -> tuple[Tensor, Tensor, int]:
        """The global batch of anchors and positives, and the offset of this rank's rows in it.

        Args:
            anchors: (B, D) local anchors.
            positives: (B, D) local positives.

        Returns:
            (G, D) anchors and (G, D) positives of all ranks in rank order, and this rank's first row index.
        """
        if self.gather_across_ranks == "none" or not is_distributed():
            return anchors, positives, 0
        local = torch.cat([anchors, positives], dim=1)  # (B, 2D): one collective for both
        rows, offset = all_gather_rows(local, with_grad=self.gather_across_ranks == "with_grad")  # (G, 2D)
        d = anchors.shape[1]
        return rows[:, :d], rows[:, d:], offset

    def labels(self, local_size: int, global_size: int, offset: int, device: torch.device) -> Tensor:
        """(2B,) key index of each query's partner; see :func:`partner_labels`."""
        return partner_labels(local_size, global_size, offset, device)

    def excluded(self, local_size: int, global_size: int, offset: int, device: torch.device,
                 targets: Tensor | None = None) -> Tensor:
        """(2B, 2G) True where a key is not a candidate of the query; see :func:`excluded_keys`.

        ``targets`` (the (B,) labels given to ``forward``, if any) is unused here; subclasses may mask by them.
        """
        return excluded_keys(local_size, global_size, offset, self.negatives, device)

    def forward(self, anchors: Tensor, positives: Tensor, targets: Tensor | None = None) -> Tensor:
        """Scalar float32 loss of the local (B, D) anchors and (B, D) positives against the (gathered) batch.

        ``targets``: optional (B,) label of each row pair, passed on to :meth:`excluded` for variants whose
        candidates depend on it (local rows only: not gathered).

        NOTE: inputs are cast to float32 and the logits computed with autocast off, as in :func:`info_nce`.
        """
        _check_pair(anchors, positives)
        b = anchors.shape[0]
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            anchors, positives = anchors.float(), positives.float()
            anchor_keys, positive_keys, offset = self.gather(anchors, positives)  # (G, D) each
            g = anchor_keys.shape[0]
            queries = torch.cat([anchors, positives])  # (2B, D)
            logits = self.similarity_logits(queries, torch.cat([anchor_keys, positive_keys]))  # (2B, 2G)
            labels = self.labels(b, g, offset, logits.device)  # (2B,)
            excluded = self.excluded(b, g, offset, logits.device, targets)  # (2B, 2G)
            rows = 2 * b if self.symmetric else b
            return masked_cross_entropy(logits[:rows], labels[:rows], excluded[:rows])


def _check_pair(anchors: Tensor, positives: Tensor) -> None:
    """Raise unless anchors and positives are the same non-empty (B, D) shape."""
    if anchors.dim() != 2 or anchors.shape != positives.shape or anchors.shape[0] == 0:
        raise ValueError(f"anchors and positives must both be (B, D) with B >= 1, got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}")
