"""The one batch type that flows from the data pipeline into every model.

Dimension letters used across the package: B batch, L window length (``max_len``), H full-history length
of an evaluation batch, D hidden size, N number of items, K retrieved neighbours, E semantic width.

Item ids are 1..N; id 0 is padding. Windows are right-aligned (left-padded), as in the paper's code
(docs/method.md#samples-and-windows).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class SeqBatch:
    """A batch of (window, next item) samples.

    Attributes:
        input_ids: ``(B, L)`` int64. The last ``L`` items before the target, right-aligned, left-padded with 0.
        target: ``(B,)`` int64 in ``1..N``. The item to predict.
        position: ``(B,)`` int64. Position of the target in the flat interaction array of the processed
            dataset. It identifies the prefix uniquely (the prefix is everything before it in the user's
            sequence), so it is the key for per-prefix side information such as semantic neighbours.
        user: ``(B,)`` int64. Row of the user in the processed dataset (0-based).
        history: ``(B, H)`` int64 or ``None``. Evaluation batches only: the user's *whole* history before the
            target (not cut to ``L``), left-padded with 0; used to mask already-seen items.

    Training batches of a DataModule with a semantic profile also carry the inter-user branch's inputs
    (docs/method.md#inter-user-loss); all are ``None`` otherwise:

    Attributes:
        prefix_row: ``(B,)`` int64. Row of the sample's prefix in the semantic tables.
        semantic: ``(B, E)`` float32. The prefix's frozen semantic vector ``h̃_u``.
        neighbour_rows: ``(B, K)`` int64. Rows of its K retrieved prefixes ``N_u``, most similar first.
        neighbour_input_ids: ``(B, K, L)`` int64. The windows of those prefixes, left-padded like ``input_ids``.
        neighbour_semantic: ``(B, K, E)`` float32. Their frozen semantic vectors ``h̃_u'``.
    """

    input_ids: Tensor
    target: Tensor
    position: Tensor
    user: Tensor
    history: Tensor | None = None
    prefix_row: Tensor | None = None
    semantic: Tensor | None = None
    neighbour_rows: Tensor | None = None
    neighbour_input_ids: Tensor | None = None
    neighbour_semantic: Tensor | None = None

    def __len__(self) -> int:
        return self.target.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SeqBatch:
        """Move every tensor to ``device`` (Lightning calls this through ``transfer_batch_to_device``)."""
        return replace(self, **{f.name: _move(getattr(self, f.name), device, non_blocking) for f in fields(self)})

    def pin_memory(self) -> SeqBatch:
        """Pin every tensor (the DataLoader calls this when ``pin_memory=True``)."""
        return replace(self, **{f.name: _pin(getattr(self, f.name)) for f in fields(self)})


def _move(t: Tensor | None, device: torch.device | str, non_blocking: bool) -> Tensor | None:
    return None if t is None else t.to(device, non_blocking=non_blocking)


def _pin(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.pin_memory()
