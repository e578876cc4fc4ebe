"""In-memory user sequences: one flat item array plus per-user offsets.

User ``u`` (0-based row) owns ``items[offsets[u]:offsets[u + 1]]`` in chronological order. Item ids are
1..N (0 is padding). Every reader in the package returns this type, and the processed on-disk layout
(:mod:`sracl_lightning.datasets.processed`) stores exactly these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Leave-one-out holds out each user's last two items: the validation target and the test target
#: (:func:`sracl_lightning.datasets.samples.held_out_positions`).
HELD_OUT_ITEMS = 2

#: Leave-one-out needs the held-out items and at least one input item.
MIN_SEQUENCE_LENGTH = HELD_OUT_ITEMS + 1


class DataFormatError(ValueError):
    """Bad input data. The message names the file, the line (1-based) when known, and what was expected."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass
class Sequences:
    """Chronological item sequences of all users.

    Attributes:
        items: ``(T,)`` int32, all interactions, user after user. Values in ``1..num_items``.
        offsets: ``(U + 1,)`` int64, user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``.
        user_tokens: ``U`` original user ids (strings), in row order.
        item_tokens: ``num_items + 1`` original item ids; index 0 is the padding placeholder ``None``, so
            ``item_tokens[i]`` is the source id of item ``i``.
        first_line: ``(U,)`` int64, the source line where each user starts (for error messages), or ``None``.
    """

    items: np.ndarray
    offsets: np.ndarray
    user_tokens: list[str]
    item_tokens: list[str | None]
    first_line: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_tokens) - 1

    @property
    def num_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """Items of one user, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def validate(self, source: str | Path) -> None:
        """Check the invariants every downstream step relies on; raise :class:`DataFormatError` otherwise."""
        if self.num_users == 0 or self.num_interactions == 0:
            raise DataFormatError(source, "no interactions found (empty file?)")
        lengths = self.lengths
        short = np.flatnonzero(lengths < MIN_SEQUENCE_LENGTH)
        if len(short):
            u = int(short[0])
            line = int(self.first_line[u]) if self.first_line is not None else None
            raise DataFormatError(
                source,
                f"user {self.user_tokens[u]!r} has {int(lengths[u])} interaction(s); leave-one-out needs at least "
                f"{MIN_SEQUENCE_LENGTH} ({len(short)} user(s) affected). Filter the data (e.g. 5-core) first.",
                line=line,
            )
        if self.items.min() < 1 or self.items.max() > self.num_items:
            raise DataFormatError(source, f"item ids must lie in 1..{self.num_items}")

    def stats(self) -> dict[str, float | int]:
        """The statistics of the paper's Table 3, plus the sample counts of docs/method.md#samples-and-windows."""
        lengths = self.lengths
        n = self.num_interactions
        return {
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_interactions": n,
            "avg_length": round(n / self.num_users, 4),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "density": round(n / (self.num_users * self.num_items), 8),
            # Every prefix of items[:-2] with its next item: sum over users of (len - MIN_SEQUENCE_LENGTH), the count
            # of sracl_lightning.datasets.samples.training_positions (docs/method.md#samples-and-windows).
            "num_train_samples": int(n - MIN_SEQUENCE_LENGTH * self.num_users),
            # Every prefix of the whole sequence (one LLM user summary each in the released code).
            "num_prefixes": int(n - self.num_users),
        }


def format_stats(name: str, stats: dict[str, float | int]) -> str:
    """One human-readable line of dataset statistics."""
    return (
        f"{name}: {stats['num_users']:,} users, {stats['num_items']:,} items, "
        f"{stats['num_interactions']:,} interactions, avg length {stats['avg_length']:.2f} "
        f"(min {stats['min_length']}, max {stats['max_length']}), density {100 * stats['density']:.4f}%, "
        f"{stats['num_train_samples']:,} training samples"
    )
