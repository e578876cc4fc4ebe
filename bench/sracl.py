"""SRA-CL training cost per mode, as ratios to the backbone alone measured in the same invocation.

Modes, each timed in its own subprocess (so peak RSS is per mode) with the real data pipeline under
``lightning.Trainer`` (a semantic profile built by ``data/semantic.py``):

* ``backbone``: SASRec with α = β = 0 (the "w/o CL" row);
* ``faithful``: SRA-CL (α = β = 0.1) with L_CS's neighbours from :class:`EncodedNeighbours`: the K = 10 neighbour
  windows encoded with gradient every step and a second anchor pass, as the released code (about 14 encoder passes
  per sample);
* ``memory_bank``: the same with :class:`MemoryBank`: neighbour representations from a no-grad bank; its per-epoch
  bank rebuild is measured and added to the epoch time.

Times are measured over ``--steps`` steps after ``--warmup`` and scaled to one epoch. Loading the semantic tables
is timed too. Results: ``bench/results/sracl-<dataset>.json`` and a Markdown table beside it.

    python bench/sracl.py                                    # Beauty, profile minilm_nollm
    python bench/sracl.py --dataset synthetic --profile minilm_nollm
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when imported by path
import common  # noqa: E402

MODES = {"backbone": 100, "faithful": 12, "memory_bank": 60}  # cost mode (common.COST_MODES) -> default steps


def worker(args) -> dict:
    import lightning as L
    import torch

    import sracl_lightning
    from sracl_lightning.training.datamodule import SeqRecDataModule

    steps = args.steps or MODES[args.worker]
    dataset, fmt = common.dataset_source(args)
    profile = args.profile if args.worker != "backbone" else None
    data = SeqRecDataModule(dataset=dataset, source_format=fmt, source_root=args.source_root,
                            data_root=args.data_root, batch_size=args.batch_size, semantic_profile=profile,
                            num_neighbours=args.k if profile else None)
    data.prepare_data()
    start = time.perf_counter()
    data.setup("fit")
    load_s = time.perf_counter() - start  # windows, plus the semantic tables when a profile is set

    objectives = common.sracl_objectives(args.worker)  # SRA-CL as configs/sracl/*.yaml, in this cost mode
    torch.manual_seed(0)
    model = sracl_lightning.SRACLModule(num_items=data.num_items, max_len=data.max_len,
                                        semantic_dim=data.semantic_dim, **objectives)
    total = args.warmup + steps

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.start = self.end = self.epoch_start_s = 0.0

        def on_train_epoch_start(self, trainer, module) -> None:  # runs before the module's hook (bank rebuild)
            self.epoch_start_s = time.perf_counter()

        def on_train_batch_start(self, trainer, *_) -> None:
            if trainer.global_step == 0 and not self.start:
                # the module's epoch-start work (the memory bank's rebuild)
                self.epoch_start_s = common.clock(trainer.strategy.root_device) - self.epoch_start_s
            if trainer.global_step == args.warmup:
                self.start = common.clock(trainer.strategy.root_device)

        def on_train_batch_end(self, trainer, *_) -> None:
            if trainer.global_step == total:
                self.end = common.clock(trainer.strategy.root_device)

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
    return out


def run_mode(mode: str, precision: str, args) -> dict:
    argv = ["--worker", mode, "--precision", precision, "--dataset", args.dataset, "--profile", args.profile,
            "--source_root", args.source_root, "--data_root", args.data_root, "--warmup", str(args.warmup),
            "--batch_size", str(args.batch_size), "--k", str(args.k), "--accelerator", args.accelerator]
    argv += ["--steps", str(args.steps)] if args.steps else []
    return common.run_worker(__file__, mode, precision, argv, width=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, list(MODES), warmup=3)
    parser.add_argument("--profile", default="minilm_nollm", help="semantic profile (data/semantic.py --profile)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: per mode)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per anchor")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()

    common.resolve_accelerator(args)
    if args.worker:
        print(json.dumps(common.worker_peaks(worker(args), args.accelerator)))
        return

    report = {"dataset": args.dataset, "profile": args.profile, "batch_size": args.batch_size, "k": args.k,
              "repeats": args.repeats,
              "machine": common.machine_info(args.accelerator), "time": common.now(), "results": {}}
    rows = ["| precision | mode | s/step | s/epoch | × backbone | setup s | peak RSS MB |",
            "|---|---|---|---|---|---|---|"]
    for precision in common.precisions_to_measure(args):
        print(f"[{precision}]")
        measure = functools.partial(run_mode, precision=precision, args=args)
        figures = common.interleaved(measure, args.modes, args.repeats,
                                     seconds=lambda fig: fig["s_per_epoch"])
        if "backbone" in figures:
            for fig in figures.values():
                fig["epoch_over_backbone"] = fig["s_per_epoch"] / figures["backbone"]["s_per_epoch"]
        report["results"][precision] = figures
        for mode, fig in figures.items():
            ratio = f"{fig['epoch_over_backbone']:.2f}" if "epoch_over_backbone" in fig else "n/a"
            rows.append(f"| {precision} | {mode} | {fig['s_per_step']:.3f} | {fig['s_per_epoch']:.1f} | {ratio} | "
                        f"{fig['setup_s']:.1f} | {fig['peak_rss_mb']:.0f} |")
    from sracl_lightning.atomic import atomic_write_text

    out = common.results_path(args, "sracl")
    common.write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), "\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
