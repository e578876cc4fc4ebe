"""Lightning callbacks of the project."""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


class EpochTimer(L.Callback):
    """Logs wall-clock seconds per training epoch (``time/train_epoch_s``) and per validation run
    (``time/val_s``), and prints them, so logs of long background runs show the pace.

    It also keeps the run's total, ``seconds`` (training and validation of every finished epoch, and the model's
    own work before the first epoch, such as S3-Rec's pre-training) over ``epochs``, in the checkpoints, so a run
    resumed from ``last.ckpt`` counts its earlier parts too: ``train.py`` writes them into ``test_metrics.json`` as
    ``fit``."""

    def __init__(self) -> None:
        self._train_start = 0.0
        self._val_start = 0.0
        self._last_val_s = 0.0
        self._fit_start: float | None = None  # set from the fit's start until its first epoch (or sanity check)
        self.seconds = 0.0
        self.epochs = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks' on_fit_start runs before the module's, where the module does its work before the epochs.
        self._fit_start = time.perf_counter()

    def _end_fit_start(self) -> None:
        if self._fit_start is not None:
            self.seconds += time.perf_counter() - self._fit_start
            self._fit_start = None

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_fit_start()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_fit_start()
        self._train_start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_val_s = time.perf_counter() - self._val_start
        if not trainer.sanity_checking:
            pl_module.log("time/val_s", self._last_val_s, sync_dist=True, reduce_fx="max")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation runs inside the training epoch in Lightning; report the training part alone. Lightning calls
        # the checkpoint callbacks after this one, so last.ckpt holds the totals with this epoch counted.
        seconds = time.perf_counter() - self._train_start - self._last_val_s
        self.seconds += seconds + self._last_val_s
        self.epochs += 1
        pl_module.log("time/train_epoch_s", seconds, sync_dist=True, reduce_fx="max")  # the slowest rank
        metrics = trainer.callback_metrics
        monitored = ", ".join(f"{k}={float(metrics[k]):.4f}" for k in ("val/hr@20", "val/ndcg@20", "val/mrr@10")
                              if k in metrics)
        epoch = trainer.current_epoch
        rank_zero_info(f"[epoch {epoch}] train {seconds:.1f}s, val {self._last_val_s:.1f}s, {monitored}")
        self._last_val_s = 0.0

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint written before the first epoch (between S3-Rec's pre-training epochs) counts that work so far.
        before = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return {"seconds": self.seconds + before, "epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds, self.epochs = float(state_dict["seconds"]), int(state_dict["epochs"])

    def fit_summary(self) -> dict[str, float | int]:
        """What ``test_metrics.json`` records of the fit: ``{"seconds": ..., "epochs": ...}``, resumed parts
        included."""
        return {"seconds": round(self.seconds, 3), "epochs": self.epochs}


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is the end of the last finished training epoch.

    Lightning's ``save_last=True`` (and ``"link"``) writes ``last.ckpt`` only at a step that also saved a monitored
    (top-k) checkpoint, so after an epoch that did not improve, ``last.ckpt`` is the last *improving* epoch and
    resuming from it rolls training back. Here ``last.ckpt`` is written at the end of every training epoch, and only
    there: after validation, early stopping's check and the top-k save of that epoch, so it holds their state
    (``wait_count``, the best score and path). Top-k checkpoints and ``best_model_path`` are Lightning's.

    A run resumed into a new folder (a resumed ``train.py`` run logs to a new version folder) keeps the best score
    and checkpoint of the run it resumes, as the uninterrupted run would; Lightning drops them when the folder
    changes. The old run's files are never removed (only files in this run's folder are).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.save_last == "link":
            raise ValueError("checkpoint.save_last='link' would point last.ckpt at the last improving epoch's "
                             "checkpoint; use save_last=true")
        self._saving_epoch_end = False

    @property
    def state_key(self) -> str:
        # Lightning's own key ("ModelCheckpoint{...}"), so that checkpoints written before this class resume into it.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.save_last_now(trainer)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` now: at every training epoch's end, and between the epochs a module runs before
        fitting (S3-Rec's pre-training). Through Lightning's own naming and ``last_model_path``, so the next write
        overwrites the file instead of starting a ``last-v1.ckpt`` beside it."""
        skip = bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
        if self.save_last and not skip:
            self._saving_epoch_end = True
            try:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            finally:
                self._saving_epoch_end = False

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        # Lightning calls this after every top-k save (also mid-epoch); last.ckpt is written at epoch ends only.
        if self._saving_epoch_end:
            super()._save_last_checkpoint(trainer, monitor_candidates)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        # last_model_path stays this run's own: its last.ckpt is written in its own folder.
        self.best_model_score = state_dict["best_model_score"]
        self.best_model_path = state_dict["best_model_path"]
        self.current_score = state_dict.get("current_score", self.current_score)
        self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
        self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
        self.kth_value = state_dict.get("kth_value", self.kth_value)


class RandomState(L.Callback):
    """Checkpoints the random number generators, so that resuming continues the uninterrupted run's random stream.

    Without it a resumed process re-seeds (``seed_everything``) and replays epoch 0's shuffle and dropout masks.
    Saved with every checkpoint: the global torch (CPU and current CUDA device), NumPy and Python ``random``
    states. At an epoch end (validation is over, dropout is off in it), nothing draws from them between the
    checkpoint and the next epoch's shuffle (the train ``RandomSampler`` seeds itself from torch's global generator
    when its iterator starts; the DataLoader's own draw uses a private generator, see
    ``SeqRecDataModule.train_dataloader``), so this is the state at which the next epoch starts. Restored when a fit
    restores the checkpoint, before the training iterator starts; the sanity-check validation in between runs under
    Lightning's ``isolate_rng``. Not restored by ``validate``/``test``.

    Under DDP the checkpoint holds rank 0's states and every rank restores them. A sampler with its own ``generator``
    is not covered (a warning says so); the project's train sampler draws from the global generator.
    """

    def __init__(self) -> None:
        self._stage: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stage = stage

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if getattr(sampler, "generator", None) is not None:
            rank_zero_warn("The training sampler has its own torch.Generator, whose state is not checkpointed: "
                           "a resumed run will not draw the same shuffle as the uninterrupted one.")

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._stage == "fit" and self.state_key not in checkpoint.get("callbacks", {}):
            rank_zero_warn("The checkpoint holds no random-number states (it predates callbacks.RandomState): the "
                           "resumed run continues with the freshly seeded ones, not the interrupted run's.")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage == "fit":
            restore_rng_states(state_dict)


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states, as tensors and Python primitives (loadable with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the global RNGs to :func:`collect_rng_states`'s ``states`` (CUDA's where saved and available)."""
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["torch_cuda"])
