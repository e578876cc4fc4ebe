"""SASRec parity: ``sracl_lightning/models/sasrec.py`` against RecBole 1.2's SASRec equations, written out here.

RecBole is not a dependency, so :class:`RecBoleSASRec` transcribes its ``SASRec.forward`` and
``TransformerEncoder`` (``recbole/model/sequential_recommender/sasrec.py``, ``recbole/model/layers.py``) with
RecBole's module names and conventions:

* item embedding (padding 0) + learned position embedding of ``arange(L)``, ``LayerNorm(eps)``, dropout;
* the extended attention mask: key not padding and key <= query, added as ``0`` / ``-10000.0``;
* per layer: ``MultiHeadAttention`` (query/key/value, ``QK^T / sqrt(head size)`` + mask, softmax, attention
  dropout, ``dense``, dropout, ``LayerNorm(h + input)``), then ``FeedForward`` (``dense_1``, erf GELU
  ``x * 0.5 * (1 + erf(x / sqrt 2))``, ``dense_2``, dropout, ``LayerNorm(h + input)``);
* sequences right-padded, the output gathered at ``item_seq_len - 1``.

The project's weights are copied into the reference by name and both run in eval mode (no dropout).

Padding convention: the project left-pads its windows and numbers positions ``0..L-1`` across the window
(``SASRec.embed``: "Positions count 0..L-1 left to right within a max_len window, as in the released code"), so the
newest item always sits at position ``L - 1``; RecBole right-pads, so the newest item of an ``n``-item sequence sits
at position ``n - 1``. The two agree exactly on full windows (``n = L``). On shorter sequences they differ only in
which position embeddings the items get: fed right-padded sequences with the position ids shifted by ``L - n``, the
RecBole equations reproduce the project to float precision, and with RecBole's own ids they do not. The mask value
(-10000, ``sasrec.MASK_VALUE``) is RecBole's, so it needs no accounting.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sracl_lightning.models.sasrec import MASK_VALUE, SASRec

pytestmark = pytest.mark.unit

NUM_ITEMS, MAX_LEN, HIDDEN, HEADS, INNER, LAYERS, EPS = 50, 8, 16, 2, 32, 2, 1e-12
#: float32 agrees to rounding (the project's fused ``scaled_dot_product_attention`` sums in another order than the
#: written-out softmax(QK^T)V); float64 shows that nothing but rounding is left.
TOLERANCES = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 0.0, "atol": 1e-12}}
DTYPES = pytest.mark.parametrize("dtype", list(TOLERANCES), ids=["float32", "float64"])

#: Sequences oldest item first; the first three fill the window, the others are shorter.
FULL = [[3, 17, 42, 8, 1, 50, 22, 9], [5, 5, 12, 30, 31, 2, 7, 40], [48, 3, 19, 27, 6, 33, 40, 14]]
SHORT = [[5, 12], [23, 23, 31, 44, 2, 50], [11], [1, 2, 3, 4, 5, 6, 7]]


# ------------------------------------------------------------------------------------ the RecBole reference
def recbole_gelu(x: Tensor) -> Tensor:
    """RecBole's ``gelu``: the erf form."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class MultiHeadAttention(nn.Module):
    """RecBole's ``MultiHeadAttention`` (post-LN residual)."""

    def __init__(self, n_heads: int, hidden_size: int, hidden_dropout: float, attn_dropout: float,
                 layer_norm_eps: float) -> None:
        super().__init__()
        self.num_attention_heads = n_heads
        self.attention_head_size = hidden_size // n_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.out_dropout = nn.Dropout(hidden_dropout)

    def heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, input_tensor: Tensor, attention_mask: Tensor) -> Tensor:
        query, key, value = (self.heads(f(input_tensor)) for f in (self.query, self.key, self.value))
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.attention_head_size)  # (B, A, L, L)
        probs = self.attn_dropout(torch.softmax(scores + attention_mask, dim=-1))
        context = (probs @ value).permute(0, 2, 1, 3).flatten(2)  # (B, L, D)
        return self.LayerNorm(self.out_dropout(self.dense(context)) + input_tensor)


class FeedForward(nn.Module):
    """RecBole's ``FeedForward`` with ``hidden_act="gelu"``."""

    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)

    def forward(self, input_tensor: Tensor) -> Tensor:
        hidden = self.dropout(self.dense_2(recbole_gelu(self.dense_1(input_tensor))))
        return self.LayerNorm(hidden + input_tensor)


class TransformerLayer(nn.Module):
    def __init__(self, *args: float) -> None:
        n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, layer_norm_eps = args
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(n_heads, hidden_size, hidden_dropout, attn_dropout,
                                                       layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        return self.feed_forward(self.multi_head_attention(hidden_states, attention_mask))


class TransformerEncoder(nn.Module):
    def __init__(self, n_layers: int, *args: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(TransformerLayer(*args) for _ in range(n_layers))

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> list[Tensor]:
        all_layers = []
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)
            all_layers.append(hidden_states)
        return all_layers  # output_all_encoded_layers=True


class RecBoleSASRec(nn.Module):
    """RecBole's SASRec forward on right-padded ``item_seq`` (B, L) with lengths ``item_seq_len`` (B,)."""

    def __init__(self, n_items: int, max_seq_length: int, hidden_size: int, n_layers: int, n_heads: int,
                 inner_size: int, hidden_dropout: float = 0.5, attn_dropout: float = 0.5,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.trm_encoder = TransformerEncoder(n_layers, n_heads, hidden_size, inner_size, hidden_dropout,
                                              attn_dropout, layer_norm_eps)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)

    @staticmethod
    def get_attention_mask(item_seq: Tensor) -> Tensor:
        """(B, 1, L, L): 0 where key j <= query i and j is an item, -10000.0 elsewhere."""
        extended = (item_seq != 0).unsqueeze(1).unsqueeze(2)  # (B, 1, 1, L)
        extended = torch.tril(extended.expand((-1, -1, item_seq.size(-1), -1)))
        return torch.where(extended, 0.0, -10000.0)

    def all_positions(self, item_seq: Tensor, position_ids: Tensor | None = None) -> Tensor:
        """The last layer's output at every position (B, L, D); ``position_ids`` (B, L) replaces ``arange(L)``."""
        if position_ids is None:
            position_ids = torch.arange(item_seq.size(1), dtype=torch.long).unsqueeze(0).expand_as(item_seq)
        input_emb = self.item_embedding(item_seq) + self.position_embedding(position_ids)
        input_emb = self.dropout(self.LayerNorm(input_emb))
        return self.trm_encoder(input_emb, self.get_attention_mask(item_seq))[-1]

    def forward(self, item_seq: Tensor, item_seq_len: Tensor, position_ids: Tensor | None = None) -> Tensor:
        output = self.all_positions(item_seq, position_ids)
        return output[torch.arange(len(item_seq)), item_seq_len - 1]  # gather_indexes(output, item_seq_len - 1)


# ----------------------------------------------------------------------------------------------- helpers
def project_to_recbole(name: str) -> str:
    """The RecBole name of a ``sracl_lightning.models.sasrec.SASRec`` parameter."""
    for ours, theirs in (("embedding_norm.", "LayerNorm."), ("blocks.", "trm_encoder.layer."),
                         (".attention.norm.", ".multi_head_attention.LayerNorm."),
                         (".attention.", ".multi_head_attention."),
                         (".feed_forward.dense_in.", ".feed_forward.dense_1."),
                         (".feed_forward.dense_out.", ".feed_forward.dense_2."),
                         (".feed_forward.norm.", ".feed_forward.LayerNorm.")):
        name = name.replace(ours, theirs)
    return name


def model_pair(num_layers: int = LAYERS, dtype: torch.dtype = torch.float32) -> tuple[SASRec, RecBoleSASRec]:
    """A project SASRec with every parameter randomised (so LayerNorm and biases matter) and its RecBole copy,
    both in eval mode and in ``dtype``."""
    torch.manual_seed(0)
    ours = SASRec(NUM_ITEMS, MAX_LEN, hidden_size=HIDDEN, num_layers=num_layers, num_heads=HEADS, inner_size=INNER,
                  layer_norm_eps=EPS)
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5 + (1.0 if parameter.dim() == 1 else 0.0))
    reference = RecBoleSASRec(NUM_ITEMS, MAX_LEN, HIDDEN, num_layers, HEADS, INNER, layer_norm_eps=EPS)
    reference.load_state_dict({project_to_recbole(k): v for k, v in ours.state_dict().items()}, strict=True)
    return ours.eval().to(dtype), reference.eval().to(dtype)


def padded(sequences: list[list[int]], side: str) -> tuple[Tensor, Tensor]:
    """(B, MAX_LEN) windows padded with 0 on ``side`` ("left": the project's, "right": RecBole's), and lengths."""
    out = torch.zeros(len(sequences), MAX_LEN, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if side == "left":
            out[row, MAX_LEN - len(seq):] = torch.tensor(seq)
        else:
            out[row, :len(seq)] = torch.tensor(seq)
    return out, torch.tensor([len(s) for s in sequences])


# ------------------------------------------------------------------------------------------------- tests
def test_parameter_names_map_one_to_one() -> None:
    ours, reference = model_pair()
    assert sorted(project_to_recbole(k) for k in ours.state_dict()) == sorted(reference.state_dict())
    assert MASK_VALUE == -10000.0  # RecBole's constant


@DTYPES
@pytest.mark.parametrize("num_layers", [1, LAYERS])
def test_full_windows_equal_recbole(num_layers: int, dtype: torch.dtype) -> None:
    """No padding: the two conventions coincide, at the read-out and at every position."""
    ours, reference = model_pair(num_layers, dtype)
    tolerance = TOLERANCES[dtype]
    ids, lengths = padded(FULL, "right")
    assert torch.equal(ids, padded(FULL, "left")[0])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), reference(ids, lengths), **tolerance)
        torch.testing.assert_close(ours.forward_all(ids), reference.all_positions(ids), **tolerance)


@DTYPES
def test_padded_sequences_equal_recbole_with_the_window_positions(dtype: torch.dtype) -> None:
    """Shorter sequences: left-padded here, right-padded for RecBole; equal once RecBole's position ids are those
    of the project's window (the newest item at L - 1, see the module docstring), different with its own."""
    ours, reference = model_pair(dtype=dtype)
    tolerance = TOLERANCES[dtype]
    left, _ = padded(FULL + SHORT, "left")
    right, lengths = padded(FULL + SHORT, "right")
    shifted = torch.arange(MAX_LEN)[None, :] + (MAX_LEN - lengths)[:, None]  # item t of n gets L - n + t
    shifted = shifted.clamp_max(MAX_LEN - 1)  # the padding slots' positions are never read
    with torch.no_grad():
        expected = ours(left)
        torch.testing.assert_close(expected, reference(right, lengths, shifted), **tolerance)
        recbole_positions = reference(right, lengths)
    full = len(FULL)
    torch.testing.assert_close(expected[:full], recbole_positions[:full], **tolerance)
    assert ((expected[full:] - recbole_positions[full:]).abs().amax(dim=1) > 1e-3).all()


@DTYPES
def test_padding_side_does_not_matter_to_recbole_given_the_same_positions(dtype: torch.dtype) -> None:
    """RecBole's equations on left-padded windows with the window's positions give the right-padded read-out:
    the mask and the gather are what make padding side irrelevant, as the project relies on."""
    ours, reference = model_pair(dtype=dtype)
    tolerance = TOLERANCES[dtype]
    left, _ = padded(SHORT, "left")
    right, lengths = padded(SHORT, "right")
    shifted = (torch.arange(MAX_LEN)[None, :] + (MAX_LEN - lengths)[:, None]).clamp_max(MAX_LEN - 1)
    with torch.no_grad():
        from_left = reference.all_positions(left)[:, -1]
        torch.testing.assert_close(from_left, reference(right, lengths, shifted), **tolerance)
        torch.testing.assert_close(from_left, ours(left), **tolerance)
