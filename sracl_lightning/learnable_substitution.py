"""Learnable item substitution: the "Learnable" row of the paper's Table 4.

SRA-CL's intra-user views replace each chosen item v by a *uniform* pick among its K semantic neighbours N_v
(``substitution.py``). The paper also tried the inter-user branch's learnable synthesizer for items and kept the
uniform pick, which did as well (Table 4: e.g. Beauty HR@20 0.1309 learnable vs 0.1314 uniform). This module is that
variant: a chosen position's input vector becomes the synthesizer's mixture of its neighbours' item embeddings,

    e′_v = Σ_{v′ ∈ N_v} p_{v,v′} · e_{v′},   p_{v,·} = softmax_{v′}( LeakyReLU( aᵀ [ W s_v ‖ W s_{v′} ] ) )

with s the frozen semantic item vectors and (W, a) a second :class:`SampleSynthesizer` (the paper does not say
whether it shares parameters with the user branch; here it does not). Gradient reaches W, a and the neighbours'
item embeddings. The positions to replace are drawn as in the uniform mode (Bernoulli p per real item).

The encoder must implement :meth:`SequenceEncoder.encode_embedded` (SASRec does). Built on the memory-bank cost
mode, the default of ``configs/sracl/``. Shapes: B batch, L window, K neighbours, E semantic width, D hidden, M
substituted positions in a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sracl_lightning.batch import SeqBatch
from sracl_lightning.memory_bank import MemoryBankSRACL
from sracl_lightning.substitution import substitution_mask
from sracl_lightning.synthesizer import SampleSynthesizer


class LearnableSubstitutionSRACL(MemoryBankSRACL):
    """:class:`MemoryBankSRACL` whose L_IS views mix neighbour item embeddings with learned weights.

    Args:
        **kwargs: Everything :class:`MemoryBankSRACL` takes; ``semantic_dim`` is required when β > 0.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.item_synthesizer = None
        if self.item_cl_weight > 0:
            if self.hparams.semantic_dim is None:
                raise ValueError("learnable item substitution needs semantic vectors: set --data.semantic_profile")
            self.item_synthesizer = SampleSynthesizer(self.hparams.semantic_dim, self.encoder.hidden_size,
                                                      attention_dropout=self.hparams.synthesizer_dropout)
        # (N + 1, E) frozen semantic item vectors: data, set in setup(), never checkpointed.
        self.register_buffer("item_semantic", torch.empty(0, 0), persistent=False)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.item_cl_weight > 0:
            self.item_semantic = self.trainer.datamodule.semantic.item_embeddings.to(self.device)

    def learned_view(self, input_ids: Tensor) -> Tensor:
        """Item vectors (B, L, D) of one view: chosen positions hold the synthesized mixture of their neighbours."""
        if self.item_semantic.numel() == 0 or self.item_neighbours.numel() == 0:
            raise RuntimeError("item semantics not loaded: L_IS runs inside trainer.fit with a semantic profile")
        vectors = self.encoder.item_embedding(input_ids)  # (B, L, D)
        chosen = substitution_mask(input_ids, self.substitution_probability)  # (B, L)
        items = input_ids[chosen]  # (M,)
        neighbours = self.item_neighbours[items]  # (M, K) ids 1..N
        mixed = self.item_synthesizer(self.item_semantic[items], self.item_semantic[neighbours],
                                      self.encoder.item_embedding(neighbours))  # (M, D)
        return vectors.masked_scatter(chosen[..., None], mixed.to(vectors.dtype))

    def item_cl_loss(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """L_IS between the encodings of two learned views (one encoder pass for both)."""
        b = len(batch)
        ids = torch.cat([batch.input_ids, batch.input_ids])  # (2B, L)
        vectors = torch.cat([self.learned_view(batch.input_ids), self.learned_view(batch.input_ids)])  # (2B, L, D)
        views = self.encoder.encode_embedded(ids, vectors)  # (2B, D)
        return self.item_cl_loss_fn(views[:b], views[b:])
