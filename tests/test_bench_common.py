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


def test_interleaved_measures_round_robin_and_keeps_each_median(common) -> None:
    order = []
    times = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def measure(name):
        order.append(name)
        return {"s": next(times[name]), "name": name, "call": len(order)}

    chosen = common.interleaved(measure, ["a", "b"], 3, seconds=lambda fig: fig["s"])
    assert order == ["a", "b", "a", "b", "a", "b"]  # round-robin, not a then b
    assert chosen["a"] == {"s": 2.0, "name": "a", "call": 5, "repeats": [3.0, 1.0, 2.0]}
    assert chosen["b"] == {"s": 20.0, "name": "b", "call": 6, "repeats": [10.0, 30.0, 20.0]}
    even = common.interleaved(lambda name: {"s": float(len(order))} if order.append(name) is None else {}, ["c"], 2,
                              seconds=lambda fig: fig["s"])
    assert even["c"]["s"] == even["c"]["repeats"][0]  # the lower median of two
    with pytest.raises(ValueError, match="repeats"):
        common.interleaved(measure, ["a"], 0, seconds=lambda fig: fig["s"])


def test_summary_shows_the_range_of_repeated_figures() -> None:
    summary = load_script("bench/summary")
    fig = {"repeats": [2.0, 1.5, 2.25]}
    assert summary.seconds(fig, 2.0, 1) == "2.0 (1.5–2.2)"
    assert summary.seconds({"repeats": [2.0]}, 2.0, 2) == "2.00"
    assert summary.seconds({}, 2.0, 1) == "2.0"
    assert summary.repeats_line({"repeats": 3})[0].startswith("Each figure: the median of 3 runs")
    assert summary.repeats_line({}) == []
