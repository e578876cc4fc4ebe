"""Tests of the leave-one-out splits and the sample datasets (windows, padding, history, batching)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.samples import (
    SequenceSamples,
    collate_batch,
    held_out_positions,
    right_aligned_windows,
    split_positions,
    training_positions,
    training_span,
)
from sracl_lightning.datasets.sequence_files import read_s3rec
from sracl_lightning.datasets.sequences import Sequences

pytestmark = pytest.mark.unit

# Item ids are 1..10, so the reader keeps them unchanged and the expectations can use them directly.
USERS = {
    "1": [1, 2, 3],
    "2": [4, 5, 6, 7, 8, 9, 10],
    "3": [2, 4, 6, 8, 1],
    "4": [3, 3, 7, 3],
}


@pytest.fixture
def sequences(tmp_path: Path) -> Sequences:
    path = tmp_path / "toy.txt"
    path.write_text("".join(f"{u} {' '.join(map(str, s))}\n" for u, s in USERS.items()), encoding="utf-8")
    seqs = read_s3rec(path)
    assert [seqs.sequence(u).tolist() for u in range(seqs.num_users)] == list(USERS.values())
    return seqs


def _padded(items: list[int], length: int) -> list[int]:
    """The last ``length`` items, left-padded with 0."""
    items = items[-length:] if length else []
    return [0] * (length - len(items)) + items


def _all(dataset: SequenceSamples) -> SeqBatch:
    return dataset.__getitems__(list(range(len(dataset))))


def _by_user(batch: SeqBatch) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for user, target in zip(batch.user.tolist(), batch.target.tolist(), strict=True):
        out.setdefault(user, []).append(target)
    return out


def test_split_sizes(sequences: Sequences) -> None:
    """train = sum(len - 3); val = test = number of users."""
    expected_train = sum(len(s) - 3 for s in USERS.values())
    assert expected_train == 7
    assert len(SequenceSamples(sequences, "train", 5)) == expected_train == sequences.stats()["num_train_samples"]
    assert len(SequenceSamples(sequences, "val", 5)) == len(USERS)
    assert len(SequenceSamples(sequences, "test", 5)) == len(USERS)


def test_evaluation_targets_are_never_training_targets(sequences: Sequences) -> None:
    """Train, val and test target positions are disjoint and together cover every non-first position."""
    train, _ = split_positions(sequences, "train")
    val, _ = split_positions(sequences, "val")
    test, _ = split_positions(sequences, "test")
    train_set, val_set, test_set = set(train.tolist()), set(val.tolist()), set(test.tolist())
    assert len(train_set) == len(train) and len(val_set) == len(val) and len(test_set) == len(test)
    assert not train_set & val_set and not train_set & test_set and not val_set & test_set
    first_positions = set(sequences.offsets[:-1].tolist())
    assert train_set | val_set | test_set == set(range(sequences.num_interactions)) - first_positions


def test_training_targets_are_items_1_to_minus_2(sequences: Sequences) -> None:
    """For every user the training targets are exactly ``items[1:-2]``, in order, with the right positions."""
    batch = _all(SequenceSamples(sequences, "train", max_len=4))
    expected = {u: s[1:-2] for u, s in enumerate(USERS.values()) if s[1:-2]}
    assert _by_user(batch) == expected
    assert torch.equal(batch.target, torch.from_numpy(sequences.items).long()[batch.position])


def test_training_windows(sequences: Sequences) -> None:
    """Each training input is the user's items before the target: right-aligned, left-padded, cut to max_len."""
    max_len = 3
    batch = _all(SequenceSamples(sequences, "train", max_len=max_len))
    rank: dict[int, int] = {}
    for row in range(len(batch)):
        user = int(batch.user[row])
        k = rank[user] = rank.get(user, 0) + 1  # k-th training sample of the user has target items[k]
        items = list(USERS.values())[user]
        assert batch.input_ids[row].tolist() == _padded(items[:k], max_len)
        assert int(batch.target[row]) == items[k]
        assert int(batch.position[row]) == int(sequences.offsets[user]) + k
    # Row 3 is the second user's 4th sample: 4 items of history, only the last 3 fit; row 6 is the last user's.
    assert batch.input_ids[3].tolist() == [5, 6, 7] and batch.input_ids[6].tolist() == [0, 0, 3]


@pytest.mark.parametrize("max_len", [3, 10])
def test_val_and_test_windows(sequences: Sequences, max_len: int) -> None:
    """val: input items[:-2], target items[-2]; test: input items[:-1], target items[-1] (last max_len, padded)."""
    val = _all(SequenceSamples(sequences, "val", max_len=max_len))
    test = _all(SequenceSamples(sequences, "test", max_len=max_len))
    for user, items in enumerate(USERS.values()):
        assert int(val.user[user]) == int(test.user[user]) == user
        assert val.input_ids[user].tolist() == _padded(items[:-2], max_len)
        assert int(val.target[user]) == items[-2]
        assert test.input_ids[user].tolist() == _padded(items[:-1], max_len)
        assert int(test.target[user]) == items[-1]
        assert int(test.position[user]) == int(sequences.offsets[user + 1]) - 1
        assert int(val.position[user]) == int(sequences.offsets[user + 1]) - 2
    assert val.input_ids.shape == test.input_ids.shape == (len(USERS), max_len)


def test_truncation_keeps_the_most_recent_items(sequences: Sequences) -> None:
    """With max_len below the history length the oldest items are dropped, the newest kept on the right."""
    test = _all(SequenceSamples(sequences, "test", max_len=2))
    assert test.input_ids.tolist() == [[1, 2], [8, 9], [6, 8], [3, 7]]
    val = _all(SequenceSamples(sequences, "val", max_len=4))
    assert val.input_ids.tolist() == [[0, 0, 0, 1], [5, 6, 7, 8], [0, 2, 4, 6], [0, 0, 3, 3]]


def test_history_is_the_whole_prefix(sequences: Sequences) -> None:
    """``history`` holds everything before the target (not cut to max_len), left-padded to the batch maximum."""
    test = _all(SequenceSamples(sequences, "test", max_len=2, with_history=True))
    assert test.history.tolist() == [
        [0, 0, 0, 0, 1, 2],
        [4, 5, 6, 7, 8, 9],
        [0, 0, 2, 4, 6, 8],
        [0, 0, 0, 3, 3, 7],
    ]
    val = SequenceSamples(sequences, "val", max_len=2, with_history=True)
    # A batch without the longest user is padded to its own maximum only.
    batch = val.__getitems__([0, 3])
    assert batch.history.tolist() == [[0, 1], [3, 3]]
    assert val.__getitems__([2, 0]).history.tolist() == [[2, 4, 6], [0, 0, 1]]


def test_history_absent_by_default(sequences: Sequences) -> None:
    """Without ``with_history`` there is no history tensor."""
    assert SequenceSamples(sequences, "val", max_len=3).__getitems__([0, 1]).history is None


def test_dtypes(sequences: Sequences) -> None:
    """Every tensor of a batch is int64."""
    batch = SequenceSamples(sequences, "val", max_len=3, with_history=True).__getitems__([0, 1])
    for tensor in (batch.input_ids, batch.target, batch.position, batch.user, batch.history):
        assert tensor.dtype == torch.int64


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_getitems_equals_stacked_getitem(sequences: Sequences, split: str) -> None:
    """A batch from ``__getitems__`` equals the individual ``__getitem__`` samples, in any index order."""
    dataset = SequenceSamples(sequences, split, max_len=3, with_history=True)
    indices = list(reversed(range(len(dataset)))) + [0]
    batch = dataset.__getitems__(indices)
    assert isinstance(batch, SeqBatch) and len(batch) == len(indices)
    for row, index in enumerate(indices):
        single = dataset[index]
        assert len(single) == 1
        assert torch.equal(batch.input_ids[row], single.input_ids[0])
        assert torch.equal(batch.target[row], single.target[0])
        assert torch.equal(batch.position[row], single.position[0])
        assert torch.equal(batch.user[row], single.user[0])
        h = single.history.shape[1]
        assert torch.equal(batch.history[row, batch.history.shape[1] - h:], single.history[0])
        assert not batch.history[row, : batch.history.shape[1] - h].any()
        assert single.history[0, 0] != 0  # a single sample's history is not padded at all


def test_dataloader_with_collate_batch(sequences: Sequences) -> None:
    """A DataLoader with ``collate_batch`` yields SeqBatch objects covering the split in order."""
    dataset = SequenceSamples(sequences, "train", max_len=3)
    loader = DataLoader(dataset, batch_size=3, shuffle=False, collate_fn=collate_batch)
    batches = list(loader)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(isinstance(b, SeqBatch) for b in batches)
    assert torch.equal(torch.cat([b.target for b in batches]), _all(dataset).target)


def test_right_aligned_windows_by_hand() -> None:
    """The last L items before each position, never before the user's start, left-padded with 0."""
    items = torch.tensor([5, 6, 7, 8, 9, 1, 2])  # user 0 owns positions 0..4, user 1 positions 5..6
    positions, starts = torch.tensor([3, 5, 6, 4]), torch.tensor([0, 0, 5, 0])
    windows = right_aligned_windows(items, positions, starts, 3)
    assert windows.tolist() == [[5, 6, 7], [7, 8, 9], [0, 0, 1], [6, 7, 8]]
    assert right_aligned_windows(items, torch.tensor([1]), torch.tensor([0]), 4).tolist() == [[0, 0, 0, 5]]
    assert right_aligned_windows(items, positions, starts, 0).shape == (4, 0)


def test_training_span_and_positions_and_held_out_by_hand() -> None:
    """Users of 3, 5 and 2 items: training parts [0, 1), [3, 6), [8, 8); targets s+1 .. e-3; held out e-2, e-1."""
    offsets = np.array([0, 3, 8, 10])
    starts, ends = training_span(offsets)
    assert starts.tolist() == [0, 3, 8] and ends.tolist() == [1, 6, 8]
    positions, users = training_positions(offsets)
    assert positions.tolist() == [4, 5] and users.tolist() == [1, 1]  # a 3-item user has none, a 2-item one none
    validation, test = held_out_positions(offsets)
    assert validation.tolist() == [1, 6, 8] and test.tolist() == [2, 7, 9]
    assert positions.dtype == validation.dtype == test.dtype == np.int64
