"""Lightning callbacks of the project."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class EpochTimer(L.Callback):
    """Logs wall-clock seconds per training epoch (``time/train_epoch_s``) and per validation run
    (``time/val_s``), and prints them, so logs of long background runs show the pace."""

    def __init__(self) -> None:
        self._train_start = 0.0
        self._val_start = 0.0
        self._last_val_s = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_val_s = time.perf_counter() - self._val_start
        if not trainer.sanity_checking:
            pl_module.log("time/val_s", self._last_val_s, sync_dist=True, reduce_fx="max")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation runs inside the training epoch in Lightning; report the training part alone.
        seconds = time.perf_counter() - self._train_start - self._last_val_s
        pl_module.log("time/train_epoch_s", seconds, sync_dist=True, reduce_fx="max")  # the slowest rank
        metrics = trainer.callback_metrics
        monitored = ", ".join(f"{k}={float(metrics[k]):.4f}" for k in ("val/hr@20", "val/ndcg@20", "val/mrr@10")
                              if k in metrics)
        epoch = trainer.current_epoch
        rank_zero_info(f"[epoch {epoch}] train {seconds:.1f}s, val {self._last_val_s:.1f}s, {monitored}")
        self._last_val_s = 0.0
