"""GRU4Rec behind the :class:`~sracl_lightning.models.encoder.SequenceEncoder` interface, as RecBole's sequential
GRU4Rec.

GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016; in the
RecBole form of Tan et al., DLRS 2016) is one of the three backbones of the paper's plug-and-play study (Fig. 3,
docs/method.md#duorec-and-gru4rec): it keeps its own full-softmax cross-entropy and gains SRA-CL's two contrastive
terms.

* Input: item embedding (tied with the output layer), then dropout. No position embeddings: order is the recurrence.
* A multi-layer GRU without biases (RecBole's ``bias=False``), then a dense projection from the GRU width back to
  the embedding width ``D``, so that ``h_u`` can be scored against the item table.
* Readout: the state after the most recent item.
* Init as RecBole: item table xavier-normal; the first GRU layer's input and recurrent weights xavier-uniform.

Padding. Windows arrive right-aligned (left-padded with 0, :class:`~sracl_lightning.datasets.batch.SeqBatch`), so a GRU
run over them as they are would first step through the leading pads, and every such step moves the state (through a
bias, if any, and through the pad row, which xavier init makes non-zero). The output would then depend on how much
padding precedes the items. RecBole never sees this because its sequences are left-aligned: it runs the GRU over
the whole row and gathers the output at ``length - 1``. :func:`left_align` rolls each row into that layout, so the
model computes exactly RecBole's function: trailing pads come after the read-out step and a GRU is causal, so
they cannot reach it. This costs one gather and, unlike ``pack_padded_sequence``, needs no lengths on the host
(no device synchronisation per step).

Shapes: B batch, L window, D embedding/representation width, G GRU width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import Dropout


def left_align(input_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Roll each right-aligned row so that its items come first and its padding last.

    Args:
        input_ids: ``(B, L)`` windows, left-padded with 0 (the items of a row are contiguous and end at ``L - 1``).

    Returns:
        The rolled ``(B, L)`` windows and the ``(B,)`` number of items per row. An all-padding row (excluded by
        the interface) gets length 1 so that the read-out index stays valid.
    """
    length = input_ids.shape[1]
    lengths = (input_ids != 0).sum(1).clamp_(min=1)  # (B,)
    steps = torch.arange(length, device=input_ids.device)  # (L,)
    source = (steps + (length - lengths)[:, None]) % length  # (B, L): skip the row's leading pads, wrap them round
    return input_ids.gather(1, source), lengths


class GRU4Rec(SequenceEncoder):
    """Recurrent sequential recommender (Hidasi et al., 2016) in the RecBole configuration used by the baselines.

    Defaults are RecBole's ``GRU4Rec.yaml``: ``embedding_size`` 64 (here ``hidden_size``, the interface's ``D``),
    ``hidden_size`` 128 (here ``gru_hidden_size``), ``num_layers`` 1, ``dropout`` 0.3 (here
    ``embedding_dropout``; RecBole applies it to the embeddings only).

    Args:
        num_items: Number of items ``N`` (supplied by the data).
        max_len: Window length ``L`` (supplied by the data). A GRU has no position parameters, so the model
            accepts windows of any length and its output does not depend on the padding width.
        hidden_size: ``d``, the item-embedding and representation width ``D``.
        gru_hidden_size: Width ``G`` of the GRU state.
        num_layers: Number of stacked GRU layers.
        embedding_dropout: Dropout on the item embeddings before the GRU.
        gru_bias: Give the GRU bias vectors. RecBole's GRU has none; padding is handled either way.
        extra_tokens: Names of tokens besides the items (e.g. ``("mask",)`` for masked-item views), ids
            ``N + 1..`` (see :meth:`~sracl_lightning.models.encoder.SequenceEncoder.token_id`); never ranked. Default
            none: the parameters of a checkpoint written without them.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        hidden_size: int = 64,
        gru_hidden_size: int = 128,
        num_layers: int = 1,
        embedding_dropout: float = 0.3,
        gru_bias: bool = False,
        extra_tokens: Sequence[str] = (),
    ) -> None:
        super().__init__(num_items, hidden_size, extra_tokens)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.max_len = max_len
        self.embedding_dropout = Dropout(embedding_dropout)
        self.gru = nn.GRU(hidden_size, gru_hidden_size, num_layers=num_layers, bias=gru_bias, batch_first=True)
        self.dense = nn.Linear(gru_hidden_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """RecBole's ``_init_weights``: xavier-normal item table (extra-token rows included), xavier-uniform first
        GRU layer."""
        # NOTE: as in RecBole, the padding row is re-drawn too; it is never read out (see the module docstring).
        nn.init.xavier_normal_(self.item_embedding.weight)
        # NOTE: RecBole initialises only layer 0 (it names ``weight_ih_l0``/``weight_hh_l0``); deeper layers and
        # ``dense`` keep PyTorch's defaults. Kept as is; identical to "all layers" at the default num_layers=1.
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)
        nn.init.xavier_uniform_(self.gru.weight_hh_l0)

    def forward(self, input_ids: Tensor) -> Tensor:
        aligned, lengths = left_align(input_ids)  # (B, L), (B,)
        x = self.embedding_dropout(self.item_embedding(aligned))  # (B, L, D)
        states, _ = self.gru(x)  # (B, L, G); position t has seen items 0..t only
        last = states.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1])).squeeze(1)  # (B, G)
        # The dense layer is per position, so projecting the read-out state alone equals RecBole's
        # gather(dense(states)) at 1/L of the cost.
        return self.dense(last)  # (B, D)
