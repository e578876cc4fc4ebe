"""One Markdown summary of every benchmark JSON in ``bench/results/``.

    python bench/summary.py            # -> bench/results/SUMMARY.md

Tables: backbone training and ranking (``backbone-<dataset>.json``, from ``bench/backbone.py``), SRA-CL cost modes
(``sracl-<dataset>.json``, from ``bench/sracl.py``), seed packing (``bench/seed_packing.py``) and the allocator's
kept memory (``allocator-<dataset>.json``, from ``bench/allocator.py``), each figure with the ratio to the reference
measured in the same invocation. Nothing here is measured: it only formats what the benchmark scripts wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sracl_lightning.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def machine_line(payload: dict) -> str:
    machine = ", ".join(f"{k} {v}" for k, v in payload.get("machine", {}).items() if v is not None)
    return f"measured {payload.get('time', '?')}; {machine}"


def seconds(fig: dict, value: float, digits: int) -> str:
    """``value`` (the median run's), followed by the range over the runs when the figure was measured repeatedly."""
    runs = fig.get("repeats", [])
    spread = f" ({min(runs):.{digits}f}–{max(runs):.{digits}f})" if len(runs) > 1 else ""
    return f"{value:.{digits}f}{spread}"


def repeats_line(payload: dict) -> list[str]:
    count = payload.get("repeats", 1)
    return [f"Each figure: the median of {count} runs taken round-robin, with their range in brackets; ratios are of "
            "medians.", ""] if count > 1 else []


def gpu_peak(*figures: dict) -> str:
    """The largest GPU memory peak among the measurements, or n/a for CPU runs."""
    peaks = [f["gpu_peak_mb"] for f in figures if "gpu_peak_mb" in f]
    return f"{max(peaks):,.0f}" if peaks else "n/a"


TRAIN_PATHS = {  # worker -> how the summary names it
    "reference_train": "reference: bare `nn.TransformerEncoder` loop",
    "encoder_train": "bare loop of the project's encoder and loss",
    "project_train": "project (Lightning, data pipeline)",
    "project_train_eager": "project, `fused_kernels=False`",
    "project_compiled": "project, `compile_mode` (CUDA graphs)",
    "project_ddp": "project, DDP 2 processes × 1 thread",
}


def backbone_section(name: str, payload: dict) -> list[str]:
    lines = [f"## Backbone: {payload['dataset']} (`{name}`)", "", machine_line(payload), "", *repeats_line(payload),
             "| precision | training path | s/epoch | samples/s | × reference | peak RSS MB | GPU peak MB |",
             "|---|---|---|---|---|---|---|"]
    for precision, r in payload["results"].items():
        reference = r["reference_train"]["s_per_epoch"]
        for worker, label in TRAIN_PATHS.items():
            if worker in r:
                fig = r[worker]
                lines.append(f"| {precision} | {label} | {seconds(fig, fig['s_per_epoch'], 1)} | "
                             f"{fig['samples_per_s']:,.0f} | "
                             f"{fig['s_per_epoch'] / reference:.2f} | {fig['peak_rss_mb']:.0f} | {gpu_peak(fig)} |")
    lines += ["", "| precision | ranking all users | s | users/s | × reference | peak RSS MB | GPU peak MB |",
              "|---|---|---|---|---|---|---|"]
    for precision, r in payload["results"].items():
        reference = r["reference_rank"]["s_rank_all_users"]
        for worker, label in (("reference_rank", "reference: bare matmul + rank"),
                              ("project_rank", "project (`trainer.test`)")):
            fig = r[worker]
            lines.append(f"| {precision} | {label} | {seconds(fig, fig['s_rank_all_users'], 2)} | "
                         f"{fig['users_per_s']:,.0f} | "
                         f"{fig['s_rank_all_users'] / reference:.2f} | {fig['peak_rss_mb']:.0f} | {gpu_peak(fig)} |")
    ratios = {k: v for precision in payload["results"].values() for k, v in precision["ratios"].items()}
    lines += ["", "× reference is time over the reference's time in the same invocation (below 1 is faster).",
              *([f"Ratios: {', '.join(f'{k} {v:.2f}' for k, v in ratios.items())}."] if ratios else []), ""]
    return lines


def sracl_section(name: str, payload: dict) -> list[str]:
    lines = [f"## SRA-CL cost modes: {payload['dataset']}, profile {payload.get('profile')}, k = {payload.get('k')} "
             f"(`{name}`)", "", machine_line(payload), "", *repeats_line(payload),
             "| precision | mode | s/epoch | samples/s | × backbone | tables load s | peak RSS MB | GPU peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for precision, modes in payload["results"].items():
        for mode, r in modes.items():
            lines.append(f"| {precision} | {mode} | {seconds(r, r['s_per_epoch'], 1)} | {r['samples_per_s']:,.0f} | "
                         f"{r['epoch_over_backbone']:.2f} | {r.get('setup_s', 0.0):.1f} | {r['peak_rss_mb']:.0f} | "
                         f"{gpu_peak(r)} |")
    return [*lines, ""]


def seed_packing_section(name: str, payload: dict) -> list[str]:
    lines = [f"## Seed packing: {payload['dataset']}, {payload['threads']} thread(s) per process (`{name}`)", "",
             machine_line(payload), "", "| path | K | ms/step | runs/hour × single |", "|---|---|---|---|"]
    for key, r in payload["results"].items():
        path, _, k = key.rpartition("_k")
        ratio = r.get("runs_per_hour_over_single", 1.0)
        lines.append(f"| {path or key} | {k if path else 1} | {r['s_per_step'] * 1e3:.1f} | {ratio:.2f} |")
    return [*lines, "", "K copies of the model in one process: `stacked` vmaps one step over stacked parameters, "
            "`shared_batch` steps the copies one after another on one batch. Packing pays above 1.", ""]


def allocator_section(name: str, payload: dict) -> list[str]:
    lines = [f"## Keeping freed memory: {payload['dataset']}, {payload['precision']}, {payload['batches']} batches, "
             f"{payload.get('jobs', 1)} job(s) of {payload['threads']} thread(s) (`{name}`)", "",
             machine_line(payload), "", *repeats_line(payload),
             "| row | allocator | epoch s | user s | system s | × system (epoch) | × system (CPU s) | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for row, r in payload["results"].items():
        for allocator, label in (("system", "reference: glibc's own thresholds"), ("tuned", "kept (default)")):
            f = r[allocator]
            epoch, cpu = (1.0, 1.0) if allocator == "system" else (r["epoch_tuned_over_system"],
                                                                 r["cpu_tuned_over_system"])
            lines.append(f"| {row} | {label} | {seconds(f, f['epoch_s'], 1)} | {f['user_s']:.1f} | "
                         f"{f['system_s']:.1f} | {epoch:.2f} | {cpu:.2f} | {f['peak_rss_mb']:.0f} |")
    return [*lines, "", "Each figure: the mean over the `train.py` processes trained at once (`bench/allocator.py`), "
            "`SRACL_ALLOCATOR=system` against the default, which keeps freed memory in the process "
            "(`sracl_lightning/training/allocator.py`).", ""]


def sections_of(files: list[Path], heading_level: str = "##") -> list[str]:
    sections: list[str] = []
    for path in files:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if path.name.startswith("backbone-"):
            part = backbone_section(path.name, payload)
        elif path.name.startswith("sracl-"):
            part = sracl_section(path.name, payload)
        elif path.name.startswith("allocator-"):
            part = allocator_section(path.name, payload)
        elif path.name.startswith("seed_packing-"):
            part = seed_packing_section(path.name, payload)
        else:
            continue
        sections += [line.replace("## ", f"{heading_level} ", 1) if line.startswith("## ") else line for line in part]
    return sections


def summarize(results: Path = RESULTS) -> str:
    """The Markdown of ``results/*.json``, then of ``results/before/*.json`` (earlier figures kept for comparison)."""
    sections = ["# Benchmark summary", "", "Generated by `python bench/summary.py` from the JSON files beside it.", ""]
    files = sorted(results.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no benchmark results in {results}; run bench/backbone.py or bench/sracl.py")
    sections += sections_of(files)
    before = sorted((results / "before").glob("*.json"))
    if before:
        sections += ["## Before", "", "Earlier figures, kept beside today's (`before/`); their machine line says where "
                     "they were measured.", "", *sections_of(before, "###")]
    return "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    out = args.results / "SUMMARY.md"
    atomic_write_text(out, summarize(args.results) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
