"""Row-wise all-gather across DDP ranks whose local row counts may differ (the last, smaller batch).

Collectives need equal shapes, so every rank first shares its row count, pads its rows to the largest, gathers,
and trims. Outside an initialised process group (or with one process) the local rows are returned as they are.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shutdown_process_group() -> None:
    """Tear down the default process group at the end of a script, on every rank.

    Lightning destroys NCCL groups at exit but leaves gloo (CPU) groups to interpreter finalisation, where gloo's
    worker threads can still hold tensors and the process aborts ("terminate called without an active exception",
    exit -6) after all its work is done. A barrier first, so no rank tears down while another is still in a collective.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_sizes(size: int, device: torch.device) -> list[int]:
    """The local row count of every rank, in rank order."""
    local = torch.tensor([size], device=device)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def all_gather_rows(local: Tensor, *, with_grad: bool = False) -> tuple[Tensor, int]:
    """The rows of every rank, concatenated in rank order, and the index of this rank's first row.

    Args:
        local: (B, ...) rows of this rank; B may differ between ranks.
        with_grad: Let gradient flow back through the collective to the rank that owns each row
            (``torch.distributed.nn.functional.all_gather``, whose backward sums the gradients of every rank).
            Without it the other ranks' rows are constants and only the local slice keeps its gradient.

    Returns:
        (G, ...) rows, G the sum of B over ranks, and this rank's offset in them.
    """
    if not is_distributed():
        return local, 0
    rank = dist.get_rank()
    sizes = gather_sizes(local.shape[0], local.device)
    pad = [0, 0] * (local.dim() - 1) + [0, max(sizes) - local.shape[0]]
    padded = F.pad(local, pad)  # (Bmax, ...): collectives need equal shapes
    if with_grad:
        # NOTE: torch 2.13 deprecates this public function for the private `_functional_collectives`; it stays
        # because it exists in every torch >= 2.3 and its backward works on gloo (all-to-all, no reduce-scatter).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
            parts = list(dist_fn.all_gather(padded))
    else:
        parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, padded.detach())  # no gradient through the collective
        parts[rank] = padded  # the local slice keeps its gradient
    rows = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])  # (G, ...)
    return rows, sum(sizes[:rank])
