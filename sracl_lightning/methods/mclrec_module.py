"""MCLRec's alternating updates, the Lightning edge of :mod:`sracl_lightning.methods.mclrec`: per training batch,
the model, then the augmenters of its :class:`~sracl_lightning.methods.mclrec.MetaContrast` objective (their own
optimizer), then the model again (manual optimization).

NOTE: Lightning counts each of the three updates as a global step (``trainer.global_step`` is three per batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.mclrec import MetaContrast
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.kernels import fused_kernels

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class MetaOptimisedModule(SRACLModule):
    """:class:`~sracl_lightning.methods.module.SRACLModule` with MCLRec's alternating updates: per batch, the model,
    then the augmenters of its :class:`MetaContrast` objective (their own optimizer), then the model again.

    Args:
        augmenter_optimizer: Built as ``augmenter_optimizer(parameters)`` over the augmenters (Adam, lr 1e-3).
        **kwargs: :class:`~sracl_lightning.methods.module.SRACLModule`'s arguments; one objective must be a
            :class:`MetaContrast`.
    """

    def __init__(self, augmenter_optimizer: OptimizerFactory = torch.optim.Adam, **kwargs) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.augmenter_optimizer_factory = augmenter_optimizer
        slots = [slot for slot, o in self.objectives.items() if isinstance(o, MetaContrast)]
        if len(slots) != 1:
            raise UsageError("MetaOptimisedModule trains the augmenters of one MetaContrast objective: set "
                             "--model.init_args.base_objective sracl_lightning.MetaContrast (configs/mclrec.yaml)")
        self.meta_slot = slots[0]

    @property
    def meta(self) -> MetaContrast:
        """The :class:`MetaContrast` objective whose augmenters this module trains."""
        return self.objectives[self.meta_slot]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        augmenters = {id(p) for p in self.meta.augmenters.parameters()}
        return [self.build_optimizer(self.optimizer_factory, [p for p in self.parameters() if id(p) not in augmenters]),
                self.build_optimizer(self.augmenter_optimizer_factory, self.meta.augmenters.parameters(),
                                     "model.init_args.augmenter_optimizer")]

    def update(self, optimizer, loss: Tensor) -> None:
        """One update of ``optimizer``'s parameters by ``loss``; every gradient is cleared first, so the other
        optimizer's parameters keep none from it."""
        self.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        model_optimizer, augmenter_optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)  # 1: the model (logged as every module's loss)
        self.update(model_optimizer, loss)
        with fused_kernels(self.fused_kernels):  # 2: the augmenters, on fresh views
            augmenter_loss = self.meta.augmenter_loss(batch, self.encoder)
        self.update(augmenter_optimizer, augmenter_loss)
        self.log("train/augmenter_loss_epoch", augmenter_loss, on_step=False, on_epoch=True, batch_size=len(batch),
                 sync_dist=True)
        with fused_kernels(self.fused_kernels):  # 3: the model again
            second = torch.stack(list(self.loss_terms(batch).values())).sum()
        self.update(model_optimizer, second)
        return loss.detach()
