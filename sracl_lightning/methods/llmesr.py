"""LLM-ESR's retrieval-augmented self-distillation (Liu et al., NeurIPS 2024): each user's representation is pulled
towards the mean representation of its semantically similar users.

    L_distill = MSE( h_u, mean_{u' ∈ N_u} sg(h_u') )

``N_u`` are the sample's K retrieved neighbours of the run's semantic profile (the same pools SRA-CL retrieves its
neighbours from; ``--data.num_neighbours`` 10 = the official ``sim_user_num``), ``h_u'`` their representations by
the same encoder in training mode, without gradient (the official ``.detach()``), and MSE the mean over the 2D
elements. With :class:`~sracl_lightning.models.llmesr.LLMESR` as the encoder this is the official SASRec version's
loss term, weight α = 0.1 (configs/llmesr.yaml).

NOTE: deviations from the official code: the neighbours are the profile's (semantic user vectors of each training
prefix from this project's offline text embeddings, or co-occurrence vectors where a dataset has no text), not the
top users by text-embedding-ada-002 vectors of their histories; ``h_u`` is the recommendation pass's representation
(the official code encodes the user once more, with other dropout).

Shapes: B batch, K neighbours, L window, D representation width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.parts import Objective
from sracl_lightning.models.encoder import SequenceEncoder


class RetrievalDistillation(Objective):
    """LLM-ESR's self-distillation from retrieved similar users (MSE to their mean representation).

    Args:
        dims: The module's sizes.
        weight: α (0.1).
    """

    name = "llmesr"

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        if batch.neighbour_input_ids is None:
            raise UsageError("LLM-ESR's self-distillation reads each sample's retrieved neighbours: set "
                             "--data.semantic_profile (configs/llmesr/<dataset>.yaml does)")
        b, k, length = batch.neighbour_input_ids.shape
        with torch.no_grad():
            neighbours = encoder(batch.neighbour_input_ids.reshape(b * k, length)).view(b, k, -1)  # (B, K, D)
        return F.mse_loss(h.float(), neighbours.float().mean(1))

    def describe(self) -> str:
        return "L_distill (MSE to the mean of the retrieved neighbours' representations)"
