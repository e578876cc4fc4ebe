"""What keeping freed memory in the process (``sracl_lightning/training/allocator.py``) saves a whole training run.

Each measurement is ``--jobs`` real ``train.py`` processes at once, as the runner's jobs train (the runner's
command: the dataset's config, a method's overlay, ``--trainer.precision``, one epoch of ``--batches`` batches,
validation and test cut to one batch, ``--threads`` threads each), with ``SRACL_ALLOCATOR=system`` (glibc's own
thresholds: the reference) or ``tuned`` (the default). The two alternate, row by row, ``--repeats`` times, and the
median of each is kept, so a shared machine's drift reaches both alike. Figures per measurement, the mean over its
processes: the epoch's training seconds (each run's ``fit`` record), user and system CPU seconds (``wait4``: each
process alone); and the largest peak RSS.

    python bench/allocator.py                      # Beauty: w/o CL and SRA-CL, bf16-mixed, 2 jobs x 1 thread
    python bench/allocator.py --jobs 1             # one process alone
    python bench/allocator.py --dataset office --precision 32-true --batches 100

Results: ``bench/results/allocator-<dataset>.json``; ``python bench/summary.py`` tabulates them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when imported by path
import common  # noqa: E402

#: Row -> its overlays after ``configs/<dataset>.yaml`` (the main table's rows).
ROWS = {"w/o CL": [], "SRA-CL": ["configs/sracl/{dataset}.yaml"]}
ALLOCATORS = ("system", "tuned")


def command(args: argparse.Namespace, row: str, root: str) -> list[str]:
    """The ``train.py`` command of one measurement, its run folder under ``root``."""
    dataset = [] if args.dataset == "synthetic" else [f"configs/{args.dataset}.yaml"]  # synthetic: the default
    configs = [*dataset, *(c.format(dataset=args.dataset) for c in ROWS[row])]
    return [sys.executable, "-m", "sracl_lightning.training.train",
            *(arg for config in configs for arg in ("--config", config)),
            "--trainer.precision", args.precision, "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", str(args.batches), "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", root, *(("--data.data_root", args.data_root) if args.data_root else ())]


def measure(args: argparse.Namespace, row: str, allocator: str) -> dict:
    """``--jobs`` identical ``train.py`` runs at once under ``allocator``: their mean epoch and CPU seconds and the
    largest peak RSS among them."""
    env = {**os.environ, "SRACL_ALLOCATOR": allocator, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-allocator-") as tmp:
        started = []
        for job in range(args.jobs):
            root = Path(tmp) / f"job{job}"
            root.mkdir()
            with (root / "train.log").open("w", encoding="utf-8") as stderr:
                started.append((root, subprocess.Popen(command(args, row, str(root)), cwd=common.REPO_ROOT, env=env,
                                                       stdout=subprocess.DEVNULL, stderr=stderr)))
        for root, process in started:
            _, status, usage = os.wait4(process.pid, 0)  # this process's own rusage (RUSAGE_CHILDREN sums them)
            process.returncode = os.waitstatus_to_exitcode(status)
            log = (root / "train.log").read_text(encoding="utf-8")
            results = sorted(root.glob("*/version_*/test_metrics.json"))
            if process.returncode != 0 or not results:
                raise RuntimeError(f"{row} ({allocator}) failed or wrote no test_metrics.json:\n{log[-3000:]}")
            fit = json.loads(results[-1].read_text(encoding="utf-8"))["fit"]
            runs.append({"epoch_s": fit["seconds"], "user_s": usage.ru_utime, "system_s": usage.ru_stime,
                         "peak_rss_mb": usage.ru_maxrss / 1024})
    figures = {key: sum(run[key] for run in runs) / len(runs) for key in ("epoch_s", "user_s", "system_s")}
    figures["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    print(f"  {row:8s} {allocator:7s} " + json.dumps({k: round(v, 2) for k, v in figures.items()}), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty",
                        help="a dataset config, configs/<dataset>.yaml, or 'synthetic' (configs/default.yaml)")
    parser.add_argument("--data_root", default=None, help="where converted datasets are kept (default: the config's)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--batches", type=int, default=200, help="training batches of the one epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a runner job uses 1)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="identical runs at once, as the runner's jobs (figures: their mean)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output_dir", default=str(common.REPO_ROOT / "bench" / "results"))
    args = parser.parse_args()
    for name in ("batches", "jobs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    results = {}
    for row in args.rows:
        print(f"{row}: {args.batches} batches, {args.precision}, {args.jobs} job(s) of {args.threads} thread(s)",
              flush=True)
        figures = common.interleaved(lambda allocator, row=row: measure(args, row, allocator), list(ALLOCATORS),
                                     args.repeats, seconds=lambda r: r["epoch_s"])
        system, tuned = figures["system"], figures["tuned"]
        results[row] = {**figures, "epoch_tuned_over_system": tuned["epoch_s"] / system["epoch_s"],
                        "cpu_tuned_over_system": (tuned["user_s"] + tuned["system_s"])
                        / (system["user_s"] + system["system_s"])}
        print(f"  epoch tuned / system {results[row]['epoch_tuned_over_system']:.2f}, "
              f"CPU seconds {results[row]['cpu_tuned_over_system']:.2f}", flush=True)
    payload = {"dataset": args.dataset, "precision": args.precision, "batches": args.batches,
               "threads": args.threads, "jobs": args.jobs, "repeats": args.repeats, "time": common.now(),
               "machine": common.machine_info("cpu", cpu_threads=args.threads, processor=os.uname().machine),
               "results": results}
    out = Path(args.output_dir) / f"allocator-{args.dataset}.json"
    common.write_json(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
