"""The benchmark scripts run end to end on the synthetic default and their summary formats what they wrote.

Few steps, so the figures themselves mean nothing here; what is checked is that every measurement is there, is a
positive number, and that the ratios are the quotients of the figures they come from.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def run_script(name: str, *args: str) -> None:
    out = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / name), *args], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=False)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow  # ~90 s: the bench scripts end to end
def test_bench_scripts_on_synthetic_write_json_and_summary(tmp_path):
    common = ["--dataset", "synthetic", "--data_root", str(tmp_path / "processed"), "--output_dir",
              str(tmp_path / "results"), "--precisions", "32-true", "--warmup", "1", "--steps", "3",
              "--accelerator", "cpu"]
    run_script("backbone.py", *common)
    run_script("sracl.py", *common, "--modes", "backbone")
    run_script("seed_packing.py", *common[:6], "--accelerator", "cpu", "--warmup", "1", "--steps", "2", "--packs", "2")
    run_script("allocator.py", *common[:6], "--rows", "w/o CL", "--precision", "32-true", "--batches", "2",
               "--jobs", "2", "--repeats", "1")

    backbone = json.loads((tmp_path / "results" / "backbone-synthetic.json").read_text())["results"]["32-true"]
    trained = ("reference_train", "encoder_train", "project_train", "project_train_eager", "project_ddp")
    for worker in (*trained, "reference_rank", "project_rank"):
        assert backbone[worker]["peak_rss_mb"] > 0
    assert backbone["project_ddp"]["processes"] == 2 and backbone["project_train"]["processes"] == 1
    for worker in trained:
        figures = backbone[worker]
        assert figures["steps_measured"] == 3 and figures["s_per_epoch"] > 0
        assert math.isclose(figures["samples_per_s"], 3 * 256 / figures["seconds_measured"])
    assert backbone["project_rank"]["users_per_s"] > 0
    assert math.isclose(backbone["ratios"]["train_epoch_project_over_reference"],
                        backbone["project_train"]["s_per_epoch"] / backbone["reference_train"]["s_per_epoch"])
    assert math.isclose(backbone["ratios"]["train_epoch_project_over_own_encoder_loop"],
                        backbone["project_train"]["s_per_epoch"] / backbone["encoder_train"]["s_per_epoch"])
    assert math.isclose(backbone["ratios"]["ddp_2x1_thread_samples_per_s_over_1x2_threads"],
                        backbone["project_ddp"]["samples_per_s"] / backbone["project_train"]["samples_per_s"])

    sracl = json.loads((tmp_path / "results" / "sracl-synthetic.json").read_text())
    mode = sracl["results"]["32-true"]["backbone"]
    assert mode["steps_measured"] == 3 and mode["s_per_epoch"] > 0 and mode["epoch_over_backbone"] == 1.0
    assert (tmp_path / "results" / "sracl-synthetic.md").read_text().count("| 32-true | backbone |") == 1

    packing = json.loads((tmp_path / "results" / "seed_packing-synthetic.json").read_text())["results"]
    assert set(packing) == {"single", "stacked_k2", "shared_batch_k2"}
    for name in ("stacked_k2", "shared_batch_k2"):
        assert math.isclose(packing[name]["runs_per_hour_over_single"],
                            2 * packing["single"]["s_per_step"] / packing[name]["s_per_step"])

    allocator = json.loads((tmp_path / "results" / "allocator-synthetic.json").read_text())["results"]["w/o CL"]
    for name in ("system", "tuned"):
        assert allocator[name]["epoch_s"] > 0 and allocator[name]["peak_rss_mb"] > 0
    assert math.isclose(allocator["epoch_tuned_over_system"],
                        allocator["tuned"]["epoch_s"] / allocator["system"]["epoch_s"])

    run_script("summary.py", "--results", str(tmp_path / "results"))
    summary = (tmp_path / "results" / "SUMMARY.md").read_text()
    assert "## Backbone: synthetic" in summary and "## SRA-CL cost modes: synthetic" in summary
    assert (f"| 32-true | project (Lightning, data pipeline) | {backbone['project_train']['s_per_epoch']:.1f} |"
            in summary)
    assert "## Seed packing: synthetic, 1 thread(s)" in summary
    assert "## Keeping freed memory: synthetic, 32-true, 2 batches, 2 job(s) of 1 thread(s)" in summary
    assert "| n/a |" in summary  # no GPU peak on a CPU run


@pytest.mark.slow  # ~240 s: bench/gpu.sh's whole sequence on the CPU; the scripts it calls are tested above
def test_gpu_script_dry_mode_runs_every_step_on_cpu(tmp_path):
    out = tmp_path / "gpu"
    run = subprocess.run(["bash", str(REPO_ROOT / "bench" / "gpu.sh"), "dry", str(out)], capture_output=True,
                         text=True, cwd=REPO_ROOT, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    backbone = json.loads((out / "backbone-synthetic.json").read_text())
    assert backbone["machine"]["accelerator"] == "cpu" and set(backbone["results"]) == {"32-true"}
    sracl = json.loads((out / "sracl-synthetic.json").read_text())
    assert sracl["profile"] == "cooccurrence"
    assert set(sracl["results"]["32-true"]) == {"backbone", "faithful", "memory_bank"}
    assert "## SRA-CL cost modes: synthetic" in (out / "SUMMARY.md").read_text()
    metrics = json.loads(next((out / "train").rglob("test_metrics.json")).read_text())
    assert metrics["split"] == "test" and metrics["metrics"]["users"] == 2500
    assert 0.0 <= metrics["metrics"]["ndcg@20"] <= metrics["metrics"]["hr@20"] <= 1.0
