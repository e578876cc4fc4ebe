"""Plumbing shared by the benchmark scripts (``bench/backbone.py``, ``bench/sracl.py``): paths, arguments, the
device clock, worker subprocesses, machine information and the JSON results.

Not a script: the scripts import it from their own folder (``python bench/x.py`` puts ``bench/`` first on
``sys.path``; each script also adds it, so that importing a script by path works too). Importing it puts the
repository root on ``sys.path``, so the package is found also when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the package, also when it is not installed
SYNTHETIC = REPO_ROOT / "data" / "raw" / "synthetic" / "reviews_Synthetic_5.json.gz"


def add_common_arguments(parser: argparse.ArgumentParser, workers: list[str], *, warmup: int) -> None:
    """The arguments both scripts take: data, output, batch, accelerator, precisions and the hidden worker ones.

    Args:
        parser: The script's parser.
        workers: Names a ``--worker`` subprocess may be asked to run.
        warmup: Default ``--warmup`` steps.
    """
    parser.add_argument("--dataset", default="beauty", help="catalog name, or 'synthetic'")
    parser.add_argument("--source_root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data_root", default=str(REPO_ROOT / "data" / "processed"))
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "bench" / "results"))
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"],
                        help="auto: the GPU when CUDA is available")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="default: 32-true, and bf16-mixed where bf16 is native (a GPU, or a CPU with "
                             "AVX512-BF16 or AMX); emulated bf16 matmuls are many times slower than fp32")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every figure this many times, round-robin, and keep the median (each run's "
                             "time is kept in the JSON): a shared machine's drift then reaches every figure alike")
    parser.add_argument("--worker", choices=workers, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)


def resolve_accelerator(args: argparse.Namespace) -> None:
    """Turn ``--accelerator auto`` into ``gpu`` on a CUDA machine, else ``cpu``."""
    if args.accelerator == "auto":
        import torch

        args.accelerator = "gpu" if torch.cuda.is_available() else "cpu"


def native_bf16(accelerator: str) -> bool:
    """Whether bf16 matmuls run natively on the accelerator (:func:`sracl_lightning.models.kernels.native_bf16`)."""
    from sracl_lightning.models.kernels import native_bf16 as native

    return native("cuda" if accelerator == "gpu" else "cpu")


def precisions_to_measure(args: argparse.Namespace) -> list[str]:
    """``--precisions``, or by default 32-true plus bf16-mixed where bf16 is native (said when it is left out)."""
    if args.precisions:
        return list(args.precisions)
    if native_bf16(args.accelerator):
        return ["32-true", "bf16-mixed"]
    print("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): measuring 32-true only (--precisions to force)")
    return ["32-true"]


#: SRA-CL's cost modes -> the class of L_CS's neighbour source (docs/method.md#cost-modes); None: the backbone.
COST_MODES = {"backbone": None, "faithful": "EncodedNeighbours", "memory_bank": "MemoryBank"}


def sracl_objectives(mode: str) -> dict:
    """The ``SRACLModule`` objectives of SRA-CL as configs/sracl/*.yaml (α = β = 0.1) in the cost ``mode`` of
    :data:`COST_MODES`; none for ``"backbone"``."""
    neighbours = COST_MODES[mode]
    if neighbours is None:
        return {}
    from functools import partial

    import sracl_lightning

    return {"user_contrast": partial(sracl_lightning.UserContrast, weight=0.1,
                                     neighbours=getattr(sracl_lightning, neighbours)),
            "item_contrast": partial(sracl_lightning.ViewContrast, weight=0.1)}


def dataset_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(dataset, source_format)`` for ``SeqRecDataModule``: the embedded synthetic file or a catalog name."""
    return (str(SYNTHETIC), "amazon") if args.dataset == "synthetic" else (args.dataset, None)


def clock(device) -> float:
    """``time.perf_counter()`` once the device has run every queued kernel (CUDA kernels are asynchronous)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


def worker_peaks(result: dict, accelerator: str) -> dict:
    """``result`` with this process's peak RSS and, on the GPU, its peak allocated GPU memory (MiB)."""
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if accelerator == "gpu":
        import torch

        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_worker(script: str, label: str, precision: str, argv: list[str], width: int) -> dict:
    """Run ``script --worker ...`` in a fresh process (so peak RSS is per measurement) and read its JSON line.

    Args:
        script: The script's path.
        label: Name of the measurement, for the progress line and the error.
        precision: Its precision, for the progress line.
        argv: The worker's arguments.
        width: Column width of ``label`` in the progress line.

    Returns:
        The worker's result, the last line of its stdout.
    """
    out = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(f"  {label:{width}s} {precision:10s} {json.dumps(shown)}")
    return result


def interleaved(measure: Callable[[str], dict], names: list[str], repeats: int,
                seconds: Callable[[dict], float]) -> dict[str, dict]:
    """Every measurement of ``names`` taken ``repeats`` times, round-robin (all names once, then all again, ...).

    Args:
        measure: Takes one measurement by name (a worker process) and returns its figures.
        names: The measurements, in the order of a round.
        repeats: Rounds; at least 1.
        seconds: The time of a result by which the median is chosen.

    Returns:
        For each name, the figures of its median run (the lower median for an even count), with ``"repeats"``: every
        run's time, in round order. Ratios of medians then compare like with like.
    """
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(repeats):
        if repeats > 1:
            print(f"  round {round_ + 1} of {repeats}")
        for name in names:
            runs[name].append(measure(name))
    chosen = {}
    for name, results in runs.items():
        times = [seconds(result) for result in results]
        median = sorted(range(len(times)), key=times.__getitem__)[(len(times) - 1) // 2]
        chosen[name] = {**results[median], "repeats": times}
    return chosen


def machine_info(accelerator: str, **extra: object) -> dict:
    """Python and torch versions, CPU threads, ``extra`` fields, the accelerator and the GPU's name."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(accelerator),
            **extra, "accelerator": accelerator,
            "gpu": torch.cuda.get_device_name() if accelerator == "gpu" else None}


def now() -> str:
    """The local time of a report, ``YYYY-mm-dd HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def results_path(args: argparse.Namespace, prefix: str, suffix: str = "") -> Path:
    """``<output_dir>/<prefix>-<dataset>[-gpu]<suffix>``."""
    return Path(args.output_dir) / f"{prefix}-{args.dataset}{'-gpu' if args.accelerator == 'gpu' else ''}{suffix}"


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    from sracl_lightning.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
