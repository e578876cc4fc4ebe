"""Where a training step's time goes: ``torch.profiler`` over the project's own step, operator by operator.

The step is the module's ``loss_terms`` + backward + its optimizer's step on real batches of the DataModule (no
Lightning loop), so the table shows the model and its losses alone; ``bench/backbone.py`` measures the whole loop.
Both kernel paths are timed in the same invocation (``fused_kernels`` on and off, sracl_lightning/models/kernels.py),
then the chosen one is profiled. Results: ``bench/results/profile-<dataset>-<mode>.txt``.

    python bench/profile_step.py                                  # Beauty, the backbone, 1 thread (a runner job)
    python bench/profile_step.py --mode memory_bank --threads 2   # SRA-CL, memory bank
    python bench/profile_step.py --precision bf16-mixed           # under bf16 autocast (a native-bf16 CPU)
    python bench/profile_step.py --dataset synthetic --steps 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when imported by path
import common  # noqa: E402


def build(args, data, fused: bool):
    """The module of ``args.mode`` (SRA-CL as configs/sracl/*.yaml in that cost mode) and its optimizer, built by the
    module (Adam, lr 1e-3; torch's fused step with the fused kernels, as in training)."""
    import torch

    import sracl_lightning

    objectives = common.sracl_objectives(args.mode)
    torch.manual_seed(0)
    model = sracl_lightning.SRACLModule(num_items=data.num_items, max_len=data.max_len, fused_kernels=fused,
                                        semantic_dim=data.semantic_dim, **objectives)
    context = data.training_context("cpu")
    for objective in model.objectives.values():
        objective.setup(context)
        objective.on_train_epoch_start(model.encoder)  # the memory bank's first build
    model.train()
    return model, model.configure_optimizers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty", help="catalog name, or 'synthetic'")
    parser.add_argument("--source_root", default=str(common.REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data_root", default=str(common.REPO_ROOT / "data" / "processed"))
    parser.add_argument("--output_dir", default=str(common.REPO_ROOT / "bench" / "results"))
    parser.add_argument("--mode", default="backbone", choices=list(common.COST_MODES))
    parser.add_argument("--profile", default="minilm_nollm", help="semantic profile of the SRA-CL modes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runner's jobs use 1)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="bf16-mixed: the step under CPU autocast to bf16, as Lightning's bf16-mixed")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed and profiled steps, each")
    parser.add_argument("--rows", type=int, default=30, help="operators in the table")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from sracl_lightning.models.kernels import fused_kernels
    from sracl_lightning.training.datamodule import SeqRecDataModule

    torch.set_num_threads(args.threads)
    dataset, fmt = common.dataset_source(args)
    data = SeqRecDataModule(dataset=dataset, source_format=fmt, source_root=args.source_root,
                            data_root=args.data_root, batch_size=args.batch_size,
                            semantic_profile=None if args.mode == "backbone" else args.profile,
                            num_neighbours=None if args.mode == "backbone" else 10)
    data.prepare_data()
    data.setup("fit")
    warmup = 3
    batches = [batch for _, batch in zip(range(warmup + args.steps), data.train_dataloader(), strict=False)]

    autocast = args.precision == "bf16-mixed"

    def steps(model, optimizer, chosen) -> None:
        for batch in chosen:
            with fused_kernels(model.fused_kernels), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                loss = torch.stack(list(model.loss_terms(batch).values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    timings = {}
    for fused in (False, True):
        model, optimizer = build(args, data, fused)
        steps(model, optimizer, batches[:warmup])
        start = time.perf_counter()
        steps(model, optimizer, batches[warmup:])
        timings[fused] = (time.perf_counter() - start) / args.steps * 1000
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        steps(model, optimizer, batches[warmup:])
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40, max_shapes_column_width=60)
    header = [f"# profile of one training step: {args.dataset}, mode {args.mode}, batch {args.batch_size}, "
              f"{args.precision}, {args.threads} thread(s), {args.steps} steps",
              f"# {common.machine_info('cpu')}; {common.now()}",
              f"# ms/step: eager ops {timings[False]:.1f}, fused kernels {timings[True]:.1f} "
              f"(speed-up {timings[False] / timings[True]:.2f}x); the table profiles the fused kernels",
              "# (self CPU time per operator and input shapes, summed over the steps; the profiler adds overhead)"]
    text = "\n".join(header) + "\n" + table + "\n"
    suffix = "" if args.precision == "32-true" else f"-{args.precision}"
    out = Path(args.output_dir) / f"profile-{args.dataset}-{args.mode}{suffix}.txt"
    from sracl_lightning.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
