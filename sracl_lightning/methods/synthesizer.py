"""The learnable sample synthesizer of the inter-user branch (paper Eqs. 6–8, docs/method.md#synthesizer).

For an anchor user u with retrieved neighbours N_u (|N_u| = K), the synthesizer scores each neighbour from the
*frozen semantic* vectors alone, GAT-style, and returns the probability-weighted sum of the neighbours'
*recommendation-model* representations as the positive h⁺_u of L_CS:

    (6)  e_{u,u'} = LeakyReLU_0.2( aᵀ [ W h̃_u ‖ W h̃_{u'} ] )
    (7)  p_{u,u'} = softmax_{u' ∈ N_u}( e_{u,u'} )
    (8)  h⁺_u     = Σ_{u'} p_{u,u'} · h_{u'}

Shapes: B batch, K neighbours, E semantic width (from the data, e.g. 1024 for SimCSE-large), D hidden size.

The parameters follow the released code's layout: the adapter W is stored as (E, D) and applied as ``h̃ @ W``
(the transpose of the paper's W ∈ R^{D×E}), the attention vector a as (2D, 1). Both are initialised by
:meth:`SampleSynthesizer.reset_parameters` with ``xavier_uniform_(gain=1.414)``; they are plain parameters, not
``nn.Linear``, so a backbone-style initialiser applied with ``module.apply`` (which matches ``nn.Linear`` and
``nn.Embedding``) leaves them alone, as in the released code. Do not re-initialise them with N(0, 0.02).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.models.kernels import Dropout

#: The released code's ``xavier_uniform_`` gain for W and a (≈ √2).
XAVIER_GAIN = 1.414


class SampleSynthesizer(nn.Module):
    """Synthesize a positive for each anchor from its K retrieved neighbours (Eqs. 6–8).

    The weights depend only on the frozen semantic vectors and the learnable (W, a); the recommendation encoder
    does not influence them, it only supplies the neighbour representations being mixed.

    Args:
        semantic_dim: E, the width of the frozen semantic embeddings h̃ (taken from the data, never hard-coded).
        hidden_size: D, the width of the recommendation model's representations h.
        negative_slope: The LeakyReLU slope in Eq. 6 (0.2, as in GAT and the released code).
        attention_dropout: Dropout on the softmax weights p (train mode only).
            NOTE: the paper has no dropout here; the released code applies ``F.dropout(p, 0.5, training=True)``
            (docs/method.md#deviations, D19). The default 0.0 follows the paper; set 0.5 to reproduce the code.
            With dropout the kept weights are scaled by 1 / (1 - rate), so h⁺ is no longer a convex combination.
    """

    def __init__(self, semantic_dim: int, hidden_size: int, negative_slope: float = 0.2,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        if semantic_dim < 1 or hidden_size < 1:
            raise ValueError(f"semantic_dim and hidden_size must be >= 1, got {semantic_dim} and {hidden_size}")
        if not 0.0 <= attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout}")
        self.semantic_dim = semantic_dim
        self.hidden_size = hidden_size
        self.negative_slope = negative_slope
        self.adapter = nn.Parameter(torch.empty(semantic_dim, hidden_size))  # W, (E, D), applied as h̃ @ W
        self.attention = nn.Parameter(torch.empty(2 * hidden_size, 1))  # a = [a_query; a_key], (2D, 1)
        self.dropout = Dropout(attention_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``xavier_uniform_(gain=1.414)`` on W and a, with the released code's shapes (so the same bounds).

        This is the only initialiser of W and a: the LightningModule's N(0, 0.02) backbone initialiser must not be
        applied to them (it is not, as long as it matches ``nn.Linear``/``nn.Embedding`` through ``module.apply``).
        """
        nn.init.xavier_uniform_(self.adapter, gain=XAVIER_GAIN)
        nn.init.xavier_uniform_(self.attention, gain=XAVIER_GAIN)

    def scores(self, anchor_semantic: Tensor, neighbour_semantic: Tensor) -> Tensor:
        """Attention logits e_{u,u'} of Eq. 6, in float32.

        Args:
            anchor_semantic: (B, E) frozen semantic vectors h̃_u of the anchors.
            neighbour_semantic: (B, K, E) frozen semantic vectors h̃_u' of their neighbours.

        Returns:
            (B, K) float32 logits.
        """
        # Splitting a into its query and key halves turns aᵀ[W h̃_u ‖ W h̃_u'] into (W a_q)·h̃_u + (W a_k)·h̃_u', so
        # no (B, K, 2D) concatenation is built. Folding a into W first (associativity, same value and gradients)
        # costs E·D + B·K·E multiply-adds instead of B·K·E·D: ~2.6M instead of ~170M at B=256, K=10, E=1024, D=64.
        d = self.hidden_size
        folded = self.adapter @ self.attention.view(2, d).T  # (E, D) @ (D, 2) -> (E, 2): [W a_q, W a_k]
        dtype = folded.dtype
        query = anchor_semantic.to(dtype) @ folded[:, 0]  # (B,)
        key = neighbour_semantic.to(dtype) @ folded[:, 1]  # (B, K)
        logits = query.float()[:, None] + key.float()  # (B, K)
        return F.leaky_relu(logits, self.negative_slope)

    def weights(self, anchor_semantic: Tensor, neighbour_semantic: Tensor) -> Tensor:
        """Mixing weights p_{u,u'} of Eq. 7 (softmax over the K neighbours, then the optional dropout).

        Args:
            anchor_semantic: (B, E) frozen semantic vectors h̃_u.
            neighbour_semantic: (B, K, E) frozen semantic vectors h̃_u'.

        Returns:
            (B, K) float32 weights; each row sums to 1 unless attention dropout is active.
        """
        # Softmax in float32 even under bf16 autocast: K is small, and the weights must sum to 1 accurately.
        # NOTE: the released code names this ``gumbel_softmax_probs`` but it is a plain softmax, as here.
        probs = torch.softmax(self.scores(anchor_semantic, neighbour_semantic), dim=-1)  # (B, K)
        return self.dropout(probs)

    def forward(self, anchor_semantic: Tensor, neighbour_semantic: Tensor, neighbour_hidden: Tensor) -> Tensor:
        """Synthesized positives h⁺_u (Eq. 8).

        Args:
            anchor_semantic: (B, E) frozen semantic vectors h̃_u of the anchors.
            neighbour_semantic: (B, K, E) frozen semantic vectors h̃_u' of their neighbours.
            neighbour_hidden: (B, K, D) the neighbours' encoder outputs h_u' (with gradients,
            docs/method.md#synthesizer).

        Returns:
            (B, D) the weighted sums, in the dtype of ``neighbour_hidden`` (or autocast's).
        """
        if neighbour_hidden.shape[:2] != neighbour_semantic.shape[:2]:
            raise ValueError(f"neighbour_hidden {tuple(neighbour_hidden.shape)} and neighbour_semantic "
                             f"{tuple(neighbour_semantic.shape)} disagree on (B, K)")
        p = self.weights(anchor_semantic, neighbour_semantic).to(neighbour_hidden.dtype)  # (B, K)
        return torch.einsum("bk,bkd->bd", p, neighbour_hidden)  # (B, K) x (B, K, D) -> (B, D)

    def extra_repr(self) -> str:
        return (f"semantic_dim={self.semantic_dim}, hidden_size={self.hidden_size}, "
                f"negative_slope={self.negative_slope}, attention_dropout={self.dropout.p}")

