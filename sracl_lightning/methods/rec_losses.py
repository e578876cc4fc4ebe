"""Recommendation losses: the term every method trains with, ``L_rec`` of Eq. 12.

A recommendation loss is a module ``forward(batch, h, encoder) -> scalar`` over the recommendation pass ``h`` of a
training batch; the module is injected into :class:`~sracl_lightning.methods.module.SRACLModule` as ``rec_loss``.
Shapes: B batch, D hidden, N items.
"""

from __future__ import annotations

from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
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
