"""Leave-one-out splits and the sample datasets, as pointers into the flat item array
(docs/method.md#samples-and-windows).

A sample is identified by the flat *position* ``p`` of its target: its input is the user's items before ``p``.
For a user owning positions ``s .. e-1``:

* training samples: every prefix of ``items[:-2]`` with its next item, i.e. targets at ``s+1 .. e-3``;
* validation: target at ``e-2`` (input ``items[:-2]``); test: target at ``e-1`` (input ``items[:-1]``).

These rules live here once: :func:`training_positions` / :func:`training_span` / :func:`held_out_positions` (on the
offsets) and :func:`split_positions` (on a :class:`Sequences`). No per-prefix list is ever built: a batch gathers its
``(B, L)`` windows from the flat array in one indexing op, :func:`right_aligned_windows`, the package's only window
rule.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.sequences import HELD_OUT_ITEMS, Sequences

Split = Literal["train", "val", "test"]


def right_aligned_windows(items: Tensor, positions: Tensor, starts: Tensor, length: int) -> Tensor:
    """The last ``length`` items before each position, never before its user's start, left-padded with 0.

    The one window rule of the package (docs/method.md#samples-and-windows): row ``b`` holds
    ``items[max(starts[b], positions[b] - length) : positions[b]]``, right-aligned. Every model input, neighbour
    window, DuoRec positive, prompt context and recency-weighted prefix is gathered with it (numpy callers wrap
    their arrays with ``torch.from_numpy``).

    Args:
        items: (T,) flat item array, user after user.
        positions: (B,) flat position one past each window's last item (a sample's target position).
        starts: (B,) flat start position of each window's user; nothing before it is gathered.
        length: Window length ``L``.

    Returns:
        (B, L) items of ``items``' dtype, 0 where a column falls before the user's start.
    """
    index = positions[:, None] - length + torch.arange(length, device=positions.device)  # (B, L)
    valid = index >= starts[:, None]  # (B, L)
    return torch.where(valid, items[index.clamp_min(0)], 0)


def held_out_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of each user's validation target ``e-2`` and test target ``e-1`` (leave-one-out).

    Args:
        offsets: (U + 1,) user ``u`` owns positions ``offsets[u] .. offsets[u + 1] - 1``.

    Returns:
        ``(validation, test)``, both (U,) int64.
    """
    ends = np.asarray(offsets, dtype=np.int64)[1:]  # (U,)
    return ends - HELD_OUT_ITEMS, ends - HELD_OUT_ITEMS + 1


def training_span(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[start, end)`` flat bounds of each user's training part ``items[:-2]``: ``[s, e-2)``.

    Args:
        offsets: (U + 1,) user boundaries.

    Returns:
        ``(starts, ends)``, both (U,) int64.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    return offsets[:-1], offsets[1:] - HELD_OUT_ITEMS


def training_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target positions of the training samples, ``s+1 .. e-3`` of every user, and each one's user.

    A user shorter than :data:`~sracl_lightning.datasets.sequences.MIN_SEQUENCE_LENGTH` has none.

    Args:
        offsets: (U + 1,) user boundaries.

    Returns:
        ``(positions, users)``, both (S,) int64, user after user and increasing.
    """
    starts, ends = training_span(offsets)  # (U,) each
    counts = np.maximum(ends - starts - 1, 0)  # (U,) every training item but the first is a target
    users = np.repeat(np.arange(len(starts), dtype=np.int64), counts)  # (S,)
    # Position = user start + 1 + rank of the sample within its user.
    rank = np.arange(len(users), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)  # (S,)
    return starts[users] + 1 + rank, users


def split_positions(sequences: Sequences, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Target positions of a split, and for each the row of its user.

    Returns:
        ``(positions, users)``, both ``(S,)`` int64.
    """
    if split in ("val", "test"):
        validation, test = held_out_positions(sequences.offsets)
        return (validation if split == "val" else test), np.arange(sequences.num_users, dtype=np.int64)
    return training_positions(sequences.offsets)


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

    def input_windows(self, indices: Tensor) -> Tensor:
        """The ``(B, max_len)`` input windows of samples ``indices`` alone (no targets, no history)."""
        return right_aligned_windows(self.items, self.positions[indices], self.starts[indices], self.max_len)

    def __getitems__(self, indices: list[int]) -> SeqBatch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        positions, starts = self.positions[idx], self.starts[idx]
        history = None
        if self.with_history:
            history = right_aligned_windows(self.items, positions, starts, int((positions - starts).max()))
        return SeqBatch(
            input_ids=right_aligned_windows(self.items, positions, starts, self.max_len),
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
