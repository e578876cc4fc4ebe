"""BERT4Rec's cloze objective (Sun et al., CIKM 2019): mask random items of the sequence, predict them from both
sides.

A training sample's whole sequence is its window plus its target, ``s = [v_1, ..., v_n, v_t]`` (B, L + 1). Each
item of the window is replaced by the encoder's ``mask`` token independently with probability ρ, and the objective
is the full-softmax cross-entropy of the original items at the masked positions, averaged over them:

    L_cloze = mean_{(b, j) masked} CE( h_bj @ Eᵀ, s_bj ),   h = BERT4Rec.cloze_states(masked s)   (M, D)

The target stays visible here; predicting it behind the appended mask is the module's recommendation loss, so a
BERT4Rec model is ``L_rec + λ·L_cloze`` (configs/bert4rec.yaml).

NOTE: RecBole 1.2 draws, per sequence, either a cloze sample (probability 1 - ``ft_ratio``) or a "fine-tuning"
sample with only the last item masked (``ft_ratio`` = 0.5); here every sample contributes both terms, each with
its own pass, weighted 1 : λ (λ = 1 by default). RecBole masks a fixed ``⌊ρ·L⌋`` slots; here the count is
binomial, so a short history is masked in proportion.

Shapes: B batch, L window, M masked positions in the batch, D hidden, N items.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError, check_in_range
from sracl_lightning.methods.parts import MethodDims, Objective
from sracl_lightning.methods.substitution import substitution_mask
from sracl_lightning.models.bert4rec import BERT4Rec
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import linear_cross_entropy


def cloze_inputs(sequence: Tensor, chosen: Tensor, mask_id: int) -> Tensor:
    """``sequence`` (B, L') with the ``chosen`` (B, L') positions replaced by ``mask_id``."""
    return torch.where(chosen, mask_id, sequence)


class MaskedItemPrediction(Objective):
    """BERT4Rec's cloze term: cross-entropy of randomly masked window items, predicted bidirectionally.

    Args:
        dims: The module's sizes.
        weight: λ, the term's weight beside the recommendation loss (1).
        mask_ratio: ρ, the probability that an item of the window is masked (RecBole: 0.2).
    """

    name = "cloze"

    def __init__(self, dims: MethodDims, weight: float = 1.0, mask_ratio: float = 0.2) -> None:
        super().__init__(dims, weight)
        check_in_range("MaskedItemPrediction.mask_ratio", mask_ratio, 0, 1, high_inclusive=False)
        self.mask_ratio = mask_ratio

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        if not isinstance(encoder, BERT4Rec):
            raise UsageError("the cloze objective needs the bidirectional encoder: set --model.init_args.encoder "
                             "sracl_lightning.BERT4Rec (configs/bert4rec.yaml does)")
        sequence = torch.cat([batch.input_ids, batch.target[:, None]], dim=1)  # (B, L + 1)
        chosen = substitution_mask(sequence, self.mask_ratio)  # (B, L + 1) real positions, Bernoulli(ρ)
        chosen[:, -1] = False  # the target is the recommendation loss's
        states = encoder.cloze_states(cloze_inputs(sequence, chosen, encoder.token_id("mask")))  # (B, L + 1, D)
        # NOTE: boolean indexing reads the count M back from the device, once per step.
        if not bool(chosen.any()):
            return states.sum() * 0.0  # nothing masked in this batch: a zero that keeps the graph
        return linear_cross_entropy(states[chosen], encoder.item_embeddings(), sequence[chosen] - 1)

    def describe(self) -> str:
        return f"L_cloze (mask ρ={self.mask_ratio}, full-softmax cross-entropy)"
