"""Leave-one-out splits and the sample datasets, as pointers into the flat item array
(docs/method.md#samples-and-windows).

A sample is identified by the flat *position* ``p`` of its target: its input is the user's items before ``p``.
For a user owning positions ``s .. e-1``:

* training samples: every prefix of ``items[:-2]`` with its next item, i.e. targets at ``s+1 .. e-3``;
* validation: target at ``e-2`` (input ``items[:-2]``); test: target at ``e-1`` (input ``items[:-1]``).

No per-prefix list is ever built: a batch gathers its ``(B, L)`` windows from the flat array in one indexing op.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sracl_lightning.batch import SeqBatch
from sracl_lightning.sequences import Sequences

Split = Literal["train", "val", "test"]


def split_positions(sequences: Sequences, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Target positions of a split, and for each the start position of its user.

    Returns:
        ``(positions, users)``, both ``(S,)`` int64.
    """
    starts, ends = sequences.offsets[:-1], sequences.offsets[1:]
    if split == "val":
        return ends - 2, np.arange(sequences.num_users, dtype=np.int64)
    if split == "test":
        return ends - 1, np.arange(sequences.num_users, dtype=np.int64)
    counts = ends - starts - 3  # targets s+1 .. e-3
    users = np.repeat(np.arange(sequences.num_users, dtype=np.int64), counts)
    # Position = user start + 1 + rank of the sample within its user.
    rank = np.arange(len(users), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts[users] + 1 + rank, users


class SequenceSamples(Dataset):
    """Samples ``(last max_len items before position p, items[p])`` of one split.

    ``__getitems__`` builds a whole :class:`SeqBatch` with tensor indexing, so the DataLoader's per-sample
    Python work is a single call per batch; use :func:`collate_batch` as the DataLoader's ``collate_fn``.

    Args:
        sequences: The dataset.
        split: Which leave-one-out split.
        max_len: Window length ``L``; older items are dropped.
        with_history: Also return each sample's whole history (for masking already-seen items at evaluation).
    """

    def __init__(self, sequences: Sequences, split: Split, max_len: int, with_history: bool = False) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        positions, users = split_positions(sequences, split)
        self.items = torch.from_numpy(sequences.items.astype(np.int64))  # (T,)
        self.positions = torch.from_numpy(positions)  # (S,)
        self.users = torch.from_numpy(users)  # (S,)
        self.starts = torch.from_numpy(sequences.offsets[:-1])[self.users]  # (S,)
        self.max_len = max_len
        self.with_history = with_history

    def __len__(self) -> int:
        return len(self.positions)

    def _windows(self, positions: Tensor, starts: Tensor, length: int) -> Tensor:
        """Right-aligned windows of ``length`` items ending before each position, left-padded with 0."""
        index = positions[:, None] - length + torch.arange(length)  # (B, length)
        valid = index >= starts[:, None]
        return torch.where(valid, self.items[index.clamp_min(0)], 0)

    def input_windows(self, indices: Tensor) -> Tensor:
        """The ``(B, max_len)`` input windows of samples ``indices`` alone (no targets, no history)."""
        return self._windows(self.positions[indices], self.starts[indices], self.max_len)

    def __getitems__(self, indices: list[int]) -> SeqBatch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        positions, starts = self.positions[idx], self.starts[idx]
        history = None
        if self.with_history:
            history = self._windows(positions, starts, int((positions - starts).max()))
        return SeqBatch(
            input_ids=self._windows(positions, starts, self.max_len),
            target=self.items[positions],
            position=positions,
            user=self.users[idx],
            history=history,
        )

    def __getitem__(self, index: int) -> SeqBatch:
        return self.__getitems__([index])


def collate_batch(batch: SeqBatch) -> SeqBatch:
    """``collate_fn`` for :class:`SequenceSamples`: the dataset already returns a collated batch."""
    return batch
