"""Does packing several seeds of one row into one process train more runs per hour than one seed per process?

The runner trains one seed per process (``--jobs 2`` of one thread each on a 2-core CPU). Packing would train K
copies of the model (separate weights, one data pipeline) in one process. This script measures, at the thread
count of one runner job, the bare training step of the project's SASRec and full-softmax CE on real batches:

* ``single``: one copy, fused kernels (the project's default);
* ``stacked``: K copies as stacked parameters (``torch.func.stack_module_state``) under ``vmap``, so that every
  matmul is one batched matmul over the K copies;
* ``shared_batch``: K copies stepped one after another on the same batch (what a shared data pipeline saves).

``runs_per_hour_over_single`` is ``K * single / packed``: above 1 packing pays. The issue's bar for shipping it as
a runner option is 1.5.

Example::

    python bench/seed_packing.py              # Beauty, 1 thread, K = 2 and 4 -> bench/results/seed_packing-beauty.json
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _batches(args, device):
    from backbone import _load_data

    data = _load_data(args)
    loader = data.train_dataloader()
    batches = [batch.to(device) for batch in itertools.islice(loader, 16)]
    return data, itertools.cycle(batches)


def _timed(step, args) -> float:
    """Seconds per call of ``step`` after ``args.warmup`` untimed calls."""
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return (time.perf_counter() - start) / args.steps


def measure_single(args, device) -> float:
    import torch

    from sracl_lightning.methods.rec_losses import FullSoftmaxCrossEntropy
    from sracl_lightning.models.sasrec import SASRec

    data, batches = _batches(args, device)
    torch.manual_seed(0)
    encoder, loss_fn = SASRec(data.num_items, data.max_len).to(device), FullSoftmaxCrossEntropy()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)

    def step() -> None:
        batch = next(batches)
        loss = loss_fn(batch, encoder(batch.input_ids), encoder)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, args)


def measure_stacked(args, device, k: int) -> float:
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap

    from sracl_lightning.models.kernels import fused_kernels
    from sracl_lightning.models.sasrec import SASRec

    data, batches = _batches(args, device)
    torch.manual_seed(0)
    copies = [SASRec(data.num_items, data.max_len).to(device) for _ in range(k)]
    params, buffers = stack_module_state(copies)  # each (K, *shape)
    template = copy.deepcopy(copies[0]).to("meta")
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-3)

    def loss_of(p, b, input_ids, targets):
        h = functional_call(template, (p, b), (input_ids,))  # (B, D)
        return F.cross_entropy(h @ p["item_embedding.weight"][1:].T, targets - 1)

    def step() -> None:
        batch = next(batches)
        # NOTE: the fused CPU kernels are custom autograd functions without a vmap rule; stock ops are batched.
        with fused_kernels(False):
            losses = vmap(loss_of, in_dims=(0, 0, None, None), randomness="different")(
                params, buffers, batch.input_ids, batch.target)  # (K,)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()

    return _timed(step, args)


def measure_shared_batch(args, device, k: int) -> float:
    import torch

    from sracl_lightning.methods.rec_losses import FullSoftmaxCrossEntropy
    from sracl_lightning.models.sasrec import SASRec

    data, batches = _batches(args, device)
    torch.manual_seed(0)
    copies = [SASRec(data.num_items, data.max_len).to(device) for _ in range(k)]
    optimizers = [torch.optim.Adam(c.parameters(), lr=1e-3) for c in copies]
    loss_fn = FullSoftmaxCrossEntropy()

    def step() -> None:
        batch = next(batches)
        for encoder, optimizer in zip(copies, optimizers, strict=True):
            loss = loss_fn(batch, encoder(batch.input_ids), encoder)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return _timed(step, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser, [], warmup=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="threads of the process: one runner job's")
    parser.add_argument("--packs", type=int, nargs="+", default=[2, 4], help="the K copies to pack")
    args = parser.parse_args()
    common.resolve_accelerator(args)

    import torch

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    single = measure_single(args, device)
    print(f"single: {single * 1e3:.1f} ms/step")
    results: dict = {"single": {"s_per_step": single}}
    for k in args.packs:
        for name, measure in (("stacked", measure_stacked), ("shared_batch", measure_shared_batch)):
            seconds = measure(args, device, k)
            ratio = k * single / seconds
            results[f"{name}_k{k}"] = {"s_per_step": seconds, "runs_per_hour_over_single": ratio}
            print(f"{name} K={k}: {seconds * 1e3:.1f} ms/step, runs/hour {ratio:.2f}x single")
    report = {"dataset": args.dataset, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
              "threads": args.threads, "machine": common.machine_info(args.accelerator), "time": common.now(),
              "results": results}
    out = common.results_path(args, "seed_packing", ".json")
    common.write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
