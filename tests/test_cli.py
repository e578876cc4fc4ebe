"""Integration: the train.py / evaluate.py entry points, resume, checkpoints and every shipped config."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from sracl_lightning.cli import SRACLCLI
from sracl_lightning.module import SRACLModule
from tests.conftest import REPO_ROOT, SHARED_DATA


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_args(reviews: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A tiny model on the small synthetic dataset, everything written under tmp_path."""
    return [
        "--config", str(REPO_ROOT / "configs" / "debug.yaml"),
        "--data.dataset", str(reviews), "--data.source_format", "amazon",
        "--data.data_root", str(tmp_path / "processed"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
        *extra,
    ]


def run_train(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    load_script("train").main()


def test_fast_dev_run_through_train_cli(monkeypatch, tmp_path, synthetic_reviews) -> None:
    run_train(monkeypatch, tiny_args(synthetic_reviews, tmp_path, "--trainer.fast_dev_run", "true"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0
    assert results["protocol"]["max_len"] == 20 and results["protocol"]["mask_seen_items"] is False


def test_bf16_mixed_precision_runs(monkeypatch, tmp_path, synthetic_reviews) -> None:
    run_train(monkeypatch, tiny_args(synthetic_reviews, tmp_path, "--trainer.fast_dev_run", "true",
                                     "--trainer.precision", "bf16-mixed"))
    assert next((tmp_path / "runs").rglob("test_metrics.json")).is_file()


def test_train_resume_and_evaluate_checkpoint(monkeypatch, tmp_path, synthetic_reviews) -> None:
    args = tiny_args(synthetic_reviews, tmp_path, "--trainer.limit_test_batches", "1.0")  # all users, as evaluate
    run_train(monkeypatch, [*args, "--trainer.max_epochs", "1"])
    last = next((tmp_path / "runs").rglob("last.ckpt"))

    # Checkpoints hold only tensors and primitive types: safe to load with weights_only=True.
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 5
    assert checkpoint["hyper_parameters"]["num_items"] > 0

    # Resume: the second run continues from step 5 to step 10 instead of starting over.
    run_train(monkeypatch, [*args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    resumed = torch.load(next((tmp_path / "runs" / "synthetic").glob("version_1/checkpoints/last.ckpt")),
                         weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 10

    # evaluate.py rebuilds model and data from the checkpoint and reproduces the test numbers of train.py.
    run_dir = last.parent.parent.parent / "version_1"
    trained = json.loads((run_dir / "test_metrics.json").read_text())
    best = trained["checkpoint"]
    evaluated = load_script("evaluate").evaluate(best, output_dir=str(tmp_path / "eval"), accelerator="cpu")
    written = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    for key in ("hr@10", "ndcg@20", "mrr@10"):
        assert written["metrics"][key] == pytest.approx(trained["metrics"][key], abs=1e-7)
        assert float(evaluated[f"test/{key}"]) == pytest.approx(trained["metrics"][key], abs=1e-7)
    assert (tmp_path / "eval" / "test_results.md").read_text().count("|") > 10


def test_load_from_checkpoint_restores_the_model(monkeypatch, tmp_path, synthetic_reviews) -> None:
    run_train(monkeypatch, tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1"))
    last = next((tmp_path / "runs").rglob("last.ckpt"))
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
