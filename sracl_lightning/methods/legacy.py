"""The classes of the layout before the method layer, kept so that their checkpoints, configs and run records load.

Before :class:`~sracl_lightning.methods.module.SRACLModule` was composed of objectives, each cost mode and variant
was a subclass picked by ``model.class_path``, with the CL weights as arguments. The old modules
(``sracl_lightning.module``, ``.memory_bank``, ``.ablations``, ``.learnable_substitution``, ``.duorec``) import as
this one (``sracl_lightning.MOVED_MODULES``), and each old class is a thin :class:`SRACLModule` subclass here that
takes the old arguments and builds the equivalent objectives:

========================================================  ============================================================
old ``class_path``                                         now
========================================================  ============================================================
``sracl_lightning.module.SRACLModule``                     ``UserContrast`` with ``EncodedNeighbours`` (faithful mode)
``sracl_lightning.memory_bank.MemoryBankSRACL``            ``UserContrast`` with ``MemoryBank``
``sracl_lightning.ablations.RandomNeighbourSRACL``         ``... positive: RandomNeighbourPositive``
``sracl_lightning.learnable_substitution.Learnable...``    ``ViewContrast`` with ``LearnableSubstitution``
``sracl_lightning.duorec.DuoRecModule``                    ``base_objective: DuoRecContrast`` (faithful mode)
``sracl_lightning.duorec.MemoryBankDuoRec``                the same with ``MemoryBank``
========================================================  ============================================================

A weight of 0 left the part out, as before. Parameters are renamed on load (``synthesizer.*`` is now
``objectives.user_contrast.positive.synthesizer.*``, ``item_synthesizer.*`` is
``objectives.item_contrast.views.synthesizer.*``). New code should use the slots of :class:`SRACLModule`.
"""

from __future__ import annotations

from functools import partial

import torch

from sracl_lightning.methods.duorec import (  # noqa: F401 (the old sracl_lightning.duorec's names)
    DuoRecContrast,
    SameTargetInfoNCE,
    SameTargetSampler,
    same_target_info_nce,
    same_target_keys,
)
from sracl_lightning.methods.losses import InfoNCE, Similarity
from sracl_lightning.methods.module import (  # noqa: F401 (the old sracl_lightning.module's names)
    EncoderFactory,
    OptimizerFactory,
    SRACLModule,
    format_protocol,
)
from sracl_lightning.methods.user_contrast import (
    EncodedNeighbours,
    MemoryBank,
    RandomNeighbourPositive,
    SynthesizedPositive,
    UserContrast,
)
from sracl_lightning.methods.views import LearnableSubstitution, SemanticSubstitution, ViewContrast
from sracl_lightning.models.sasrec import SASRec

#: Old parameter-name prefixes -> new ones.
RENAMED_PARAMETERS = {
    "synthesizer.": "objectives.user_contrast.positive.synthesizer.",
    "item_synthesizer.": "objectives.item_contrast.views.synthesizer.",
}

_Module = SRACLModule  # the new module; the name SRACLModule below is the old class


def legacy_slots(cls: type, user_cl_weight: float, item_cl_weight: float, synthesizer_dropout: float,
                 substitution_probability: float, user_cl_loss_fn: InfoNCE | None, item_cl_loss_fn: InfoNCE | None,
                 bank_batch_size: int) -> dict[str, partial | None]:
    """The ``user_contrast`` and ``item_contrast`` of an old class's arguments (a weight of 0 left a part out)."""
    neighbours = partial(MemoryBank, batch_size=bank_batch_size) if cls.memory_bank else EncodedNeighbours
    positive = (RandomNeighbourPositive if cls.random_positive
                else partial(SynthesizedPositive, dropout=synthesizer_dropout))
    views = (partial(LearnableSubstitution, probability=substitution_probability, dropout=synthesizer_dropout)
             if cls.learnable_views else partial(SemanticSubstitution, probability=substitution_probability))
    return {
        "user_contrast": partial(UserContrast, weight=user_cl_weight, positive=positive, neighbours=neighbours,
                                 loss=user_cl_loss_fn) if user_cl_weight > 0 else None,
        "item_contrast": partial(ViewContrast, weight=item_cl_weight, views=views,
                                 loss=item_cl_loss_fn) if item_cl_weight > 0 else None,
    }


class LegacySRACL(_Module):
    """The old ``SRACLModule`` (faithful cost mode); its subclasses below differ in one choice each.

    Args:
        num_items, max_len, encoder, optimizer, metric_ks, mask_seen_items, semantic_dim: As :class:`SRACLModule`.
        user_cl_weight: α; 0 leaves L_CS out.
        item_cl_weight: β; 0 leaves L_IS out.
        synthesizer_dropout: Dropout on the synthesizer's attention weights.
        substitution_probability: p of the item substitution.
        user_cl_loss_fn: InfoNCE of L_CS.
        item_cl_loss_fn: InfoNCE of L_IS.
        bank_batch_size: Prefixes per pass when the memory bank is rebuilt (memory-bank classes).
    """

    memory_bank = False
    random_positive = False
    learnable_views = False

    def __init__(self, num_items: int, max_len: int = 20, encoder: EncoderFactory = SASRec,
                 optimizer: OptimizerFactory = torch.optim.Adam, metric_ks: tuple[int, ...] = (5, 10, 20),
                 mask_seen_items: bool = False, user_cl_weight: float = 0.0, item_cl_weight: float = 0.0,
                 semantic_dim: int | None = None, synthesizer_dropout: float = 0.0,
                 substitution_probability: float = 0.2, user_cl_loss_fn: InfoNCE | None = None,
                 item_cl_loss_fn: InfoNCE | None = None, bank_batch_size: int = 1024) -> None:
        super().__init__(num_items, max_len, encoder, optimizer, metric_ks, mask_seen_items, semantic_dim,
                         **legacy_slots(type(self), user_cl_weight, item_cl_weight, synthesizer_dropout,
                                        substitution_probability, user_cl_loss_fn, item_cl_loss_fn,
                                        bank_batch_size))
        self.save_hyperparameters(ignore=["user_cl_loss_fn", "item_cl_loss_fn"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rename_legacy_parameters(checkpoint["state_dict"])


def rename_legacy_parameters(state: dict) -> None:
    """Rename the old parameter names of a state dict in place."""
    for key in list(state):
        for old, new in RENAMED_PARAMETERS.items():
            if key.startswith(old):
                state[new + key[len(old):]] = state.pop(key)


class SRACLModule(LegacySRACL):
    """Old ``sracl_lightning.module.SRACLModule``: the faithful cost mode."""


class MemoryBankSRACL(LegacySRACL):
    """Old ``sracl_lightning.memory_bank.MemoryBankSRACL``: neighbours from the no-grad memory bank."""

    memory_bank = True


class RandomNeighbourSRACL(LegacySRACL):
    """Old ``sracl_lightning.ablations.RandomNeighbourSRACL``: memory bank, one random neighbour as the positive."""

    memory_bank = True
    random_positive = True


class LearnableSubstitutionSRACL(LegacySRACL):
    """Old ``sracl_lightning.learnable_substitution.LearnableSubstitutionSRACL``: memory bank, learned views."""

    memory_bank = True
    learnable_views = True


class DuoRecModule(_Module):
    """Old ``sracl_lightning.duorec.DuoRecModule`` (faithful mode): DuoRec's term as the base objective, SRA-CL's
    terms from the same old arguments as :class:`LegacySRACL`.

    Args:
        duorec_weight: λ; 0 leaves it out.
        duorec_temperature, duorec_similarity, duorec_mask_same_target: As :class:`DuoRecContrast`'s.
        The others: as :class:`LegacySRACL`.
    """

    memory_bank = False
    random_positive = False
    learnable_views = False

    def __init__(self, num_items: int, max_len: int = 20, encoder: EncoderFactory = SASRec,
                 optimizer: OptimizerFactory = torch.optim.Adam, metric_ks: tuple[int, ...] = (5, 10, 20),
                 mask_seen_items: bool = False, user_cl_weight: float = 0.0, item_cl_weight: float = 0.0,
                 semantic_dim: int | None = None, synthesizer_dropout: float = 0.0,
                 substitution_probability: float = 0.2, user_cl_loss_fn: InfoNCE | None = None,
                 item_cl_loss_fn: InfoNCE | None = None, bank_batch_size: int = 1024, duorec_weight: float = 0.1,
                 duorec_temperature: float = 1.0, duorec_similarity: Similarity = "dot",
                 duorec_mask_same_target: bool = True) -> None:
        base = None if duorec_weight == 0 else partial(
            DuoRecContrast, weight=duorec_weight, temperature=duorec_temperature, similarity=duorec_similarity,
            mask_same_target=duorec_mask_same_target)
        super().__init__(num_items, max_len, encoder, optimizer, metric_ks, mask_seen_items, semantic_dim,
                         base_objective=base,
                         **legacy_slots(type(self), user_cl_weight, item_cl_weight, synthesizer_dropout,
                                        substitution_probability, user_cl_loss_fn, item_cl_loss_fn,
                                        bank_batch_size))
        self.save_hyperparameters(ignore=["user_cl_loss_fn", "item_cl_loss_fn"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rename_legacy_parameters(checkpoint["state_dict"])


class MemoryBankDuoRec(DuoRecModule):
    """Old ``sracl_lightning.duorec.MemoryBankDuoRec``: DuoRec with SRA-CL's memory-bank cost mode."""

    memory_bank = True
