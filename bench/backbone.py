"""Backbone speed and memory: this project's training and ranking against a bare PyTorch reference loop.

Every figure is measured in its own subprocess (so peak RSS is per measurement) in the same invocation, and the
project's figures are reported as ratios to the reference, because absolute times on shared machines drift.

* ``reference``: ``nn.TransformerEncoder`` (post-LN, same sizes as the paper's SASRec), random batches, no data
  loading, full-softmax CE, Adam; full ranking = one matmul per batch plus the rank of the target.
* ``encoder``: a second reference, the project's own ``SASRec`` with its recommendation loss
  (``FullSoftmaxCrossEntropy``) and Adam in a bare loop over real batches gathered beforehand: no Lightning, no
  data loading. The project's epoch over it is the framework and data overhead. (Real windows, not random ones:
  their padding and learned logits cost about 10 % more per step on the CPU than uniform random ids.)
* ``project``: the real thing: ``SeqRecDataModule`` + ``SRACLModule`` under ``lightning.Trainer`` (data
  loading, logging and all), and ``trainer.test`` for ranking all users; ``project_eager`` is the same with
  ``fused_kernels=False`` (PyTorch's eager ops, the path before ``sracl_lightning/models/kernels.py``).
* ``project_ddp``: the project under DDP with two CPU processes (gloo) of one thread each, beside ``project`` at
  the same two threads in one process: what data parallelism buys at this model size (CPU only).

Training time is measured over ``--steps`` steps after ``--warmup`` steps and scaled to one epoch (all training
samples at batch 256). With ``--accelerator gpu`` (or ``auto`` on a CUDA machine) both sides run on the GPU, the
clock waits for the device before it reads, and the GPU memory peak is recorded. Results go to
``bench/results/backbone-<dataset>[-gpu].json``.

    python bench/backbone.py                       # Beauty from ../shared/data (falls back to synthetic)
    python bench/backbone.py --dataset synthetic   # the embedded synthetic default
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py, also when imported by path
import common  # noqa: E402


# --------------------------------------------------------------------------------------------------- workers
def _load_data(args):
    from sracl_lightning.training.datamodule import SeqRecDataModule

    dataset, fmt = common.dataset_source(args)
    data = SeqRecDataModule(dataset=dataset, source_format=fmt, source_root=args.source_root,
                            data_root=args.data_root, batch_size=args.batch_size, eval_batch_size=1024)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    return data


def _device(args):
    import torch

    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def worker_reference_train(args) -> dict:
    """Bare loop: the same model shape in stock PyTorch modules, random batches."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    data = _load_data(args)
    device = _device(args)
    n, d, length, b = data.num_items, 64, data.max_len, args.batch_size
    torch.manual_seed(0)
    item_emb, pos_emb = nn.Embedding(n + 1, d, padding_idx=0), nn.Embedding(length, d)
    layer = nn.TransformerEncoderLayer(d, 2, 256, dropout=0.5, activation="gelu", batch_first=True,
                                       norm_first=False, layer_norm_eps=1e-12)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    norm, drop = nn.LayerNorm(d, eps=1e-12), nn.Dropout(0.5)
    for module in (item_emb, pos_emb, encoder, norm):
        module.to(device)
    params = [*item_emb.parameters(), *pos_emb.parameters(), *encoder.parameters(), *norm.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    causal = torch.triu(torch.full((length, length), float("-inf"), device=device), 1)

    def step() -> None:
        ids = torch.randint(1, n + 1, (b, length), device=device)
        target = torch.randint(0, n, (b,), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
            x = drop(norm(item_emb(ids) + pos_emb.weight))
            h = encoder(x, mask=causal, src_key_padding_mask=ids == 0, is_causal=True)[:, -1]
            loss = F.cross_entropy(h @ item_emb.weight[1:].T, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _time_steps(step, args, len(data.datasets["train"]), device)


def worker_encoder_train(args) -> dict:
    """Bare loop of the project's own encoder, loss and optimizer step (fused kernels and fused Adam, as the project
    trains by default) over real training batches gathered before the clock starts."""
    import itertools

    import torch

    from sracl_lightning.methods.rec_losses import FullSoftmaxCrossEntropy
    from sracl_lightning.models.kernels import fused_optimizer
    from sracl_lightning.models.sasrec import SASRec

    data = _load_data(args)
    device = _device(args)
    torch.manual_seed(0)
    encoder, loss_fn = SASRec(data.num_items, data.max_len).to(device), FullSoftmaxCrossEntropy()
    optimizer = fused_optimizer(torch.optim.Adam(encoder.parameters(), lr=1e-3))  # as the module builds it
    loader = data.train_dataloader()
    batches = itertools.cycle([batch.to(device) for batch in itertools.islice(loader, args.warmup + args.steps)])

    def step() -> None:
        batch = next(batches)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
            loss = loss_fn(batch, encoder(batch.input_ids), encoder)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _time_steps(step, args, len(data.datasets["train"]), device)


def worker_project_train(args, fused_kernels: bool = True, processes: int = 1, compile_mode: str | None = None) -> dict:
    """The project's training loop under lightning.Trainer, validation off."""
    import lightning as L
    import torch

    from sracl_lightning.methods.module import SRACLModule

    if processes > 1:
        torch.set_num_threads(1)  # each process one thread: the runner's --jobs layout
    data = _load_data(args)
    torch.manual_seed(0)
    model = SRACLModule(num_items=data.num_items, max_len=data.max_len, fused_kernels=fused_kernels,
                        compile_mode=compile_mode)
    total = args.warmup + args.steps  # the warm-up steps also hold a compiled run's compilation

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.start = 0.0
            self.end = 0.0

        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == args.warmup:
                self.start = common.clock(device)

        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == total:
                self.end = common.clock(device)

    device = _device(args)
    timer = StepTimer()
    ddp = {"strategy": "ddp", "devices": processes} if processes > 1 else {"devices": 1}
    trainer = L.Trainer(accelerator=args.accelerator, precision=args.precision, max_steps=total,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], **ddp)
    trainer.fit(model, datamodule=data)
    # Under DDP each step trains on the global batch (batch_size split over the processes): the same epoch.
    result = _epoch_figures(timer.end - timer.start, args, len(data.datasets["train"]))
    return {**result, "processes": processes, "rank": trainer.global_rank}


def worker_project_train_eager(args) -> dict:
    """The same loop with PyTorch's eager ops (``fused_kernels=False``)."""
    return worker_project_train(args, fused_kernels=False)


def worker_project_compiled(args) -> dict:
    """The same loop with the encoder compiled (``compile_mode``): CUDA graphs on a GPU (``reduce-overhead``).
    Measured on GPUs only: on this project's CPU compilation did not pay and takes minutes."""
    return worker_project_train(args, compile_mode="reduce-overhead" if args.accelerator == "cuda" else "default")


def worker_project_ddp(args) -> dict:
    """The same loop under DDP: two CPU processes of one thread each."""
    return worker_project_train(args, processes=2)


def worker_reference_rank(args) -> dict:
    """Bare full ranking: random user vectors against the item table, rank of the target."""
    import torch

    data = _load_data(args)
    device = _device(args)
    users, n = data.num_users, data.num_items
    table = torch.randn(n, 64, device=device)
    start = common.clock(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=args.precision == "bf16-mixed"):
        for lo in range(0, users, 1024):
            h = torch.randn(min(1024, users - lo), 64, device=device)
            scores = (h @ table.T).float()
            target = torch.randint(0, n, (len(h),), device=device)
            (scores >= scores.gather(1, target[:, None])).sum(1)
    return _rank_figures(common.clock(device) - start, users)


def worker_project_rank(args) -> dict:
    """trainer.test over every user: windows, SASRec forward, fp32 scores, metric update."""
    import lightning as L

    from sracl_lightning.methods.module import SRACLModule

    data = _load_data(args)
    model = SRACLModule(num_items=data.num_items, max_len=data.max_len)
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=data, verbose=False)  # warm-up
    start = time.perf_counter()
    trainer.test(model, datamodule=data, verbose=False)  # metrics are read back at the end, so the device is done
    return _rank_figures(time.perf_counter() - start, data.num_users)


def _time_steps(step, args, num_samples: int, device) -> dict:
    for _ in range(args.warmup):
        step()
    start = common.clock(device)
    for _ in range(args.steps):
        step()
    return _epoch_figures(common.clock(device) - start, args, num_samples)


def _epoch_figures(seconds: float, args, num_samples: int) -> dict:
    steps_per_epoch = math.ceil(num_samples / args.batch_size)
    return {"seconds_measured": seconds, "steps_measured": args.steps, "steps_per_epoch": steps_per_epoch,
            "s_per_epoch": seconds / args.steps * steps_per_epoch,
            "samples_per_s": args.steps * args.batch_size / seconds}


def _rank_figures(seconds: float, users: int) -> dict:
    return {"s_rank_all_users": seconds, "users": users, "users_per_s": users / seconds}


WORKERS = {
    "reference_train": worker_reference_train,
    "encoder_train": worker_encoder_train,
    "project_train": worker_project_train,
    "project_train_eager": worker_project_train_eager,
    "project_compiled": worker_project_compiled,
    "project_ddp": worker_project_ddp,
    "reference_rank": worker_reference_rank,
    "project_rank": worker_project_rank,
}


# ---------------------------------------------------------------------------------------------------- driver
def run_measurement(name: str, precision: str, args) -> dict:
    argv = ["--worker", name, "--precision", precision, "--dataset", args.dataset, "--source_root", args.source_root,
            "--data_root", args.data_root, "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size",
            str(args.batch_size), "--accelerator", args.accelerator]
    return common.run_worker(__file__, name, precision, argv, width=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, sorted(WORKERS), warmup=20)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()

    common.resolve_accelerator(args)
    if args.worker:
        result = common.worker_peaks(WORKERS[args.worker](args), args.accelerator)
        if result.get("rank", 0) == 0:  # under DDP every process ran the worker; rank 0 reports
            print(json.dumps(result))
        return

    if args.dataset != "synthetic" and not Path(args.source_root).is_dir():
        print(f"{args.source_root} is absent: benchmarking the synthetic dataset instead")
        args.dataset = "synthetic"
    if args.dataset == "synthetic" and not common.SYNTHETIC.is_file():
        subprocess.run([sys.executable, str(common.REPO_ROOT / "data" / "synthetic.py")], check=True)
    report: dict = {
        "dataset": args.dataset, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats,
        "machine": common.machine_info(args.accelerator, processor=platform.processor() or platform.machine()),
        "time": common.now(), "results": {},
    }
    for precision in common.precisions_to_measure(args):
        print(f"[{precision}]")
        names = [name for name in WORKERS if (name != "project_ddp" or args.accelerator == "cpu")
                 and (name != "project_compiled" or args.accelerator == "cuda")]
        measure = functools.partial(run_measurement, precision=precision, args=args)
        figures = common.interleaved(measure, names, args.repeats,
                                     seconds=lambda fig: fig.get("s_per_epoch", fig.get("s_rank_all_users")))
        epoch = {name: fig["s_per_epoch"] for name, fig in figures.items() if "s_per_epoch" in fig}
        figures["ratios"] = {
            "train_epoch_project_over_reference": epoch["project_train"] / epoch["reference_train"],
            "train_epoch_project_eager_over_reference": epoch["project_train_eager"] / epoch["reference_train"],
            "train_epoch_project_over_own_encoder_loop": epoch["project_train"] / epoch["encoder_train"],
            "train_epoch_fused_speedup": epoch["project_train_eager"] / epoch["project_train"],
            "rank_project_over_reference": figures["project_rank"]["s_rank_all_users"]
            / figures["reference_rank"]["s_rank_all_users"],
        }
        if "project_compiled" in figures:
            figures["ratios"]["train_epoch_compiled_over_project"] = (
                epoch["project_compiled"] / epoch["project_train"])
        if "project_ddp" in figures:
            figures["ratios"]["ddp_2x1_thread_samples_per_s_over_1x2_threads"] = (
                figures["project_ddp"]["samples_per_s"] / figures["project_train"]["samples_per_s"])
        report["results"][precision] = figures
        print(f"  ratios {json.dumps({k: round(v, 3) for k, v in figures['ratios'].items()})}")
    out = common.results_path(args, "backbone", ".json")
    common.write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
