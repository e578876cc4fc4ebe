"""SASRec exactly as the paper's released code uses it (docs/method.md#backbone; RecBole 1.2 ``TransformerEncoder``).

* Input: item embedding + learned absolute position embedding, then LayerNorm, then dropout.
* Post-LN blocks: ``LN(x + Dropout(Dense(MHA(x))))`` then ``LN(x + Dropout(FFN(x)))``, FFN = Linear-GELU-Linear.
* Attention mask: causal and key-padding, additive ``-10000`` (RecBole's constant) at masked places.
* Readout: the last position of the final layer; windows are right-aligned so it is always a real item.
* Init: Linear/Embedding ~ N(0, 0.02), biases 0, LayerNorm (1, 0).

Shapes: B batch, L window, D hidden, A heads, Dh = D / A.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import Dropout, attention

#: RecBole's additive mask value; exp(-10000) underflows to exactly 0 in fp32.
MASK_VALUE = -10000.0


class SelfAttention(nn.Module):
    """Multi-head attention with the post-LN residual of RecBole's ``MultiHeadAttention``."""

    def __init__(self, hidden_size: int, num_heads: int, attn_dropout: float, hidden_dropout: float,
                 layer_norm_eps: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = attn_dropout
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = Dropout(hidden_dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def _heads(self, x: Tensor) -> Tensor:
        b, length, d = x.shape
        return x.view(b, length, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, A, L, Dh)

    def forward(self, query: Tensor, memory: Tensor, bias: Tensor) -> Tensor:
        """Attend from ``query`` (B, Lq, D) to ``memory`` (B, L, D) under the additive ``bias`` (B, 1, Lq, L)."""
        q, k, v = self._heads(self.query(query)), self._heads(self.key(memory)), self._heads(self.value(memory))
        dropout = self.attn_dropout if self.training else 0.0
        context = attention(q, k, v, bias.to(q.dtype), dropout)  # (B, A, Lq, Dh)
        context = context.transpose(1, 2).flatten(2)  # (B, Lq, D)
        return self.norm(self.dropout(self.dense(context)) + query)


class FeedForward(nn.Module):
    """Position-wise FFN (D -> inner -> D, GELU) with the post-LN residual."""

    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense_in = nn.Linear(hidden_size, inner_size)
        self.dense_out = nn.Linear(inner_size, hidden_size)
        self.dropout = Dropout(hidden_dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.dropout(self.dense_out(F.gelu(self.dense_in(x)))) + x)


class TransformerBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, inner_size: int, hidden_dropout: float,
                 attn_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden_size, num_heads, attn_dropout, hidden_dropout, layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps)

    def forward(self, query: Tensor, memory: Tensor, bias: Tensor) -> Tensor:
        return self.feed_forward(self.attention(query, memory, bias))


class SASRec(SequenceEncoder):
    """Self-attentive sequential recommender (Kang & McAuley, 2018) in the RecBole/SRA-CL configuration.

    Args:
        num_items: Number of items ``N`` (supplied by the data).
        max_len: Window length ``L``; the number of position embeddings (supplied by the data).
        hidden_size: ``d``, the embedding and hidden width.
        num_layers: Number of Transformer blocks.
        num_heads: Attention heads per block.
        inner_size: FFN inner width.
        hidden_dropout: Dropout on the embeddings and after each sub-layer.
        attn_dropout: Dropout on the attention probabilities.
        layer_norm_eps: LayerNorm epsilon (RecBole's 1e-12).
        initializer_range: Std of the normal initialisation.
        extra_tokens: Names of tokens besides the items (e.g. ``("mask",)`` for masked-item views), ids
            ``N + 1..`` (see :meth:`~sracl_lightning.models.encoder.SequenceEncoder.token_id`); never ranked. Default
            none: the parameters of a checkpoint written without them.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_size: int = 256,
        hidden_dropout: float = 0.5,
        attn_dropout: float = 0.5,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        extra_tokens: Sequence[str] = (),
    ) -> None:
        super().__init__(num_items, hidden_size, extra_tokens)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.max_len = max_len
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.embedding_dropout = Dropout(hidden_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, inner_size, hidden_dropout, attn_dropout, layer_norm_eps)
            for _ in range(num_layers)
        )
        self.initializer_range = initializer_range
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def attention_bias(self, input_ids: Tensor) -> Tensor:
        """Additive mask (B, 1, L, L): query i may see key j iff j <= i and id j is not padding (items and extra
        tokens are both attended to)."""
        length = input_ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()  # (L, L)
        allowed = causal & (input_ids != 0)[:, None, None, :]  # (B, 1, L, L)
        return torch.zeros(allowed.shape, device=input_ids.device).masked_fill_(~allowed, MASK_VALUE)

    def embed(self, input_ids: Tensor, item_vectors: Tensor | None = None) -> Tensor:
        """Item + position embeddings, LayerNorm, dropout: (B, L) -> (B, L, D).

        ``item_vectors`` (B, L, D), when given, replaces the item-embedding lookup (see :meth:`encode_embedded`).
        """
        length = input_ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"window length {length} exceeds max_len {self.max_len}")
        # Positions count 0..L-1 left to right within a max_len window, as in the released code.
        # NOTE: RecBole right-pads, so there the newest of n items gets position n-1, here L-1 (docs/method.md
        # #deviations, D38; tests/test_sasrec_parity.py).
        positions = torch.arange(self.max_len - length, self.max_len, device=input_ids.device)
        items = self.item_embedding(input_ids) if item_vectors is None else item_vectors
        x = items + self.position_embedding(positions)
        return self.embedding_dropout(self.embedding_norm(x))

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.read_out(input_ids, self.embed(input_ids))

    def encode_embedded(self, input_ids: Tensor, item_vectors: Tensor) -> Tensor:
        return self.read_out(input_ids, self.embed(input_ids, item_vectors))

    def read_out(self, input_ids: Tensor, x: Tensor) -> Tensor:
        """The blocks over embedded windows ``x`` (B, L, D), read out at the last position: (B, D)."""
        bias = self.attention_bias(input_ids)  # (B, 1, L, L)
        for block in self.blocks[:-1]:
            x = block(x, x, bias)
        # Only the last position is read out, so the final block computes its query and FFN for that position
        # alone; keys and values still cover the whole window. Same output, about half the final block's work.
        return self.blocks[-1](x[:, -1:], x, bias[:, :, -1:]).squeeze(1)  # (B, D)

    def forward_all(self, input_ids: Tensor) -> Tensor:
        """Outputs at every position (B, L, D); used by tests and by losses that need per-position states."""
        bias = self.attention_bias(input_ids)
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, x, bias)
        return x
