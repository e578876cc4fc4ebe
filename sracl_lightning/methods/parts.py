"""What every part of a method shares: the sizes it is built with, the data it is handed before training, and the
:class:`Objective` interface the module sums.

A method is :class:`~sracl_lightning.methods.module.SRACLModule` with parts injected into its constructor:

* a recommendation loss (:mod:`sracl_lightning.methods.rec_losses`);
* up to three weighted objectives, one per slot: ``user_contrast`` (SRA-CL's L_CS), ``item_contrast`` (SRA-CL's
  L_IS) and ``base_objective`` (the base method's own term, DuoRec's say, that SRA-CL is plugged into);
* inside an objective, more parts: a positive source and a neighbour source for L_CS
  (:mod:`~sracl_lightning.methods.user_contrast`), a view generator for L_IS (:mod:`~sracl_lightning.methods.views`),
  an :class:`~sracl_lightning.methods.losses.InfoNCE`.

Parts with parameters are built from :class:`MethodDims` when the module is built (so a checkpoint holds them
before any data is seen); in YAML a part is a ``class_path`` plus the ``init_args`` after ``dims``. Frozen data
(neighbour tables, the training samples) reaches them once, through :meth:`Objective.setup`, as a
:class:`TrainingContext`. Plain PyTorch: nothing here imports Lightning.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.samples import SequenceSamples
from sracl_lightning.errors import UsageError, check_at_least
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.semantic.tables import SemanticTables


@dataclass(frozen=True)
class MethodDims:
    """The sizes a part is built with, fixed when the module is built.

    Attributes:
        num_items: ``N``, the items (ids 1..N).
        max_len: ``L``, the window length.
        hidden_size: ``D``, the encoder's representation width.
        semantic_dim: ``E``, the width of the frozen semantic vectors (linked from the DataModule's semantic
            profile), ``None`` without one.
    """

    num_items: int
    max_len: int
    hidden_size: int
    semantic_dim: int | None = None

    def require_semantic_dim(self, part: str) -> int:
        """``semantic_dim``, or a :class:`UsageError` saying that ``part`` needs a semantic profile."""
        if self.semantic_dim is None:
            raise UsageError(f"{part} needs semantic vectors: set --data.semantic_profile (built by "
                             "data/semantic.py), or leave that part out of the model's config")
        return self.semantic_dim


@dataclass(frozen=True)
class TrainingContext:
    """The data a method's parts may read, handed to :meth:`Objective.setup` once before training.

    The DataModule builds it (:meth:`SeqRecDataModule.training_context
    <sracl_lightning.training.datamodule.SeqRecDataModule.training_context>`); the module adds the device.

    Attributes:
        num_items: ``N``.
        max_len: ``L``.
        train_samples: The training samples; sample ``i`` is prefix row ``i`` of the semantic tables.
        semantic: The frozen semantic tables of the profile, ``None`` without one.
        device: Where the module's tensors live.
        item_tokens: The items' ids in the source file (``item_tokens[i]`` for item ``i``, index 0 ``None``), for
            parts that read side files keyed by them (S3-Rec's attributes); ``None`` where unknown.
    """

    num_items: int
    max_len: int
    train_samples: SequenceSamples
    semantic: SemanticTables | None = None
    device: torch.device = torch.device("cpu")
    item_tokens: Sequence[str | None] | None = None

    def require_semantic(self, part: str) -> SemanticTables:
        """The semantic tables, or a :class:`UsageError` saying that ``part`` needs a semantic profile."""
        if self.semantic is None:
            raise UsageError(f"{part} needs the semantic tables: set --data.semantic_profile (built by "
                             "data/semantic.py), or leave that part out of the model's config")
        return self.semantic


class Part(nn.Module):
    """A piece of a method, built as ``cls(dims, ...)``: an objective, a positive or neighbour source, a view
    generator. The hooks below do nothing unless a part overrides them; a part calls them on its own parts.

    Args:
        dims: The module's sizes.
    """

    def __init__(self, dims: MethodDims) -> None:
        super().__init__()
        self.dims = dims

    def setup(self, context: TrainingContext) -> None:
        """Fetch the frozen data this part reads (as non-persistent buffers); called before training."""

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        """Called at the start of every training epoch (a memory bank rebuilds itself here)."""

    def describe(self) -> str:
        """What the part does, for the printed protocol."""
        return type(self).__name__


class Objective(Part, ABC):
    """One weighted training term: ``weight · forward(batch, h, encoder)`` is added to the recommendation loss.

    An objective is built as ``cls(dims, ...)`` and exists because the config lists it: with ``weight`` 0 it keeps
    its parameters (an α sweep through 0 keeps the parameter set) but is not computed.

    Args:
        dims: The module's sizes.
        weight: The term's weight (α, β, λ, ...); 0 turns the term off without removing its parameters.
    """

    #: Name of the term in the logs (``train/<name>_loss_epoch``) and in the protocol.
    name: str = "objective"

    def __init__(self, dims: MethodDims, weight: float = 0.1) -> None:
        super().__init__(dims)
        check_at_least(f"{type(self).__name__}.weight", weight, 0)
        self.weight = weight

    @abstractmethod
    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        """The unweighted scalar loss of a training batch.

        Args:
            batch: The training batch.
            h: ``(B, D)`` the recommendation pass's representations of ``batch.input_ids`` (with gradient).
            encoder: The module's encoder, for more passes.
        """


#: Builds an objective from the module's sizes; in YAML a ``class_path`` plus the ``init_args`` after ``dims``.
ObjectiveFactory = Callable[[MethodDims], Objective]
