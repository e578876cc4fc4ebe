"""Semantic item substitution: the two augmented views of the intra-user branch L_IS (paper §3.3,
docs/method.md#intra-user-loss).

Each real item of a window is replaced, independently with probability p, by an item drawn uniformly from its K
semantic neighbours N_v; padding stays padding. Two independent draws give the views S′_u and S″_u. Everything runs
as a few tensor ops on the batch's device (the released code does it per item in the DataLoader with ``random``).

Shapes: B batch, L window length, N items (ids 1..N, 0 = padding), K neighbours per item, V views.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_item_neighbours(item_neighbours: Tensor, num_items: int | None = None) -> None:
    """Check that an item neighbour table can only ever yield real item ids.

    Args:
        item_neighbours: (N + 1, K) integer table; row v holds the neighbours of item v, row 0 (padding) is ignored.
        num_items: N, if known; checked against the number of rows.

    Raises:
        ValueError: The table is not 2-D integer with K >= 1, has the wrong number of rows, or a real item's row
            holds an id outside 1..N (e.g. the -1 filler of a pool that found fewer than K neighbours).
    """
    if item_neighbours.dim() != 2 or item_neighbours.dtype.is_floating_point or item_neighbours.dtype == torch.bool:
        raise ValueError(f"item_neighbours must be a 2-D integer tensor, got {item_neighbours.dtype} "
                         f"of shape {tuple(item_neighbours.shape)}")
    rows, k = item_neighbours.shape
    n = rows - 1 if num_items is None else num_items
    if rows != n + 1:
        raise ValueError(f"item_neighbours has {rows} rows, expected num_items + 1 = {n + 1}")
    if n < 1 or k < 1:
        raise ValueError(f"item_neighbours must cover at least one item and one neighbour, got shape {(rows, k)}")
    real = item_neighbours[1:]  # (N, K); row 0 is the padding row, never read for a real item
    bad = (real < 1) | (real > n)  # (N, K)
    if bool(bad.any()):
        item = int(bad.any(dim=1).nonzero()[0]) + 1
        raise ValueError(f"item_neighbours holds ids outside 1..{n}: item {item} has neighbours "
                         f"{item_neighbours[item].tolist()}")


def substitution_mask(input_ids: Tensor, probability: float, generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool: the real (non-padding) positions drawn for substitution, each independently with probability p."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)  # (B, L)
    return (input_ids != 0) & (draws < probability)


def substitute_items(input_ids: Tensor, item_neighbours: Tensor, probability: float = 0.2,
                     generator: torch.Generator | None = None, check: bool = True) -> Tensor:
    """One substituted view of a batch of windows (docs/method.md#intra-user-loss).

    NOTE: the paper says "randomly select 20% of the items"; like the released code, each non-padding position is
    replaced independently with probability p (Bernoulli), so the count per sequence varies
    (docs/method.md#deviations, D24).

    Args:
        input_ids: (B, L) int64 item ids, 0 = padding (any shape works; it is treated elementwise).
        item_neighbours: (N + 1, K) int64 table of neighbour ids, on the same device as ``input_ids``.
        probability: p, the per-position substitution probability (0.2 in the paper and the code).
        generator: Source of randomness, on the device of ``input_ids``; ``None`` uses the global one.
        check: Raise if a drawn replacement is not a real item id. This reads one flag back from the device;
            pass ``False`` once the table has been validated with :func:`check_item_neighbours`.

    Returns:
        (B, L) int64, a new tensor; padding positions and the encoder's extra tokens (ids above N, such as a
        mask token) equal ``input_ids``.

    Raises:
        ValueError: ``probability`` is outside [0, 1], or (with ``check``) a real item's neighbour row holds an id
            below 1.
    """
    device, (rows, k) = input_ids.device, item_neighbours.shape
    items = input_ids < rows  # (B, L) False at the encoder's extra tokens (ids above N): never substituted
    chosen = substitution_mask(input_ids, probability, generator) & items  # (B, L)
    pick = torch.randint(k, input_ids.shape, generator=generator, device=device)  # (B, L) column in 0..K-1
    # Padding (and extra tokens) index row 0 (all -1) here; those candidates are discarded by the mask below.
    candidates = item_neighbours[torch.where(items, input_ids, 0), pick]  # (B, L)
    if check and bool((chosen & (candidates < 1)).any()):
        bad = input_ids[chosen & (candidates < 1)][0].item()
        raise ValueError(f"item {bad} has a neighbour id below 1 in item_neighbours (row "
                         f"{item_neighbours[bad].tolist()}); validate the table with check_item_neighbours")
    return torch.where(chosen, candidates, input_ids)  # (B, L)
