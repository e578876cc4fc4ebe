"""S3-Rec's two stages in one run, the Lightning edge of :mod:`sracl_lightning.methods.s3rec`: before the first
fine-tuning epoch, the encoder is pre-trained with :class:`~sracl_lightning.methods.s3rec.S3RecPretraining`
for ``pretrain_epochs`` epochs over the training prefixes, with its own optimizer; then fitting goes on as for any
:class:`~sracl_lightning.methods.module.SRACLModule`.

Pre-training is checkpointed like the fine-tuning epochs: after each pre-training epoch, ``last.ckpt`` (where the
trainer keeps one) holds the weights, the pre-training optimizer, the number of pre-training epochs done and the
random-number states. A run resumed from it (``--ckpt_path``; the table runner does so by itself) pre-trains only the
epochs left and then fine-tunes, as the uninterrupted run would have; one resumed from a fine-tuning checkpoint does
not pre-train again. Pre-training runs in one process; a DDP run is refused with the command that splits the stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from sracl_lightning.errors import UsageError, check_at_least
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.parts import MethodDims
from sracl_lightning.methods.s3rec import S3RecPretraining

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
log = logging.getLogger(__name__)


class S3RecModule(SRACLModule):
    """:class:`~sracl_lightning.methods.module.SRACLModule` whose encoder is pre-trained by S3-Rec first.

    Args:
        pretraining: The pre-training objectives, built as ``pretraining(dims)`` (default
            :class:`~sracl_lightning.methods.s3rec.S3RecPretraining`).
        pretrain_epochs: Pre-training epochs over the training prefixes (100; 0: none, plain fine-tuning).
        pretrain_optimizer: Built as ``pretrain_optimizer(parameters)`` over the encoder and the pre-training heads
            (Adam, lr 1e-3, the official).
        **kwargs: :class:`~sracl_lightning.methods.module.SRACLModule`'s arguments; the encoder must be a SASRec
            with the ``mask`` extra token.
    """

    def __init__(self, pretraining: Callable[[MethodDims], S3RecPretraining] = S3RecPretraining,
                 pretrain_epochs: int = 100, pretrain_optimizer: OptimizerFactory = torch.optim.Adam,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        check_at_least("model.init_args.pretrain_epochs", pretrain_epochs, 0)
        self.pretraining = pretraining(self.dims)
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_optimizer_factory = pretrain_optimizer
        self.pretrained_epochs = 0  # pre-training epochs done, restored from a checkpoint on resume
        self._pretrain_optimizer: torch.optim.Optimizer | None = None  # while pre-training
        self._resumed_pretrain_optimizer: dict[str, Any] | None = None
        try:
            self.encoder.token_id("mask")
        except KeyError:
            raise UsageError("S3-Rec masks items: set --model.init_args.encoder.init_args.extra_tokens [mask] "
                             "(configs/s3rec.yaml does)") from None

    def protocol(self) -> dict[str, object]:
        return {**super().protocol(), "pretraining": f"{self.pretrain_epochs} epochs of {self.pretraining.describe()}"}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The fine-tuning optimizer, over everything but the pre-training heads."""
        heads = {id(p) for p in self.pretraining.parameters()}
        return self.build_optimizer(self.optimizer_factory, [p for p in self.parameters() if id(p) not in heads])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {"epochs": self.pretrained_epochs}
        if self._pretrain_optimizer is not None:
            state["optimizer"] = self._pretrain_optimizer.state_dict()
        checkpoint["s3rec_pretraining"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint without the entry predates checkpointed pre-training: those were written at fine-tuning
        # epoch ends only, after the whole pre-training.
        state = checkpoint.get("s3rec_pretraining", {"epochs": self.pretrain_epochs})
        self.pretrained_epochs = int(state["epochs"])
        self._resumed_pretrain_optimizer = state.get("optimizer")

    def on_fit_start(self) -> None:
        if self.pretrained_epochs >= self.pretrain_epochs:
            return
        if self.trainer.world_size > 1:
            raise UsageError("S3-Rec pre-trains in one process: run it with --trainer.devices 1, or set "
                             "--model.init_args.pretrain_epochs 0 and fine-tune from a pre-trained checkpoint")
        self.pretrain()

    def pretrain(self) -> None:
        """S3-Rec pre-training over the training prefixes, in random order, from epoch :attr:`pretrained_epochs`
        (0, or where a resumed checkpoint left off) to ``pretrain_epochs``, checkpointed after every epoch."""
        samples = self.trainer.datamodule.datasets["train"]
        self.pretraining.setup(self.training_context())
        parameters = [*self.encoder.parameters(), *self.pretraining.parameters()]
        optimizer = self.build_optimizer(self.pretrain_optimizer_factory, parameters,
                                         "model.init_args.pretrain_optimizer")
        if self._resumed_pretrain_optimizer is not None:
            optimizer.load_state_dict(self._resumed_pretrain_optimizer)
            self._resumed_pretrain_optimizer = None
        self._pretrain_optimizer = optimizer
        batch_size = self.trainer.datamodule.per_device_batch_size
        self.train()
        started, first = time.monotonic(), self.pretrained_epochs
        bar = tqdm(range(first, self.pretrain_epochs), desc="S3-Rec pre-training", unit="epoch",
                   total=self.pretrain_epochs, initial=first, disable=not self.trainer.progress_bar_callback)
        for epoch in bar:
            order = torch.randperm(len(samples))
            total = torch.zeros((), device=self.device)  # summed on the device: one read per epoch
            for start in range(0, len(order), batch_size):
                ids = S3RecPretraining.sequences(samples, order[start:start + batch_size]).to(self.device)
                with self.trainer.precision_plugin.forward_context():
                    loss = self.pretraining(ids, self.encoder)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(ids)
            mean = float(total) / len(samples)
            bar.set_postfix(loss=f"{mean:.4f}")
            log.info(f"[s3rec] pre-training epoch {epoch}: loss {mean:.4f}")
            self.pretrained_epochs = epoch + 1
            self.save_pretraining_checkpoint()
        resumed = f" (resumed at epoch {first})" if first else ""
        log.info(f"[s3rec] pre-trained {self.pretrain_epochs} epochs{resumed}; "
                 f"{time.monotonic() - started:.0f} s in this process")
        self._pretrain_optimizer = None
        optimizer.zero_grad(set_to_none=True)

    def save_pretraining_checkpoint(self) -> None:
        """Have the trainer's checkpoint callback write ``last.ckpt`` now (between pre-training epochs), where it is
        one that can (``EpochEndCheckpoint.save_last_now``, which train.py's CLI installs): the run can resume from
        here, and the fine-tuning epochs overwrite the same file."""
        save_last_now = getattr(self.trainer.checkpoint_callback, "save_last_now", None)
        if save_last_now is not None:
            save_last_now(self.trainer)
