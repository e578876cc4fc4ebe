"""The plumbing the benchmark scripts share (bench/common.py), in process."""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import REPO_ROOT, load_script

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def common():
    return load_script("bench/common")


def test_arguments_paths_and_peaks(common, tmp_path) -> None:
    parser = argparse.ArgumentParser()
    common.add_common_arguments(parser, ["a", "b"], warmup=7)
    args = parser.parse_args(["--dataset", "synthetic", "--output_dir", str(tmp_path), "--accelerator", "cpu"])
    assert (args.warmup, args.batch_size, args.precisions, args.worker) == (7, 256, None, None)
    native = common.native_bf16("cpu")
    assert common.precisions_to_measure(args) == (["32-true", "bf16-mixed"] if native else ["32-true"])
    args.precisions = ["bf16-mixed"]
    assert common.precisions_to_measure(args) == ["bf16-mixed"]  # asked for: measured, native or not
    assert common.dataset_source(args) == (str(REPO_ROOT / "data" / "raw" / "synthetic" /
                                               "reviews_Synthetic_5.json.gz"), "amazon")
    assert common.results_path(args, "backbone", ".json") == tmp_path / "backbone-synthetic.json"
    args.accelerator = "gpu"
    assert common.results_path(args, "sracl") == tmp_path / "sracl-synthetic-gpu"
    peaks = common.worker_peaks({"x": 1}, "cpu")
    assert set(peaks) == {"x", "peak_rss_mb"} and peaks["peak_rss_mb"] > 0
    info = common.machine_info("cpu", processor="p")
    assert list(info) == ["python", "torch", "cpu_threads", "cpu_capability", "native_bf16", "processor",
                          "accelerator", "gpu"] and info["gpu"] is None and info["native_bf16"] == native
    common.write_json(tmp_path / "r.json", {"a": 1})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 1\n}\n'
