"""Resume: ``last.ckpt`` is the last finished epoch, and resuming from it reproduces the uninterrupted run exactly.

One uninterrupted reference run of four tiny epochs (a module fixture) keeps a copy of ``last.ckpt`` after every epoch;
runs resumed from those copies, and from the ``last.ckpt`` of a process killed with SIGKILL, must end with the same
weights (``torch.equal``, CPU fp32), the same validation metrics and the same best checkpoint. The monitored score is
scripted (:class:`ScriptedScore`), so that epochs 2 and 3 do not improve whatever the model learns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch

from sracl_lightning.training.callbacks import EpochEndCheckpoint, RandomState
from sracl_lightning.training.cli import SRACLCLI
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

#: The monitored score of epochs 0..3: epoch 1 is the best; epochs 2 and 3 do not improve (3 beats 0, not 1).
SCORES = [0.3, 0.5, 0.4, 0.45]
EPOCHS = len(SCORES)
STEPS_PER_EPOCH = 5  # configs/debug.yaml: limit_train_batches 5


class ScriptedScore(L.Callback):
    """Logs ``val/scripted``: ``scores[epoch]``, the score that checkpointing and early stopping monitor here."""

    def __init__(self, scores: list[float] | None = None) -> None:
        self.scores = list(SCORES if scores is None else scores)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("val/scripted", self.scores[trainer.current_epoch])


class SnapshotLast(L.Callback):
    """Copies ``last.ckpt`` to ``<directory>/epoch<N>.ckpt`` once epoch N is over (as a kill would have left it)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _snapshot(self, trainer: L.Trainer, epoch: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(trainer.checkpoint_callback.last_model_path, self.directory / f"epoch{epoch}.ckpt")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._snapshot(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer, trainer.current_epoch - 1)


class HangAtEpoch(L.Callback):
    """At the start of epoch ``epoch`` (the previous epoch's checkpoints are written), touch ``marker`` and hang."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.marker.touch()
            time.sleep(600)


def run_args(reviews: Path, data_root: Path, root: Path, *extra: str) -> list[str]:
    """A tiny model on the synthetic dataset, monitoring :class:`ScriptedScore`; everything written under root."""
    return [
        "--config", str(REPO_ROOT / "configs" / "debug.yaml"),
        "--data.dataset", str(reviews), "--data.source_format", "amazon", "--data.data_root", str(data_root),
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(EPOCHS), "--trainer.enable_model_summary", "false",
        "--checkpoint.monitor", "val/scripted", "--early_stopping.monitor", "val/scripted",
        "--trainer.callbacks+=tests.test_resume.ScriptedScore",
        *extra,
    ]


@dataclass
class Finished:
    """What a fit ended with."""

    weights: dict[str, torch.Tensor]
    val_metrics: dict[str, float]
    global_step: int
    best_model_path: str
    best_model_score: float
    early_stopping: dict


def fit(args: list[str], ckpt_path: Path | None = None) -> Finished:
    """``train.py``'s fit (SRACLCLI, then ``trainer.fit``), without the test stage."""
    cli = SRACLCLI(args=args)
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    stopping = next(c for c in trainer.callbacks if isinstance(c, L.pytorch.callbacks.EarlyStopping))
    return Finished(
        weights={k: v.detach().clone() for k, v in cli.model.state_dict().items()},
        val_metrics={k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
        global_step=trainer.global_step,
        best_model_path=trainer.checkpoint_callback.best_model_path,
        best_model_score=float(trainer.checkpoint_callback.best_model_score),
        early_stopping=stopping.state_dict(),
    )


def assert_same_run(resumed: Finished, reference: Finished, interrupted_root: Path) -> None:
    """Same weights, metrics and early-stopping state; the best checkpoint is the interrupted run's epoch 1."""
    assert resumed.global_step == reference.global_step == EPOCHS * STEPS_PER_EPOCH
    assert resumed.weights.keys() == reference.weights.keys()
    differ = [k for k, v in reference.weights.items() if not torch.equal(resumed.weights[k], v)]
    assert not differ, f"weights differ from the uninterrupted run: {differ}"
    assert resumed.val_metrics == reference.val_metrics  # exactly
    # The best checkpoint carries over from the interrupted run's folder: epoch 1, not the resumed run's epoch 3.
    best = Path(resumed.best_model_path)
    assert best.name == Path(reference.best_model_path).name and best.is_relative_to(interrupted_root)
    assert resumed.best_model_score == reference.best_model_score
    assert resumed.early_stopping == reference.early_stopping


def callback_state(checkpoint: dict, kind: type) -> dict:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith(kind.__name__)]
    return state


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("processed")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_reviews, data_root) -> tuple[Finished, Path]:
    """The uninterrupted run and the folder of its per-epoch ``last.ckpt`` copies."""
    root = tmp_path_factory.mktemp("reference")
    snapshots = root / "snapshots"
    args = run_args(synthetic_reviews, data_root, root / "runs", "--trainer.callbacks+=tests.test_resume.SnapshotLast",
                    f"--trainer.callbacks.directory={snapshots}")
    return fit(args), snapshots


def test_last_checkpoint_is_the_last_epoch_not_the_last_improving_one(reference) -> None:
    finished, snapshots = reference
    last = next(Path(finished.best_model_path).parent.glob("last.ckpt"))
    checkpoint = torch.load(last, weights_only=True)  # still only tensors and primitive types
    assert checkpoint["epoch"] == EPOCHS - 1 and checkpoint["global_step"] == finished.global_step
    for name, tensor in finished.weights.items():
        assert torch.equal(checkpoint["state_dict"][name], tensor)
    # Early stopping has counted the two epochs without improvement; the best is still epoch 1.
    stopping = callback_state(checkpoint, L.pytorch.callbacks.EarlyStopping)
    assert stopping["wait_count"] == 2 and float(stopping["best_score"]) == pytest.approx(SCORES[1])
    best = callback_state(checkpoint, L.pytorch.callbacks.ModelCheckpoint)  # Lightning's key: old checkpoints load
    assert best["best_model_path"] == finished.best_model_path and Path(finished.best_model_path).name.startswith(
        "epoch001")
    assert float(best["best_model_score"]) == pytest.approx(SCORES[1])
    assert torch.load(finished.best_model_path, weights_only=True)["epoch"] == 1
    assert "torch" in callback_state(checkpoint, RandomState)

    # Each epoch's last.ckpt was that epoch's end, improving or not.
    for epoch in range(EPOCHS):
        snapshot = torch.load(snapshots / f"epoch{epoch}.ckpt", weights_only=True)
        assert snapshot["epoch"] == epoch and snapshot["global_step"] == (epoch + 1) * STEPS_PER_EPOCH
        assert callback_state(snapshot, L.pytorch.callbacks.EarlyStopping)["wait_count"] == max(0, epoch - 1)


@pytest.mark.parametrize("epoch", [1, 2], ids=["from-improving-epoch", "from-non-improving-epoch"])
def test_resume_reproduces_the_uninterrupted_run(epoch, reference, tmp_path, synthetic_reviews, data_root) -> None:
    finished, snapshots = reference
    resumed = fit(run_args(synthetic_reviews, data_root, tmp_path / "runs"), snapshots / f"epoch{epoch}.ckpt")
    assert_same_run(resumed, finished, interrupted_root=Path(finished.best_model_path).parents[3])


@pytest.mark.slow  # ~13 s (a train.py subprocess killed, then resumed); resuming in process stays in the default
def test_resume_after_kill_9_reproduces_the_uninterrupted_run(reference, tmp_path, synthetic_reviews,
                                                              data_root) -> None:
    finished, _ = reference
    marker = tmp_path / "epoch1.done"
    args = run_args(synthetic_reviews, data_root, tmp_path / "killed",
                    "--trainer.callbacks+=tests.test_resume.HangAtEpoch", "--trainer.callbacks.epoch=2",
                    f"--trainer.callbacks.marker={marker}")
    # The same thread count as this process, whose reference run it must match bit for bit (fp32 reductions
    # depend on it, and another test module may have changed it).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if process.poll() is not None:
                tail = process.stderr.read()[-3000:]
                pytest.fail(f"train.py ended before epoch 2 (rc {process.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail("train.py did not reach epoch 2 within 120 s")
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # kill -9: no exception handler, no on_train_end
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    last = next((tmp_path / "killed").rglob("last.ckpt"))
    assert torch.load(last, weights_only=True)["epoch"] == 1

    resumed = fit(run_args(synthetic_reviews, data_root, tmp_path / "resumed"), last)
    assert_same_run(resumed, finished, interrupted_root=tmp_path / "killed")


def test_rng_callback_survives_a_user_callbacks_list(tmp_path, synthetic_reviews, data_root) -> None:
    args = run_args(synthetic_reviews, data_root, tmp_path / "runs")
    args = [a for a in args if not a.startswith("--trainer.callbacks")]
    cli = SRACLCLI(args=[*args, "--trainer.callbacks=[{class_path: sracl_lightning.training.callbacks.EpochTimer}]"])
    assert sum(isinstance(c, RandomState) for c in cli.trainer.callbacks) == 1
    assert isinstance(cli.trainer.checkpoint_callback, EpochEndCheckpoint)
