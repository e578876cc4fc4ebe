"""LLM-ESR's dual-view encoder (Liu et al., "LLM-ESR: Large Language Models Enhancement for Long-tailed Sequential
Recommendation", NeurIPS 2024; official code liuqidong07/LLM-ESR at e5dc388, its SASRec version).

Two views of each window, encoded by one shared Transformer:

* **collaborative**: trainable item embeddings ``e_v`` (D), initialised from the first D principal components of
  the semantic item vectors (the official ``pca64_itm_emb_np.pkl``);
* **semantic**: the frozen semantic item vectors ``s_v`` (E) through an adapter ``A = Linear(E, E/2) ∘ Linear(E/2,
  D)`` (no activation between, as in the official code).

Each view is scaled by √D, gets the shared position embedding and dropout; then cross-attention (2 heads, bias-free
projections, no residual) lets each view query the other: the collaborative input becomes attention of the semantic
view over the collaborative one, and the other way round. The shared backbone is the official pre-LN block of the
SASRec.pytorch lineage: ``x ← LN(x) + MHA(LN(x), x, x)``, ``x ← FFN(LN(x)) + LN(x)`` (ReLU, dropout), padding
zeroed after every block, a final LayerNorm. The representation is the concatenation of both views' last position,
``h = [h_id ; h_sem]`` (2D), and an item's output vector is ``[e_v ; A s_v]``, so the score is
``⟨h_id, e_v⟩ + ⟨h_sem, A s_v⟩``, the official ``_get_embedding``.

The frozen semantic table comes from the run's semantic profile (``--data.semantic_profile``: this project's offline
text embeddings, or co-occurrence vectors where a dataset has no text), labelled as such by every result's
protocol; it is a persistent buffer, so a checkpoint scores without the data. The retrieval self-distillation is an
objective, :class:`~sracl_lightning.methods.llmesr.RetrievalDistillation`.

NOTE: deviations from the official code: the semantic vectors are this project's profile, not text-embedding-ada-002
(1536-d); the attention masks padding keys (the official ``MultiheadAttention`` gets no mask, so padding is attended
to) and, as there, no causal mask (the window never holds its target here); positions count window slots as in
:class:`~sracl_lightning.models.sasrec.SASRec` (the official code counts 1..n from the oldest item).

Shapes: B batch, L window, D view width, E semantic width, N items.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.errors import UsageError
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import Dropout


class CrossAttention(nn.Module):
    """Multi-head attention of ``x``'s positions over ``y``'s (bias-free Q/K/V, an output projection, no residual),
    padding keys masked: (B, L, D), (B, L, D), (B, L) ids -> (B, L, D)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of cross_heads {num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False)
        self.output = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: Tensor) -> Tensor:
        b, length, d = x.shape
        return x.view(b, length, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, A, L, Dh)

    def forward(self, x: Tensor, y: Tensor, input_ids: Tensor) -> Tensor:
        keep = (input_ids != 0)[:, None, None, :]  # (B, 1, 1, L)
        context = F.scaled_dot_product_attention(self._heads(self.query(x)), self._heads(self.key(y)),
                                                 self._heads(self.value(y)), attn_mask=keep)  # (B, A, L, Dh)
        return self.output(context.transpose(1, 2).flatten(2))


class PreNormBlock(nn.Module):
    """The official backbone's block: ``q = LN(x); x = q + MHA(q, x, x)``, then ``q = LN(x); x = q + FFN(q)``
    with FFN = Linear-ReLU-Linear and dropout, padding keys masked."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.forward_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.dense_in = nn.Linear(hidden_size, hidden_size)
        self.dense_out = nn.Linear(hidden_size, hidden_size)
        self.dropout_in, self.dropout_out = Dropout(dropout), Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        q = self.attention_norm(x)
        x = q + self.attention(q, x, x, key_padding_mask=padding, need_weights=False)[0]
        q = self.forward_norm(x)
        return q + self.dropout_out(self.dense_out(self.dropout_in(F.relu(self.dense_in(q)))))


class LLMESR(SequenceEncoder):
    """LLM-ESR's dual-view encoder: collaborative and semantic views, one shared backbone, ``h = [h_id ; h_sem]``.

    ``hidden_size`` is each view's width D; the representation and the item output vectors are 2D wide (the
    encoder's ``hidden_size`` attribute, which the method's parts read, is 2D).

    Args:
        num_items: Number of items ``N`` (supplied by the data).
        max_len: Window length ``L`` (supplied by the data).
        semantic_dim: Width E of the semantic profile's item vectors (checked against the profile when training).
        hidden_size: D, each view's width (64).
        num_layers: Blocks of the shared backbone (``trm_num`` 2).
        num_heads: Heads of the backbone's attention (1).
        dropout: Dropout on the embeddings, the attention and the FFN (0.5).
        cross_attention: Let each view attend to the other before the backbone (``use_cross_att``, on in the official
            scripts).
        cross_heads: Heads of the cross-attention (2).
        extra_tokens: Tokens besides the items (their semantic rows are zeros).
    """

    def __init__(self, num_items: int, max_len: int = 20, semantic_dim: int = 384, hidden_size: int = 64,
                 num_layers: int = 2, num_heads: int = 1, dropout: float = 0.5, cross_attention: bool = True,
                 cross_heads: int = 2, extra_tokens: Sequence[str] = ()) -> None:
        super().__init__(num_items, hidden_size, extra_tokens)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if semantic_dim < 2:
            raise ValueError(f"semantic_dim must be >= 2, got {semantic_dim}")
        self.view_size, self.hidden_size = hidden_size, 2 * hidden_size
        self.max_len, self.semantic_dim = max_len, semantic_dim
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.embedding_dropout = Dropout(dropout)
        self.adapter = nn.Sequential(nn.Linear(semantic_dim, semantic_dim // 2),
                                     nn.Linear(semantic_dim // 2, hidden_size))
        self.cross_attention = cross_attention
        if cross_attention:
            self.semantic_to_id = CrossAttention(hidden_size, cross_heads)
            self.id_to_semantic = CrossAttention(hidden_size, cross_heads)
        self.blocks = nn.ModuleList(PreNormBlock(hidden_size, num_heads, dropout) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        # (N + 1 + T, E) the frozen semantic item vectors, filled by setup() from the profile; checkpointed.
        self.register_buffer("semantic_items", torch.zeros(self.vocab_size, semantic_dim))
        for name, parameter in self.named_parameters():  # the official init: xavier-normal for every matrix
            if parameter.dim() >= 2 and not name.startswith("item_embedding"):
                nn.init.xavier_normal_(parameter)

    def setup(self, context: object) -> None:
        """Take the profile's semantic item vectors and initialise the collaborative embeddings from their first D
        principal components (the official PCA initialisation)."""
        semantic = context.require_semantic("LLM-ESR's semantic view")
        vectors = semantic.item_embeddings  # (N + 1, E)
        if vectors.shape[1] != self.semantic_dim:
            raise UsageError(f"LLMESR.semantic_dim is {self.semantic_dim}, but semantic profile {semantic.profile} "
                             f"has width {vectors.shape[1]}: set --model.init_args.encoder.init_args.semantic_dim "
                             f"{vectors.shape[1]}")
        with torch.no_grad():
            self.semantic_items.zero_()
            self.semantic_items[:self.num_items + 1] = vectors.to(self.semantic_items)
            self.item_embedding.weight[1:self.num_items + 1] = principal_components(vectors[1:], self.view_size).to(
                self.item_embedding.weight)

    def views(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """The two embedded, position-encoded views (B, L, D) each, after cross-attention."""
        length = input_ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"window length {length} exceeds max_len {self.max_len}")
        positions = self.position_embedding(torch.arange(self.max_len - length, self.max_len, device=input_ids.device))
        scale = self.view_size ** 0.5
        collaborative = self.embedding_dropout(self.item_embedding(input_ids) * scale + positions)
        semantic = self.embedding_dropout(self.adapter(self.semantic_items[input_ids]) * scale + positions)
        if self.cross_attention:
            collaborative, semantic = (self.semantic_to_id(semantic, collaborative, input_ids),
                                       self.id_to_semantic(collaborative, semantic, input_ids))
        return collaborative, semantic

    def backbone(self, x: Tensor, input_ids: Tensor) -> Tensor:
        """The shared blocks over one view (B, L, D), read out at the last position: (B, D)."""
        padding = input_ids == 0  # (B, L)
        keep = (~padding)[..., None].to(x.dtype)
        x = x * keep
        for block in self.blocks:
            x = block(x, padding) * keep
        return self.final_norm(x[:, -1])

    def forward(self, input_ids: Tensor) -> Tensor:
        collaborative, semantic = self.views(input_ids)
        return torch.cat([self.backbone(collaborative, input_ids), self.backbone(semantic, input_ids)], dim=-1)

    def item_embeddings(self) -> Tensor:
        """(N, 2D) output vectors ``[e_v ; A s_v]`` of items 1..N."""
        items = slice(1, self.num_items + 1)
        return torch.cat([self.item_embedding.weight[items], self.adapter(self.semantic_items[items])], dim=-1)


def principal_components(vectors: Tensor, width: int) -> Tensor:
    """(M, width) projections of (M, E) vectors on their first ``width`` principal components (zero columns where
    E < width), as the official code's PCA."""
    centred = vectors.double() - vectors.double().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)  # (min(M, E), E)
    projected = centred @ v[:width].T  # (M, min(width, E))
    out = torch.zeros(len(vectors), width, dtype=torch.float64)
    out[:, :projected.shape[1]] = projected
    return out.float()
