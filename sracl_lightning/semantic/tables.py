"""The semantic stage's artefacts at training time: loaded and checked, then served in training batches.

:mod:`sracl_lightning.semantic.stage` builds them (and imports the LLM, encoder and faiss machinery); this module only
reads them, so the DataModule stays light. Dimension letters: N items, P training prefixes, E semantic width,
K neighbours per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.manifest import load_array, read_manifest, sequences_key
from sracl_lightning.datasets.samples import SequenceSamples, right_aligned_windows, split_positions
from sracl_lightning.datasets.sequences import Sequences
from sracl_lightning.errors import DataMismatchError

ARTEFACTS = ("prefix_positions", "item_embeddings", "user_embeddings", "item_neighbours", "user_neighbours")


def semantic_dir(dataset_dir: str | Path, profile: str) -> Path:
    """Where the artefacts of ``profile`` live, inside the dataset's processed folder."""
    return Path(dataset_dir) / "semantic" / profile


@dataclass
class SemanticTables:
    """Frozen semantic side information of one dataset, as CPU tensors.

    Attributes:
        item_embeddings: ``(N + 1, E)`` float32; row 0 (padding) is zeros.
        user_embeddings: ``(P, E)`` float32, one row per training prefix.
        item_neighbours: ``(N + 1, K)`` int64 item ids 1..N, best first; row 0 is -1.
        user_neighbours: ``(P, K)`` int64 prefix rows, best first.
        prefix_row: ``(T,)`` int64, the row of the training prefix whose target sits at each flat position (see
            ``SeqBatch.position``), -1 where the position is not a training target.
        prefix_positions: ``(P,)`` int64, the flat target position of each row (inverse of ``prefix_row``).
        profile: Name of the artefact set.
    """

    item_embeddings: Tensor
    user_embeddings: Tensor
    item_neighbours: Tensor
    user_neighbours: Tensor
    prefix_row: Tensor
    prefix_positions: Tensor
    profile: str

    @property
    def dim(self) -> int:
        """Semantic width E (taken from the data, never hard-coded)."""
        return int(self.item_embeddings.shape[1])

    @property
    def pool_size(self) -> int:
        return int(self.item_neighbours.shape[1])


def rebuild_hint(name: str, profile: str) -> str:
    """The command that (re)builds a profile; the stage reuses what is current and rebuilds the rest."""
    return (f"rebuild it with the command that made it, e.g. python data/semantic.py --config "
            f"configs/semantic/{name}.yaml (or --dataset {name} --profile {profile} [...])")


def load_semantic_tables(dataset_dir: str | Path, name: str, profile: str, sequences: Sequences,
                         k: int | None = None) -> SemanticTables:
    """Load and cross-check a profile's artefacts against the dataset they must describe.

    Args:
        dataset_dir: The dataset's processed folder (:func:`sracl_lightning.datasets.processed.dataset_directory`).
        name: The dataset's name, for messages.
        k: Keep only the first ``k`` neighbours of each pool (``None``: all that were built).

    Raises:
        FileNotFoundError: An artefact is missing or incomplete; the message says which command builds it.
        DataMismatchError: An artefact was built for other sequences than ``sequences`` (its manifest records
            the data key it was made from); the message names both keys and the command that rebuilds it.
        ValueError: The artefacts do not match ``sequences`` in shape or id range, or the pools are smaller than
            ``k``.
    """
    directory = semantic_dir(dataset_dir, profile)
    hint = rebuild_hint(name, profile)
    manifests = {}
    for artefact in ARTEFACTS:
        manifests[artefact] = read_manifest(directory / f"{artefact}.npy")
        if manifests[artefact] is None:
            raise FileNotFoundError(f"{directory / artefact}.npy is missing or incomplete; "
                                    + hint.replace("rebuild", "build", 1))
    # Every artefact records the data it was made from; shapes alone cannot tell reordered sequences apart.
    expected = sequences_key(sequences.items, sequences.offsets)
    for artefact, manifest in manifests.items():
        recorded = (manifest.get("inputs") or {}).get("data") or manifest.get("key")
        if artefact != "prefix_positions" and "data" not in (manifest.get("inputs") or {}):
            raise DataMismatchError(f"{directory / artefact}.npy records no data key; {hint}")
        if recorded != expected:
            raise DataMismatchError(
                f"{directory / artefact}.npy was built for data {str(recorded)[:12]}, but dataset {name} now holds "
                f"data {expected[:12]} (its sequences changed since the profile was built); {hint}")
    arrays = {a: load_array(directory / f"{a}.npy") for a in ARTEFACTS}

    positions, _ = split_positions(sequences, "train")
    if not np.array_equal(arrays["prefix_positions"], positions):
        raise ValueError(f"{directory}: prefix_positions.npy does not match the training prefixes of dataset {name} "
                         f"({len(arrays['prefix_positions']):,} rows vs {len(positions):,}); {hint}")
    num_items, num_prefixes = sequences.num_items, len(positions)
    expected_rows = {"item_embeddings": num_items + 1, "item_neighbours": num_items + 1,
                     "user_embeddings": num_prefixes, "user_neighbours": num_prefixes}
    for artefact, rows in expected_rows.items():
        if len(arrays[artefact]) != rows:
            raise ValueError(f"{directory / artefact}.npy has {len(arrays[artefact]):,} rows, expected {rows:,}")
    if arrays["item_embeddings"].shape[1] != arrays["user_embeddings"].shape[1]:
        raise ValueError(f"{directory}: item and user embeddings differ in width "
                         f"({arrays['item_embeddings'].shape[1]} vs {arrays['user_embeddings'].shape[1]})")
    pool = min(arrays["item_neighbours"].shape[1], arrays["user_neighbours"].shape[1])
    if k is not None and k > pool:
        raise ValueError(f"{directory}: pools hold {pool} neighbours, k={k} requested; rebuild with --pool_size {k}")
    keep = pool if k is None else k

    item_nb, user_nb = arrays["item_neighbours"][:, :keep], arrays["user_neighbours"][:, :keep]
    if item_nb[1:].min(initial=1) < 1 or item_nb.max(initial=0) > num_items:
        raise ValueError(f"{directory}/item_neighbours.npy holds ids outside 1..{num_items}")
    if user_nb.min(initial=0) < 0 or user_nb.max(initial=0) >= num_prefixes:
        raise ValueError(f"{directory}/user_neighbours.npy holds rows outside 0..{num_prefixes - 1}")

    prefix_row = np.full(len(sequences.items), -1, dtype=np.int64)  # (T,)
    prefix_row[positions] = np.arange(num_prefixes)
    return SemanticTables(
        item_embeddings=torch.from_numpy(np.ascontiguousarray(arrays["item_embeddings"], dtype=np.float32)),
        user_embeddings=torch.from_numpy(np.ascontiguousarray(arrays["user_embeddings"], dtype=np.float32)),
        item_neighbours=torch.from_numpy(item_nb.astype(np.int64)),
        user_neighbours=torch.from_numpy(user_nb.astype(np.int64)),
        prefix_row=torch.from_numpy(prefix_row),
        prefix_positions=torch.from_numpy(positions),
        profile=profile,
    )


class SemanticSamples(SequenceSamples):
    """Training samples that also carry their retrieved neighbours (the inter-user branch's inputs,
    docs/method.md#inter-user-loss).

    Sample ``i`` is training prefix row ``i`` of the semantic tables (both follow :func:`split_positions`), so the
    neighbours' windows are gathered from the flat item array like the anchor's, in one indexing op per batch.

    Args:
        sequences: The dataset.
        tables: Its semantic tables (checked against ``sequences`` by :func:`load_semantic_tables`).
        max_len: Window length ``L``.
    """

    def __init__(self, sequences: Sequences, tables: SemanticTables, max_len: int) -> None:
        super().__init__(sequences, "train", max_len)
        if not torch.equal(self.positions, tables.prefix_positions):
            raise ValueError("semantic tables do not follow this dataset's training prefixes")
        self.tables = tables

    def __getitems__(self, indices: list[int]) -> SeqBatch:
        batch = super().__getitems__(indices)
        rows = torch.as_tensor(indices, dtype=torch.int64)  # (B,) sample index == prefix row
        neighbours = self.tables.user_neighbours[rows]  # (B, K)
        b, k = neighbours.shape
        flat = neighbours.reshape(-1)  # (B*K,)
        windows = right_aligned_windows(self.items, self.positions[flat], self.starts[flat], self.max_len)
        windows = windows.view(b, k, self.max_len)  # (B, K, L)
        batch.prefix_row = rows
        batch.semantic = self.tables.user_embeddings[rows]  # (B, E)
        batch.neighbour_rows = neighbours
        batch.neighbour_input_ids = windows  # (B, K, L)
        batch.neighbour_semantic = self.tables.user_embeddings[flat].view(b, k, -1)  # (B, K, E)
        return batch
