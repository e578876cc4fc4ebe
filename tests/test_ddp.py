"""Multi-process training and evaluation on CPU (gloo), the stand-in for multi-GPU DDP.

Runs the real entry points as a user would: train.py with 2 DDP processes, then its best checkpoint evaluated in 1
process (default suite), or by evaluate.py with 1 and with 2 processes (slow). bf16-mixed is tested in one process,
tests/test_cli.py: on a CPU without native bf16 it is emulated and slow. The metrics must agree exactly: every user
counted once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, load_script

pytestmark = pytest.mark.integration


def run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def train_with_two_processes(tmp_path: Path, synthetic_reviews: Path) -> dict:
    """train.py with 2 DDP processes on the debug config; returns its ``test_metrics.json``."""
    run([str(REPO_ROOT / "train.py"), "--config", str(REPO_ROOT / "configs" / "debug.yaml"),
         "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
         "--data.data_root", str(tmp_path / "processed"), "--trainer.default_root_dir", str(tmp_path / "runs"),
         "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--trainer.limit_test_batches", "1.0", "--trainer.limit_val_batches", "1.0",
         "--trainer.enable_progress_bar", "false",
         # 301 users on 2 ranks: Lightning's default sampler would pad with a repeated user
         "--data.eval_batch_size", "7"], cwd=tmp_path)
    trained = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert trained["metrics"]["users"] == 301
    return trained


def assert_same_metrics(expected: dict[str, float], actual: dict[str, float]) -> None:
    assert actual.keys() == expected.keys() and actual["users"] == 301
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-6), key


def test_ddp_training_tests_every_user_once_as_one_process_does(tmp_path, synthetic_reviews) -> None:
    """train.py's 2-process test pass and a 1-process evaluation of its best checkpoint give the same metrics."""
    trained = train_with_two_processes(tmp_path, synthetic_reviews)
    load_script("evaluate").evaluate(trained["checkpoint"], output_dir=str(tmp_path / "eval1"), accelerator="cpu",
                                     eval_batch_size=13)
    one = json.loads((tmp_path / "eval1" / "test_metrics.json").read_text())["metrics"]
    assert_same_metrics(trained["metrics"], one)
    # The per-user ranks gathered from two processes are the one process's, user for user.
    two_ranks = np.load(Path(trained["checkpoint"]).parent.parent / "test_ranks.npy")
    one_ranks = np.load(tmp_path / "eval1" / "test_ranks.npy")
    assert two_ranks.shape == (301, 2) and np.array_equal(two_ranks, one_ranks)


@pytest.mark.slow  # ~70 s (three subprocesses); the default suite keeps train.py's 2-process run against 1 process
def test_ddp_two_processes_fit_test_and_single_process_agree(tmp_path, synthetic_reviews) -> None:
    trained = train_with_two_processes(tmp_path, synthetic_reviews)
    for devices in ("1", "2"):
        run([str(REPO_ROOT / "evaluate.py"), trained["checkpoint"], "--output_dir", str(tmp_path / f"eval{devices}"),
             "--accelerator", "cpu", "--devices", devices, "--strategy", "ddp" if devices == "2" else "auto",
             "--eval_batch_size", "13" if devices == "1" else "64"], cwd=tmp_path)
    one = json.loads((tmp_path / "eval1" / "test_metrics.json").read_text())["metrics"]
    two = json.loads((tmp_path / "eval2" / "test_metrics.json").read_text())["metrics"]
    # evaluate.py in one process and in two; train.py tested in its own process group: the same weights, the same
    # metrics.
    assert_same_metrics(one, two)
    assert_same_metrics(one, trained["metrics"])


SRACL_DETERMINISTIC = """\
# Full SRA-CL (memory bank) with every random draw of a step turned off, so that a step is a deterministic function
# of its global batch: encoder dropout 0, synthesizer dropout 0 (the default), substitution p = 0 (L_IS still runs
# on two identical views), negatives gathered with gradient across ranks.
model:
  class_path: sracl_lightning.SRACLModule
  init_args:
    encoder:
      class_path: sracl_lightning.SASRec
      init_args: {hidden_size: 16, num_layers: 1, num_heads: 1, inner_size: 32, hidden_dropout: 0.0,
                  attn_dropout: 0.0}
    user_contrast:
      class_path: sracl_lightning.UserContrast
      init_args:
        weight: 0.1
        positive:
          class_path: sracl_lightning.SynthesizedPositive
          init_args: {dropout: 0.0}
        neighbours:
          class_path: sracl_lightning.MemoryBank
        loss:
          class_path: sracl_lightning.InfoNCE
          init_args: {gather_across_ranks: with_grad}
    item_contrast:
      class_path: sracl_lightning.ViewContrast
      init_args:
        weight: 0.1
        views:
          class_path: sracl_lightning.SemanticSubstitution
          init_args: {probability: 0.0}
        loss:
          class_path: sracl_lightning.InfoNCE
          init_args: {gather_across_ranks: with_grad}
data:
  semantic_profile: ddp
  num_neighbours: 3
trainer:
  max_epochs: 2
  limit_train_batches: 6
  limit_val_batches: 1.0
  limit_test_batches: 1
  enable_progress_bar: false
  accelerator: cpu
  strategy: ddp
"""


def last_validation(run_root: Path) -> dict[str, float]:
    """The validation metrics of the last epoch in the CSV log."""
    import csv

    with next(run_root.rglob("metrics.csv")).open() as f:
        rows = list(csv.DictReader(f))
    val = [row for row in rows if row.get("val/mrr@10")][-1]
    return {key: float(value) for key, value in val.items() if key.startswith("val/") and value}


@pytest.mark.slow  # ~30 s; the backbone's 1-vs-2-process agreement stays in the default suite
def test_sracl_one_and_two_processes_train_to_equal_validation_metrics(tmp_path, synthetic_reviews) -> None:
    """1 process and 2 DDP processes with the same global batch (``data.batch_size`` is global: 32 on one rank, 16 on
    each of two) see the same global batches (Lightning's distributed sampler on 1 rank yields the union of the 2
    ranks' batches), the same global negatives (gathered with gradient)
    and the same memory bank (anchor rows gathered from every rank), so their weights and validation metrics agree.
    """
    from sracl_lightning.semantic.stage import SemanticStage

    data_root = tmp_path / "processed"
    SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=str(data_root), profile="ddp",
                  user_source="item_mean", pool_size=5, progress=False).run()
    config = tmp_path / "sracl_ddp.yaml"
    config.write_text(SRACL_DETERMINISTIC)
    metrics = {}
    for devices in ("1", "2"):
        root = tmp_path / f"runs{devices}"
        run([str(REPO_ROOT / "train.py"), "--config", str(config),
             "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
             "--data.data_root", str(data_root), "--trainer.default_root_dir", str(root),
             "--trainer.devices", devices, "--data.batch_size", "32"], cwd=tmp_path)
        metrics[devices] = last_validation(root)
    one, two = metrics["1"], metrics["2"]
    assert one.keys() == two.keys() and "val/mrr@10" in one
    assert one["val/mrr@10"] > 0
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-5), key
