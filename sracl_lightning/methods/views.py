"""Two-view contrast: the intra-user objective L_IS (paper Eq. 11, docs/method.md#intra-user-loss) and the view
generators it is composed with.

``ViewContrast`` is InfoNCE between two encoded views of each training window; what the views are is an injected
:class:`ViewGenerator`:

* :class:`SemanticSubstitution`: SRA-CL's L_IS, each item replaced with probability p by a uniform pick among its K
  semantic neighbours (two independent draws);
* :class:`LearnableSubstitution`: Table 4's "Learnable" row, a chosen item's input vector replaced by a learned
  mixture of its neighbours' item embeddings.

A generator that rewrites item ids (crop, mask, reorder, substitute) subclasses :class:`IdViews` and implements one
method, :meth:`IdViews.view`; both views then go through the encoder in one pass. DuoRec's supervised term is a
``ViewContrast`` too (:mod:`sracl_lightning.methods.duorec`). Shapes: B batch, L window, K neighbours, E semantic
width, D hidden, M substituted positions in a batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import check_in_range
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, Objective, Part, TrainingContext
from sracl_lightning.methods.substitution import check_item_neighbours, substitute_items, substitution_mask
from sracl_lightning.methods.synthesizer import SampleSynthesizer
from sracl_lightning.models.encoder import SequenceEncoder


class ViewGenerator(Part):
    """Two encoded views of each training window: ``forward(batch, h, encoder) -> ((B, D), (B, D))``.

    Args:
        dims: The module's sizes.
    """

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class IdViews(ViewGenerator):
    """A generator whose views are rewritten item-id windows; both views are encoded in one pass."""

    def view(self, input_ids: Tensor, encoder: SequenceEncoder) -> Tensor:
        """One random view (B, L) of the (B, L) windows, left-padded like them; ids may be the encoder's extra
        tokens (a mask token, say: ``encoder.token_id("mask")``)."""
        raise NotImplementedError

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        b = len(batch)
        first, second = self.view(batch.input_ids, encoder), self.view(batch.input_ids, encoder)  # (B, L) each
        views = encoder(torch.cat([first, second]))  # (2B, D)
        return views[:b], views[b:]


class SemanticSubstitution(IdViews):
    """SRA-CL's views: each real item replaced, independently with probability p, by a uniform pick among its K
    semantic neighbours (docs/method.md#intra-user-loss).

    Args:
        dims: The module's sizes.
        probability: p, per-position probability of a substitution (0.2 in the paper and the code).
    """

    def __init__(self, dims: MethodDims, probability: float = 0.2) -> None:
        super().__init__(dims)
        check_in_range("SemanticSubstitution.probability", probability, 0, 1)
        self.probability = probability
        # (N + 1, K) item neighbour ids: frozen data, set in setup(), never checkpointed.
        self.register_buffer("item_neighbours", torch.empty(0, 0, dtype=torch.int64), persistent=False)

    def setup(self, context: TrainingContext) -> None:
        table = context.require_semantic("semantic item substitution (L_IS)").item_neighbours
        check_item_neighbours(table, context.num_items)
        self.item_neighbours = table.to(context.device)

    def view(self, input_ids: Tensor, encoder: SequenceEncoder) -> Tensor:
        if self.item_neighbours.numel() == 0:
            raise RuntimeError("item neighbours not loaded: L_IS runs inside trainer.fit with a semantic profile")
        return substitute_items(input_ids, self.item_neighbours, self.probability, check=False)

    def describe(self) -> str:
        return f"semantic substitution p={self.probability}"


class LearnableSubstitution(ViewGenerator):
    """Table 4's "Learnable" views: a chosen position's input vector is the learned mixture of its neighbours'
    item embeddings,

        e′_v = Σ_{v′ ∈ N_v} p_{v,v′} · e_{v′},   p_{v,·} = softmax_{v′}( LeakyReLU( aᵀ [ W s_v ‖ W s_{v′} ] ) )

    with s the frozen semantic item vectors and (W, a) a :class:`SampleSynthesizer` of its own (the paper does not
    say whether it shares the user branch's). Positions are drawn as in :class:`SemanticSubstitution` (Bernoulli p
    per real item). The paper kept the uniform pick, which did as well (Table 4). Needs an encoder implementing
    :meth:`~sracl_lightning.models.encoder.SequenceEncoder.encode_embedded` (SASRec does).

    Args:
        dims: The module's sizes; needs ``semantic_dim``.
        probability: p, per-position probability of a substitution.
        dropout: Dropout on the synthesizer's attention weights (0 as in the paper).
    """

    def __init__(self, dims: MethodDims, probability: float = 0.2, dropout: float = 0.0) -> None:
        super().__init__(dims)
        check_in_range("LearnableSubstitution.probability", probability, 0, 1)
        check_in_range("LearnableSubstitution.dropout", dropout, 0, 1, high_inclusive=False)
        self.probability = probability
        semantic_dim = dims.require_semantic_dim("learnable item substitution")
        self.synthesizer = SampleSynthesizer(semantic_dim, dims.hidden_size, attention_dropout=dropout)
        # Frozen data, set in setup(), never checkpointed: (N + 1, K) neighbour ids and (N + 1, E) item vectors.
        self.register_buffer("item_neighbours", torch.empty(0, 0, dtype=torch.int64), persistent=False)
        self.register_buffer("item_semantic", torch.empty(0, 0), persistent=False)

    def setup(self, context: TrainingContext) -> None:
        tables = context.require_semantic("learnable item substitution (L_IS)")
        check_item_neighbours(tables.item_neighbours, context.num_items)
        self.item_neighbours = tables.item_neighbours.to(context.device)
        self.item_semantic = tables.item_embeddings.to(context.device)

    def view_vectors(self, input_ids: Tensor, encoder: SequenceEncoder) -> Tensor:
        """Input vectors (B, L, D) of one view: chosen positions hold the mixture of their neighbours."""
        if self.item_semantic.numel() == 0:
            raise RuntimeError("item semantics not loaded: L_IS runs inside trainer.fit with a semantic profile")
        vectors = encoder.item_embedding(input_ids)  # (B, L, D)
        chosen = substitution_mask(input_ids, self.probability) & (input_ids <= self.dims.num_items)  # (B, L)
        items = input_ids[chosen]  # (M,)
        neighbours = self.item_neighbours[items]  # (M, K) ids 1..N
        mixed = self.synthesizer(self.item_semantic[items], self.item_semantic[neighbours],
                                 encoder.item_embedding(neighbours))  # (M, D)
        return vectors.masked_scatter(chosen[..., None], mixed.to(vectors.dtype))

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> tuple[Tensor, Tensor]:
        b = len(batch)
        ids = torch.cat([batch.input_ids, batch.input_ids])  # (2B, L)
        vectors = torch.cat([self.view_vectors(batch.input_ids, encoder),
                             self.view_vectors(batch.input_ids, encoder)])  # (2B, L, D)
        views = encoder.encode_embedded(ids, vectors)  # (2B, D): one pass for both views
        return views[:b], views[b:]

    def describe(self) -> str:
        return f"learnable substitution p={self.probability}"


class ViewContrast(Objective):
    """InfoNCE between two views of each training window (L_IS with the default views).

    Args:
        dims: The module's sizes.
        weight: β for L_IS (paper and code: 0.1).
        views: The view generator, built as ``views(dims)`` (default: semantic substitution).
        loss: The InfoNCE; it is given the batch's targets too, for losses that mask by them (default: the released
            code's NT-Xent, τ = 1, dot product).
    """

    name = "item_cl"

    def __init__(self, dims: MethodDims, weight: float = 0.1,
                 views: Callable[[MethodDims], ViewGenerator] = SemanticSubstitution,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight)
        self.views = views(dims)
        self.loss = loss or InfoNCE()

    def setup(self, context: TrainingContext) -> None:
        self.views.setup(context)

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        first, second = self.views(batch, h, encoder)  # (B, D) each
        return self.loss(first, second, batch.target)

    def describe(self) -> str:
        return f"L_IS ({self.views.describe()}, {self.loss.extra_repr()})"
