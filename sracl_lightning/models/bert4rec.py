"""BERT4Rec (Sun et al., CIKM 2019): SASRec's Transformer made bidirectional and trained as a cloze task.

The blocks, embeddings and initialisation are :class:`~sracl_lightning.models.sasrec.SASRec`'s; what differs:

* Attention: every position sees every non-padding position (key-padding mask only, no causal mask).
* Input: a ``mask`` token (an extra token of the encoder, never ranked) stands for each item to predict. To
  recommend, the window gets one ``mask`` appended, ``[v_1, ..., v_n, mask]``, and the representation is that
  position's output, so the encoder holds ``max_len + 1`` position embeddings.
* Readout: RecBole's output head, ``LayerNorm(GELU(Dense(x)))``, then scores against the (tied) item embeddings.

The cloze objective that masks random items of the sequence is a part of the method layer,
:class:`~sracl_lightning.methods.bert4rec.MaskedItemPrediction`; the recommendation loss of
:class:`~sracl_lightning.methods.module.SRACLModule` trains the appended mask, the "fine-tuning" samples of RecBole
1.2's BERT4Rec (``ft_ratio``).

NOTE: RecBole adds a learned per-item output bias to the scores; scores here are ``h @ item_embeddings().T`` for
every backbone (the one scoring rule of :mod:`sracl_lightning.models.scoring`), so there is none.

Shapes: B batch, L window, D hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.models.sasrec import MASK_VALUE, SASRec


class BERT4Rec(SASRec):
    """Bidirectional Transformer encoder with an appended mask token (RecBole 1.2's BERT4Rec defaults).

    Args:
        num_items: Number of items ``N`` (supplied by the data).
        max_len: Window length ``L`` (supplied by the data); the encoder has ``L + 1`` positions, the last one
            for the appended mask token.
        hidden_size: ``d``.
        num_layers: Transformer blocks.
        num_heads: Attention heads per block.
        inner_size: FFN inner width.
        hidden_dropout: Dropout on the embeddings and after each sub-layer (RecBole: 0.2).
        attn_dropout: Dropout on the attention probabilities (RecBole: 0.2).
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: Std of the normal initialisation.
        extra_tokens: Tokens besides ``mask``, which the encoder always has (it is added when not listed).
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_size: int = 256,
        hidden_dropout: float = 0.2,
        attn_dropout: float = 0.2,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        extra_tokens: Sequence[str] = (),
    ) -> None:
        if isinstance(extra_tokens, str):
            raise TypeError(f"extra_tokens must be a sequence of token names, got the string {extra_tokens!r}")
        tokens = tuple(extra_tokens) if "mask" in extra_tokens else ("mask", *extra_tokens)
        super().__init__(num_items, max_len + 1, hidden_size, num_layers, num_heads, inner_size, hidden_dropout,
                         attn_dropout, layer_norm_eps, initializer_range, tokens)
        self.output_dense = nn.Linear(hidden_size, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.output_dense.apply(self._init_weights)
        self.output_norm.apply(self._init_weights)

    def attention_bias(self, input_ids: Tensor) -> Tensor:
        """Additive mask (B, 1, L, L): every query sees every non-padding key, in both directions."""
        length = input_ids.shape[1]
        allowed = (input_ids != 0)[:, None, None, :].expand(-1, 1, length, -1)  # (B, 1, L, L)
        return torch.zeros(allowed.shape, device=input_ids.device).masked_fill_(~allowed, MASK_VALUE)

    def head(self, x: Tensor) -> Tensor:
        """The output head, ``LayerNorm(GELU(Dense(x)))``: (..., D) -> (..., D)."""
        return self.output_norm(F.gelu(self.output_dense(x)))

    def with_mask(self, input_ids: Tensor) -> Tensor:
        """The windows with one mask token appended: (B, L) -> (B, L + 1)."""
        mask = torch.full_like(input_ids[:, :1], self.token_id("mask"))
        return torch.cat([input_ids, mask], dim=1)

    def forward(self, input_ids: Tensor) -> Tensor:
        ids = self.with_mask(input_ids)  # (B, L + 1)
        return self.head(self.read_out(ids, self.embed(ids)))  # (B, D): the appended mask's output

    def encode_embedded(self, input_ids: Tensor, item_vectors: Tensor) -> Tensor:
        ids = self.with_mask(input_ids)  # (B, L + 1)
        mask = self.item_embedding(ids[:, -1:])  # (B, 1, D)
        vectors = torch.cat([item_vectors, mask.to(item_vectors.dtype)], dim=1)  # (B, L + 1, D)
        return self.head(self.read_out(ids, self.embed(ids, vectors)))

    def cloze_states(self, input_ids: Tensor) -> Tensor:
        """Head outputs at every position (B, L', D) of windows (B, L') that hold mask tokens, ``L' <= L + 1``:
        the predictions of the cloze task."""
        return self.head(self.forward_all(input_ids))
