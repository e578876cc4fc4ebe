"""The inter-user objective L_CS (paper Eqs. 6–9, docs/method.md#inter-user-loss) and its two injected parts.

``L_CS = InfoNCE(anchor h_u, positive h⁺_u)`` over a batch. Two choices are independent of each other:

* **where the neighbours' representations h_u' come from** (:class:`NeighbourSource`, the cost mode):
  :class:`EncodedNeighbours` encodes the K retrieved prefixes with gradient at every step and the anchor a second
  time, as the released code (about 14 encoder passes per sample); :class:`MemoryBank` reads them from a no-grad
  bank of every training prefix and reuses the recommendation pass as the anchor (docs/method.md#cost-modes);
* **what the positive is** (:class:`PositiveSource`): :class:`SynthesizedPositive`, the learnable synthesizer's
  mixture of the K neighbours (SRA-CL), or :class:`RandomNeighbourPositive`, one neighbour drawn uniformly (Table 2,
  "w/o learnable").

Any positive works with any neighbour source. Dimension letters: B batch, K neighbours, L window, D hidden,
E semantic width, P training prefixes, G global batch (B summed over DDP ranks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.distributed import all_gather_rows
from sracl_lightning.errors import UsageError, check_at_least, check_in_range
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, Objective, Part, TrainingContext
from sracl_lightning.methods.synthesizer import SampleSynthesizer
from sracl_lightning.models.encoder import SequenceEncoder


# ------------------------------------------------------------------------------------------ neighbour sources
class NeighbourSource(Part):
    """Where L_CS gets the anchor ``h_u`` and the neighbours' ``h_u'`` from: the cost mode.

    Args:
        dims: The module's sizes.
    """

    def anchor(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        """``h_u`` (B, D) of the anchors, given the recommendation pass ``h`` (B, D)."""
        raise NotImplementedError

    def hidden(self, batch: SeqBatch, encoder: SequenceEncoder) -> Tensor:
        """``h_u'`` (B, K, D) of every retrieved neighbour."""
        raise NotImplementedError

    def hidden_of(self, batch: SeqBatch, picks: Tensor, encoder: SequenceEncoder) -> Tensor:
        """``h_u'`` (B, D) of one neighbour per anchor, ``picks`` (B,) its column in 0..K-1."""
        raise NotImplementedError


class EncodedNeighbours(NeighbourSource):
    """The released code's cost mode: the K neighbour windows are encoded with gradient at every step, and the
    anchor is encoded once more for L_CS (its own dropout mask): B·(K + 1) extra encoder passes per batch."""

    def anchor(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        return encoder(batch.input_ids)  # (B, D): a second pass, as the released code

    def hidden(self, batch: SeqBatch, encoder: SequenceEncoder) -> Tensor:
        b, k, length = batch.neighbour_input_ids.shape
        return encoder(batch.neighbour_input_ids.reshape(b * k, length)).view(b, k, -1)  # (B, K, D)

    def hidden_of(self, batch: SeqBatch, picks: Tensor, encoder: SequenceEncoder) -> Tensor:
        rows = torch.arange(len(batch), device=picks.device)
        return encoder(batch.neighbour_input_ids[rows, picks])  # (B, L) -> (B, D)

    def describe(self) -> str:
        return "neighbours encoded with gradient"


class MemoryBank(NeighbourSource):
    """A cheaper cost mode: the neighbours' representations come from a no-grad bank of every training prefix.

    The bank is rebuilt by one no-grad pass over all prefixes (eval mode) at the start of each epoch, and the rows of
    each batch's anchors are overwritten with their fresh representations as training goes, so a step costs the
    anchor pass only. The synthesized positive still depends on the learnable synthesizer, but gradient reaches the
    encoder only through the anchor. NOTE: a deviation from the paper and the code, for cost
    (docs/method.md#cost-modes); bench/sracl.py measures both modes.

    Under DDP every process rebuilds the whole bank (the same weights give the same rows), and each step's anchor
    rows are gathered from all ranks (B·D floats per rank and step), so the banks stay identical across ranks and
    equal to the single-process bank on the same global batches.

    Args:
        dims: The module's sizes.
        batch_size: Prefixes per forward pass when the bank is rebuilt. 1024 keeps a pass's activations in a CPU's
            cache: Beauty's 131,413 prefixes take 4.9 s on 2 cores at 1024 or 512, 7.3 s at 4096.
        separate_anchor: Encode the anchor a second time for L_CS, with its own dropout mask, as the released code
            does (one encoder pass more per sample), instead of reusing the recommendation pass. This isolates one
            of the two differences between this mode and the released code's (the other: neighbours without
            gradient, from an eval-mode bank).
    """

    def __init__(self, dims: MethodDims, batch_size: int = 1024, separate_anchor: bool = False) -> None:
        super().__init__(dims)
        check_at_least("MemoryBank.batch_size", batch_size, 1)
        self.batch_size = batch_size
        self.separate_anchor = separate_anchor
        self.samples = None  # the training samples, set in setup()
        # (P, D) representations of every training prefix; rebuilt each epoch, so never checkpointed.
        self.register_buffer("bank", torch.empty(0, dims.hidden_size), persistent=False)

    def setup(self, context: TrainingContext) -> None:
        self.samples = context.train_samples

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        self.rebuild(encoder)

    @torch.no_grad()
    def rebuild(self, encoder: SequenceEncoder) -> None:
        """One no-grad pass over every training prefix, in eval mode (no dropout)."""
        if self.samples is None:
            raise RuntimeError("MemoryBank.setup() was not called: the bank is built inside trainer.fit")
        was_training = encoder.training
        encoder.eval()
        device = self.bank.device
        rows = []
        for start in range(0, len(self.samples), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(self.samples)))
            rows.append(encoder(self.samples.input_windows(index).to(device)).float())  # (b, D)
        self.bank = torch.cat(rows)  # (P, D)
        encoder.train(was_training)

    def anchor(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        """The recommendation pass's ``h_u`` (or, with ``separate_anchor``, a second pass's); its detached value
        refreshes the anchors' bank rows.

        NOTE: the released code encodes the anchor a second time for L_CS (another dropout mask); by default this
        mode reuses the rec pass, one encoder pass fewer per sample (docs/method.md#deviations, D25).
        """
        if self.separate_anchor:
            h = encoder(batch.input_ids)  # (B, D): its own dropout mask
        self.refresh(batch.prefix_row, h.detach().float())
        return h

    def refresh(self, rows: Tensor, hidden: Tensor) -> None:
        """Overwrite the (B,) bank ``rows`` with (B, D) ``hidden``, for the anchors of every DDP rank."""
        if self.bank.numel() == 0:
            raise RuntimeError("the memory bank is empty: it is rebuilt at the start of every training epoch")
        rows, _ = all_gather_rows(rows)  # (G,)
        hidden, _ = all_gather_rows(hidden)  # (G, D)
        self.bank[rows] = hidden

    def hidden(self, batch: SeqBatch, encoder: SequenceEncoder) -> Tensor:
        return self.bank[batch.neighbour_rows]  # (B, K, D), no gradient

    def hidden_of(self, batch: SeqBatch, picks: Tensor, encoder: SequenceEncoder) -> Tensor:
        return self.bank[batch.neighbour_rows.gather(1, picks[:, None]).squeeze(1)]  # (B, D)

    def describe(self) -> str:
        return "neighbours from a no-grad memory bank" + (", anchor encoded a second time" if self.separate_anchor
                                                            else "")


# ------------------------------------------------------------------------------------------- positive sources
class PositiveSource(Part):
    """What L_CS contrasts the anchor with: ``forward(batch, neighbours, encoder) -> (B, D)``.

    Args:
        dims: The module's sizes.
    """

    def forward(self, batch: SeqBatch, neighbours: NeighbourSource, encoder: SequenceEncoder) -> Tensor:
        raise NotImplementedError


class SynthesizedPositive(PositiveSource):
    """SRA-CL's positive: the learnable synthesizer's weighted sum of the K neighbours' ``h_u'`` (Eqs. 6–8).

    Args:
        dims: The module's sizes; needs ``semantic_dim``.
        dropout: Dropout on the synthesizer's attention weights. NOTE: 0 as in the paper; the released code applies
            0.5 (docs/method.md#deviations, D19).
    """

    def __init__(self, dims: MethodDims, dropout: float = 0.0) -> None:
        super().__init__(dims)
        check_in_range("SynthesizedPositive.dropout", dropout, 0, 1, high_inclusive=False)
        semantic_dim = dims.require_semantic_dim("the synthesized positive of L_CS")
        self.synthesizer = SampleSynthesizer(semantic_dim, dims.hidden_size, attention_dropout=dropout)

    def forward(self, batch: SeqBatch, neighbours: NeighbourSource, encoder: SequenceEncoder) -> Tensor:
        hidden = neighbours.hidden(batch, encoder)  # (B, K, D)
        return self.synthesizer(batch.semantic, batch.neighbour_semantic, hidden)  # (B, D)

    def describe(self) -> str:
        return f"synthesized positive (attention dropout {self.synthesizer.dropout.p})"


class RandomNeighbourPositive(PositiveSource):
    """Table 2's "w/o learnable": one of the K retrieved neighbours, drawn uniformly per anchor and step, is the
    positive; nothing is learned (docs/method.md#deviations, D31)."""

    def forward(self, batch: SeqBatch, neighbours: NeighbourSource, encoder: SequenceEncoder) -> Tensor:
        b, k = batch.neighbour_rows.shape
        picks = torch.randint(k, (b,), device=batch.neighbour_rows.device)  # (B,)
        return neighbours.hidden_of(batch, picks, encoder)  # (B, D)

    def describe(self) -> str:
        return "one random neighbour as the positive"


# -------------------------------------------------------------------------------------------------- objective
class UserContrast(Objective):
    """L_CS: InfoNCE between each anchor ``h_u`` and its positive ``h⁺_u`` built from retrieved neighbour users.

    Args:
        dims: The module's sizes.
        weight: α (paper and code: 0.1).
        positive: The positive source, built as ``positive(dims)`` (default: the synthesizer).
        neighbours: The neighbour source, built as ``neighbours(dims)`` (default: the memory bank).
        loss: The InfoNCE (default: the released code's NT-Xent, τ = 1, dot product).
    """

    name = "user_cl"

    def __init__(self, dims: MethodDims, weight: float = 0.1,
                 positive: Callable[[MethodDims], PositiveSource] = SynthesizedPositive,
                 neighbours: Callable[[MethodDims], NeighbourSource] = MemoryBank,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight)
        self.positive = positive(dims)
        self.neighbours = neighbours(dims)
        self.loss = loss or InfoNCE()

    def setup(self, context: TrainingContext) -> None:
        context.require_semantic("L_CS (user_contrast)")
        self.neighbours.setup(context)

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        self.neighbours.on_train_epoch_start(encoder)

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        if batch.neighbour_input_ids is None:
            raise UsageError("L_CS needs training batches with neighbours: set --data.semantic_profile")
        anchor = self.neighbours.anchor(batch, h, encoder)  # (B, D); first, so a memory bank holds this batch
        return self.loss(anchor, self.positive(batch, self.neighbours, encoder))  # (B, D) vs (B, D)

    def describe(self) -> str:
        return f"L_CS ({self.positive.describe()}, {self.neighbours.describe()}, {self.loss.extra_repr()})"
