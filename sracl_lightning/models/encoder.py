"""The sequence-encoder interface every backbone implements.

An encoder maps a batch of left-padded item windows ``(B, L)`` to one representation per sequence ``(B, D)``
(the paper's ``h_u``) and owns the token embedding table ``(N + 1 + T, D)``: row 0 is padding, rows 1..N are the
items, and rows N + 1..N + T are the encoder's own extra tokens (a mask token, say), ``T = len(extra_tokens)``.
Scores are ``h_u @ item_embeddings().T`` over the full item set (docs/method.md#backbone), so the item rows are tied
between input and output; padding and extra tokens are never candidates.

To add a backbone, subclass :class:`SequenceEncoder`, take ``num_items`` and ``max_len`` as the first two
constructor arguments (the CLI supplies them from the data), and implement :meth:`forward`. A backbone that needs
tokens of its own (masked-item views, BERT4Rec-style models) passes their names as ``extra_tokens`` and looks their
ids up with :meth:`SequenceEncoder.token_id`; the default (none) keeps the table, and so old checkpoints, unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor, nn


class SequenceEncoder(nn.Module, ABC):
    """Base class of the backbones.

    Args:
        num_items: Number of real items ``N``; they have the ids 1..N, id 0 being padding.
        hidden_size: Representation width ``D``.
        extra_tokens: Names of tokens the encoder owns besides the items, e.g. ``("mask",)``. Token ``i`` of this
            sequence gets the id ``N + 1 + i`` (see :meth:`token_id`) and a trainable row of the embedding table;
            it may appear in input windows but is never ranked and is not in :meth:`item_embeddings`. The default,
            none, gives the ``(N + 1, D)`` table of an encoder without extra tokens.

    Raises:
        ValueError: ``num_items < 1``, or the token names are empty or repeated.
        TypeError: ``extra_tokens`` is a single string rather than a sequence of names.
    """

    def __init__(self, num_items: int, hidden_size: int, extra_tokens: Sequence[str] = ()) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if isinstance(extra_tokens, str):
            raise TypeError(f"extra_tokens must be a sequence of token names, got the string {extra_tokens!r}; "
                            f"write ({extra_tokens!r},)")
        names = tuple(extra_tokens)
        if any(not isinstance(name, str) or not name for name in names) or len(set(names)) != len(names):
            raise ValueError(f"extra_tokens must be distinct non-empty names, got {list(names)}")
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.extra_tokens = names
        # (N + 1 + T, D): row 0 padding (no gradient), rows 1..N items, rows N + 1.. the extra tokens.
        self.item_embedding = nn.Embedding(self.vocab_size, hidden_size, padding_idx=0)

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table, ``N + 1 + T``: the valid input ids are ``0..vocab_size - 1``."""
        return self.num_items + 1 + len(self.extra_tokens)

    def token_id(self, name: str) -> int:
        """The input id of the extra token ``name``: ``N + 1 + i`` for the ``i``-th name of ``extra_tokens``.

        Raises:
            KeyError: The encoder has no such token.
        """
        try:
            return self.num_items + 1 + self.extra_tokens.index(name)
        except ValueError:
            raise KeyError(f"{type(self).__name__} has no extra token {name!r}; it has "
                           f"{list(self.extra_tokens) or 'none'} (the extra_tokens argument)") from None

    def check_input_ids(self, input_ids: Tensor) -> None:
        """Raise unless every id of ``input_ids`` is padding, an item or an extra token (``0..vocab_size - 1``).

        Not called by :meth:`forward` (it reads a flag back from the device); an embedding lookup raises on an
        out-of-range id anyway, less readably.

        Raises:
            ValueError: An id lies outside ``0..vocab_size - 1``.
        """
        bad = (input_ids < 0) | (input_ids >= self.vocab_size)
        if bool(bad.any()):
            raise ValueError(f"input id {int(input_ids[bad][0])} is outside 0..{self.vocab_size - 1} (0 padding, "
                             f"1..{self.num_items} items, then the extra tokens {list(self.extra_tokens)})")

    def setup(self, context: object) -> None:
        """Read frozen training data before fitting; called by the module with its
        :class:`~sracl_lightning.methods.parts.TrainingContext`. Most encoders need none; one that keeps side
        information of its own (LLM-ESR's frozen semantic item table) stores it here, in persistent buffers, so that
        a checkpoint scores without the data."""

    @abstractmethod
    def forward(self, input_ids: Tensor) -> Tensor:
        """Encode ``(B, L)`` int64 windows (0 = padding, at least one non-padding id each) into ``(B, D)``. Ids
        are items 1..N or the encoder's extra tokens."""

    def encode_embedded(self, input_ids: Tensor, item_vectors: Tensor) -> Tensor:
        """Encode windows whose item vectors are given instead of looked up: ``(B, L)`` ids (they still mark
        padding) and ``(B, L, D)`` vectors -> ``(B, D)``. Losses that feed mixtures of item embeddings use it (the
        learnable item substitution of the paper's Table 4). Backbones that cannot take vectors raise."""
        raise NotImplementedError(f"{type(self).__name__} does not encode given item vectors; implement "
                                  "encode_embedded to use it with learnable item substitution")

    def item_embeddings(self) -> Tensor:
        """The ``(N, D)`` output embeddings of items 1..N; the padding row and the extra tokens are never
        candidates."""
        return self.item_embedding.weight[1:self.num_items + 1]
