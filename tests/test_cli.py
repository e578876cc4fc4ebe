"""Integration: the train.py / evaluate.py entry points, resume, checkpoints and every shipped config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.training.cli import SRACLCLI
from tests.conftest import REPO_ROOT, SHARED_DATA, load_script, run_train, tiny_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory, synthetic_reviews: Path) -> Path:
    """The folder of one tiny epoch of train.py (test on all users, as evaluate does), trained once per module.

    Tests may add runs under it (resume writes ``version_1``) but must not change ``version_0``.
    """
    root = tmp_path_factory.mktemp("one_epoch")
    run_train(tiny_args(synthetic_reviews, root, "--trainer.limit_test_batches", "1.0", "--trainer.max_epochs", "1"))
    return root


def test_fast_dev_run_through_train_cli(tmp_path, synthetic_reviews) -> None:
    run_train(tiny_args(synthetic_reviews, tmp_path, "--trainer.fast_dev_run", "true"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0
    assert results["protocol"]["max_len"] == 20 and results["protocol"]["mask_seen_items"] is False


def test_bf16_mixed_precision_runs(tmp_path, synthetic_reviews) -> None:
    run_train(tiny_args(synthetic_reviews, tmp_path, "--trainer.fast_dev_run", "true",
                        "--trainer.precision", "bf16-mixed"))
    assert next((tmp_path / "runs").rglob("test_metrics.json")).is_file()


def test_train_resume_and_evaluate_checkpoint(one_epoch, tmp_path, synthetic_reviews) -> None:
    args = tiny_args(synthetic_reviews, one_epoch, "--trainer.limit_test_batches", "1.0")  # all users, as evaluate
    last = one_epoch / "runs" / "synthetic" / "version_0" / "checkpoints" / "last.ckpt"

    # Checkpoints hold only tensors and primitive types: safe to load with weights_only=True.
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 5
    assert checkpoint["hyper_parameters"]["num_items"] > 0

    # Resume: the second run continues from step 5 to step 10 instead of starting over.
    run_train([*args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    run_dir = one_epoch / "runs" / "synthetic" / "version_1"
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 10

    # evaluate.py rebuilds model and data from the checkpoint and reproduces the test numbers of train.py.
    trained = json.loads((run_dir / "test_metrics.json").read_text())
    best = trained["checkpoint"]
    # Its time counts the epoch of the first part, which its last.ckpt carried.
    first = json.loads((last.parent.parent / "test_metrics.json").read_text())["fit"]
    assert first["epochs"] == 1 and trained["fit"]["epochs"] == 2
    assert trained["fit"]["seconds"] > first["seconds"] > 0
    evaluated = load_script("evaluate").evaluate(best, output_dir=str(tmp_path / "eval"), accelerator="cpu")
    written = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    for key in ("hr@10", "ndcg@20", "mrr@10"):
        assert written["metrics"][key] == pytest.approx(trained["metrics"][key], abs=1e-7)
        assert float(evaluated[f"test/{key}"]) == pytest.approx(trained["metrics"][key], abs=1e-7)
    assert (tmp_path / "eval" / "test_results.md").read_text().count("|") > 10


def test_load_from_checkpoint_restores_the_model(one_epoch) -> None:
    last = one_epoch / "runs" / "synthetic" / "version_0" / "checkpoints" / "last.ckpt"
    model = SRACLModule.load_from_checkpoint(last, map_location="cpu")
    state = torch.load(last, weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    assert model.encoder.hidden_size == 16  # from debug.yaml, not the default


CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_and_instantiates(config: Path, tmp_path, synthetic_reviews) -> None:
    args = ["--config", str(config), "--data.data_root", str(tmp_path / "processed"),
            "--trainer.default_root_dir", str(tmp_path / "runs")]
    uses_shared_data = "source_root: ../shared/data" in config.read_text()
    if uses_shared_data and not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    if uses_shared_data:
        args += ["--data.source_root", str(SHARED_DATA)]
    else:
        args += ["--data.dataset", str(synthetic_reviews)]
    cli = SRACLCLI(args=args)
    assert cli.model.num_items == cli.datamodule.num_items > 0
    assert cli.model.max_len == cli.datamodule.max_len
    assert cli.trainer.checkpoint_callback.monitor == "val/mrr@10"


def test_config_errors_are_reported(tmp_path) -> None:
    with pytest.raises(SystemExit):
        SRACLCLI(args=["--data.max_len", "zero"])
    with pytest.raises(ValueError, match="max_len"):
        SRACLCLI(args=["--data.max_len", "0", "--data.data_root", str(tmp_path)])


def test_train_py_writes_per_user_ranks_that_reproduce_its_metrics(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1"))
    metrics_path = next((tmp_path / "runs").rglob("test_metrics.json"))
    pairs = np.load(metrics_path.with_name("test_ranks.npy"))
    metrics = json.loads(metrics_path.read_text())["metrics"]
    assert len(pairs) == metrics["users"] and (np.diff(pairs[:, 0]) > 0).all()  # each user once, in order
    ranks = pairs[:, 1]
    assert (ranks <= 20).mean() == pytest.approx(metrics["hr@20"], abs=1e-6)
    assert ((ranks <= 10) / np.log2(ranks + 1)).mean() == pytest.approx(metrics["ndcg@10"], abs=1e-6)


OVERLAYS = sorted(p for method in ("llmesr", "s3rec") for p in (REPO_ROOT / "configs" / method).glob("*.yaml"))


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_per_dataset_overlay_stacks_on_its_method(overlay: Path, tmp_path, synthetic_reviews,
                                                        semantic_data_root) -> None:
    """configs/<method>/<dataset>.yaml after configs/<method>.yaml: every key it sets exists (on the synthetic data
    and its two profiles; the dataset itself is each dataset config's own test above)."""
    cli = SRACLCLI(args=["--config", str(REPO_ROOT / "configs" / f"{overlay.parent.name}.yaml"),
                         "--config", str(overlay), "--data.dataset", str(synthetic_reviews),
                         "--data.data_root", semantic_data_root,
                         "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert cli.model.num_items == cli.datamodule.num_items > 0
