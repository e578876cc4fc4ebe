"""SRA-CL training cost per mode, as ratios to the backbone alone measured in the same invocation.

Modes, each timed in its own subprocess (so peak RSS is per mode) with the real data pipeline under
``lightning.Trainer`` (a semantic profile built by ``data/semantic.py``):

* ``backbone``: SASRec with α = β = 0 (the "w/o CL" row);
* ``faithful``: :class:`SRACLModule` with α = β = 0.1: the K = 10 neighbour windows encoded with gradient every
  step and a second anchor pass, as the released code (about 14 encoder passes per sample);
* ``memory_bank``: :class:`MemoryBankSRACL`: neighbour representations from a no-grad bank; its per-epoch bank
  rebuild is measured and added to the epoch time.

Times are measured over ``--steps`` steps after ``--warmup`` and scaled to one epoch. Loading the semantic tables
is timed too. Results: ``bench/results/sracl-<dataset>.json`` and a Markdown table beside it.

    python bench/sracl.py                                    # Beauty, profile minilm_nollm
    python bench/sracl.py --dataset synthetic --profile minilm_nollm
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the package, also when it is not installed
SYNTHETIC = REPO_ROOT / "data" / "raw" / "synthetic" / "reviews_Synthetic_5.json.gz"
MODES = {  # mode -> (class path, CL weights, default measured steps)
    "backbone": ("sracl_lightning.module.SRACLModule", 0.0, 100),
    "faithful": ("sracl_lightning.module.SRACLModule", 0.1, 12),
    "memory_bank": ("sracl_lightning.memory_bank.MemoryBankSRACL", 0.1, 60),
}


def worker(args) -> dict:
    import importlib

    import lightning as L
    import torch

    from sracl_lightning.datamodule import SeqRecDataModule

    class_path, weight, default_steps = MODES[args.worker]
    steps = args.steps or default_steps
    dataset, fmt = (str(SYNTHETIC), "amazon") if args.dataset == "synthetic" else (args.dataset, None)
    profile = args.profile if weight > 0 else None
    data = SeqRecDataModule(dataset=dataset, source_format=fmt, source_root=args.source_root,
                            data_root=args.data_root, batch_size=args.batch_size, semantic_profile=profile,
                            num_neighbours=args.k if profile else None)
    data.prepare_data()
    start = time.perf_counter()
    data.setup("fit")
    load_s = time.perf_counter() - start  # windows, plus the semantic tables when a profile is set

    module_path, class_name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_path), class_name)
    torch.manual_seed(0)
    model = cls(num_items=data.num_items, max_len=data.max_len, user_cl_weight=weight, item_cl_weight=weight,
                semantic_dim=data.semantic_dim)
    total = args.warmup + steps

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.start = self.end = self.epoch_start_s = 0.0

        def on_train_epoch_start(self, trainer, module) -> None:  # runs before the module's hook (bank rebuild)
            self.epoch_start_s = time.perf_counter()

        @staticmethod
        def clock(trainer) -> float:
            if trainer.strategy.root_device.type == "cuda":  # kernels are queued: wait for them before reading
                torch.cuda.synchronize(trainer.strategy.root_device)
            return time.perf_counter()

        def on_train_batch_start(self, trainer, *_) -> None:
            if trainer.global_step == 0 and not self.start:
                self.epoch_start_s = self.clock(trainer) - self.epoch_start_s  # module epoch-start work
            if trainer.global_step == args.warmup:
                self.start = self.clock(trainer)

        def on_train_batch_end(self, trainer, *_) -> None:
            if trainer.global_step == total:
                self.end = self.clock(trainer)

    timer = Timer()
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=total,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    seconds = timer.end - timer.start
    steps_per_epoch = -(-len(data.datasets["train"]) // args.batch_size)
    epoch_start = timer.epoch_start_s if args.worker == "memory_bank" else 0.0
    out = {"steps_measured": steps, "seconds_measured": seconds, "steps_per_epoch": steps_per_epoch,
           "s_per_step": seconds / steps, "epoch_start_s": epoch_start,
           "s_per_epoch": seconds / steps * steps_per_epoch + epoch_start,
           "samples_per_s": steps * args.batch_size / seconds, "setup_s": load_s}
    if args.accelerator == "gpu":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_worker(mode: str, precision: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--precision", precision, "--dataset", args.dataset,
           "--profile", args.profile, "--source_root", args.source_root, "--data_root", args.data_root,
           "--warmup", str(args.warmup), "--batch_size", str(args.batch_size), "--k", str(args.k),
           "--accelerator", args.accelerator] + (["--steps", str(args.steps)] if args.steps else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {mode:12s} {precision:10s} " + json.dumps({k: round(v, 3) for k, v in result.items()}))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty", help="catalog name, or 'synthetic'")
    parser.add_argument("--profile", default="minilm_nollm", help="semantic profile (data/semantic.py --profile)")
    parser.add_argument("--source_root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data_root", default=str(REPO_ROOT / "data" / "processed"))
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "bench" / "results"))
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: per mode)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--k", type=int, default=10, help="neighbours per anchor")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"],
                        help="auto: the GPU when CUDA is available")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if args.accelerator == "auto":
        args.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if args.worker:
        result = worker(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    report = {"dataset": args.dataset, "profile": args.profile, "batch_size": args.batch_size, "k": args.k,
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_threads": torch.get_num_threads(), "accelerator": args.accelerator,
                          "gpu": torch.cuda.get_device_name() if args.accelerator == "gpu" else None},
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "results": {}}
    rows = ["| precision | mode | s/step | s/epoch | × backbone | setup s | peak RSS MB |",
            "|---|---|---|---|---|---|---|"]
    for precision in args.precisions:
        print(f"[{precision}]")
        figures = {mode: run_worker(mode, precision, args) for mode in args.modes}
        if "backbone" in figures:
            for fig in figures.values():
                fig["epoch_over_backbone"] = fig["s_per_epoch"] / figures["backbone"]["s_per_epoch"]
        report["results"][precision] = figures
        for mode, fig in figures.items():
            ratio = f"{fig['epoch_over_backbone']:.2f}" if "epoch_over_backbone" in fig else "n/a"
            rows.append(f"| {precision} | {mode} | {fig['s_per_step']:.3f} | {fig['s_per_epoch']:.1f} | {ratio} | "
                        f"{fig['setup_s']:.1f} | {fig['peak_rss_mb']:.0f} |")
    from sracl_lightning.atomic import atomic_write_text

    out = Path(args.output_dir) / f"sracl-{args.dataset}{'-gpu' if args.accelerator == 'gpu' else ''}"
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), "\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
