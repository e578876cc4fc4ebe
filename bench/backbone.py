"""Backbone speed and memory: this project's training and ranking against a bare PyTorch reference loop.

Every figure is measured in its own subprocess (so peak RSS is per measurement) in the same invocation, and the
project's figures are reported as ratios to the reference, because absolute times on shared machines drift.

* ``reference``: ``nn.TransformerEncoder`` (post-LN, same sizes as the paper's SASRec), random batches, no data
  loading, full-softmax CE, Adam; full ranking = one matmul per batch plus the rank of the target.
* ``project``: the real thing: ``SeqRecDataModule`` + ``SRACLModule`` under ``lightning.Trainer`` (data
  loading, logging and all), and ``trainer.test`` for ranking all users.

Training time is measured over ``--steps`` steps after ``--warmup`` steps and scaled to one epoch (all training
samples at batch 256). With ``--accelerator gpu`` (or ``auto`` on a CUDA machine) both sides run on the GPU, the
clock waits for the device before it reads, and the GPU memory peak is recorded. Results go to
``bench/results/backbone-<dataset>[-gpu].json``.

    python bench/backbone.py                       # Beauty from ../shared/data (falls back to synthetic)
    python bench/backbone.py --dataset synthetic   # the embedded synthetic default
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the package, also when it is not installed
SYNTHETIC = REPO_ROOT / "data" / "raw" / "synthetic" / "reviews_Synthetic_5.json.gz"


# --------------------------------------------------------------------------------------------------- workers
def _load_data(args):
    from sracl_lightning.datamodule import SeqRecDataModule

    dataset, fmt = (str(SYNTHETIC), "amazon") if args.dataset == "synthetic" else (args.dataset, None)
    data = SeqRecDataModule(dataset=dataset, source_format=fmt, source_root=args.source_root,
                            data_root=args.data_root, batch_size=args.batch_size, eval_batch_size=1024)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    return data


def _device(args):
    import torch

    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def worker_project_train(args) -> dict:
    """The project's training loop under lightning.Trainer, validation off."""
    import lightning as L
    import torch

    from sracl_lightning.module import SRACLModule

    data = _load_data(args)
    torch.manual_seed(0)
    model = SRACLModule(num_items=data.num_items, max_len=data.max_len, user_cl_weight=0.0, item_cl_weight=0.0)
    total = args.warmup + args.steps

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.start = 0.0
            self.end = 0.0

        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == args.warmup:
                _sync(device)
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == total:
                _sync(device)
                self.end = time.perf_counter()

    device = _device(args)
    timer = StepTimer()
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=total,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    return _epoch_figures(timer.end - timer.start, args, len(data.datasets["train"]))


def worker_reference_rank(args) -> dict:
    """Bare full ranking: random user vectors against the item table, rank of the target."""
    import torch

    data = _load_data(args)
    device = _device(args)
    users, n = data.num_users, data.num_items
    table = torch.randn(n, 64, device=device)
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=args.precision == "bf16-mixed"):
        for lo in range(0, users, 1024):
            h = torch.randn(min(1024, users - lo), 64, device=device)
            scores = (h @ table.T).float()
            target = torch.randint(0, n, (len(h),), device=device)
            (scores >= scores.gather(1, target[:, None])).sum(1)
    _sync(device)
    return _rank_figures(time.perf_counter() - start, users)


def worker_project_rank(args) -> dict:
    """trainer.test over every user: windows, SASRec forward, fp32 scores, metric update."""
    import lightning as L

    from sracl_lightning.module import SRACLModule

    data = _load_data(args)
    model = SRACLModule(num_items=data.num_items, max_len=data.max_len, user_cl_weight=0.0, item_cl_weight=0.0)
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=data, verbose=False)  # warm-up
    start = time.perf_counter()
    trainer.test(model, datamodule=data, verbose=False)  # metrics are read back at the end, so the device is done
    return _rank_figures(time.perf_counter() - start, data.num_users)


def _time_steps(step, args, num_samples: int, device) -> dict:
    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return _epoch_figures(time.perf_counter() - start, args, num_samples)


def _epoch_figures(seconds: float, args, num_samples: int) -> dict:
    steps_per_epoch = math.ceil(num_samples / args.batch_size)
    return {"seconds_measured": seconds, "steps_measured": args.steps, "steps_per_epoch": steps_per_epoch,
            "s_per_epoch": seconds / args.steps * steps_per_epoch,
            "samples_per_s": args.steps * args.batch_size / seconds}


def _rank_figures(seconds: float, users: int) -> dict:
    return {"s_rank_all_users": seconds, "users": users, "users_per_s": users / seconds}


WORKERS = {
    "reference_train": worker_reference_train,
    "project_train": worker_project_train,
    "reference_rank": worker_reference_rank,
    "project_rank": worker_project_rank,
}


# ---------------------------------------------------------------------------------------------------- driver
def run_worker(name: str, precision: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--precision", precision, "--dataset", args.dataset,
           "--source_root", args.source_root, "--data_root", args.data_root, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch_size", str(args.batch_size), "--accelerator", args.accelerator]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(f"  {name:16s} {precision:10s} {json.dumps(shown)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty", help="catalog name, or 'synthetic'")
    parser.add_argument("--source_root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data_root", default=str(REPO_ROOT / "data" / "processed"))
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "bench" / "results"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"],
                        help="auto: the GPU when CUDA is available")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.accelerator == "auto":
        import torch

        args.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if args.worker:
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.accelerator == "gpu":
            import torch

            result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return

    if args.dataset != "synthetic" and not Path(args.source_root).is_dir():
        print(f"{args.source_root} is absent: benchmarking the synthetic dataset instead")
        args.dataset = "synthetic"
    if args.dataset == "synthetic" and not SYNTHETIC.is_file():
        subprocess.run([sys.executable, str(REPO_ROOT / "data" / "synthetic.py")], check=True)
    import torch

    report: dict = {
        "dataset": args.dataset, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
                    "accelerator": args.accelerator,
                    "gpu": torch.cuda.get_device_name() if args.accelerator == "gpu" else None},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"), "results": {},
    }
    for precision in args.precisions:
        print(f"[{precision}]")
        figures = {name: run_worker(name, precision, args) for name in WORKERS}
        figures["ratios"] = {
            "train_epoch_project_over_reference": figures["project_train"]["s_per_epoch"]
            / figures["reference_train"]["s_per_epoch"],
            "rank_project_over_reference": figures["project_rank"]["s_rank_all_users"]
            / figures["reference_rank"]["s_rank_all_users"],
        }
        report["results"][precision] = figures
        print(f"  ratios {json.dumps({k: round(v, 3) for k, v in figures['ratios'].items()})}")
    from sracl_lightning.atomic import atomic_write_text

    out = Path(args.output_dir) / f"backbone-{args.dataset}{'-gpu' if args.accelerator == 'gpu' else ''}.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
