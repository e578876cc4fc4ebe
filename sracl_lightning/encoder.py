"""The sequence-encoder interface every backbone implements.

An encoder maps a batch of left-padded item windows ``(B, L)`` to one representation per sequence ``(B, D)``
(the paper's ``h_u``) and owns the item embedding table ``(N + 1, D)`` whose row 0 is padding. Scores are
``h_u @ item_embeddings().T`` over the full item set (docs/method.md#backbone), so the table is tied between input and
output.

To add a backbone, subclass :class:`SequenceEncoder`, take ``num_items`` and ``max_len`` as the first two
constructor arguments (the CLI supplies them from the data), and implement :meth:`forward`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn


class SequenceEncoder(nn.Module, ABC):
    """Base class of the backbones.

    Args:
        num_items: Number of real items ``N``; the embedding table has ``N + 1`` rows, row 0 being padding.
        hidden_size: Representation width ``D``.
    """

    def __init__(self, num_items: int, hidden_size: int) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, hidden_size, padding_idx=0)

    @abstractmethod
    def forward(self, input_ids: Tensor) -> Tensor:
        """Encode ``(B, L)`` int64 windows (0 = padding, at least one real item each) into ``(B, D)``."""

    def encode_embedded(self, input_ids: Tensor, item_vectors: Tensor) -> Tensor:
        """Encode windows whose item vectors are given instead of looked up: ``(B, L)`` ids (they still mark
        padding) and ``(B, L, D)`` vectors -> ``(B, D)``. Losses that feed mixtures of item embeddings use it (the
        learnable item substitution of the paper's Table 4). Backbones that cannot take vectors raise."""
        raise NotImplementedError(f"{type(self).__name__} does not encode given item vectors; implement "
                                  "encode_embedded to use it with learnable item substitution")

    def item_embeddings(self) -> Tensor:
        """The ``(N, D)`` output embeddings of items 1..N; the padding row is never a candidate."""
        return self.item_embedding.weight[1:]
