"""Candidate-pool retrieval (docs/method.md#neighbour-pools): faiss search against brute force, id-based
self-exclusion, exclusions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.unit

faiss = pytest.importorskip("faiss")

from sracl_lightning.semantic.neighbours import (  # noqa: E402
    ann_recall,
    combine_exclusions,
    leakage_exclusion,
    nearest_neighbours,
    same_user_exclusion,
)


def random_vectors(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def brute_force(vectors: np.ndarray, k: int, drop: np.ndarray | None = None) -> np.ndarray:
    """Reference top-k: cosine on normalised vectors, self (diagonal) and ``drop`` (M, M) masked, torch.topk."""
    x = torch.nn.functional.normalize(torch.from_numpy(vectors).double(), dim=1)
    sims = x @ x.T  # (M, M)
    sims.fill_diagonal_(-torch.inf)
    if drop is not None:
        sims[torch.from_numpy(drop)] = -torch.inf
    return sims.topk(k, dim=1).indices.numpy()


def test_flat_matches_brute_force():
    vectors = random_vectors(300, 16)
    table = nearest_neighbours(vectors, 10, progress=False)
    assert table.dtype == np.int32 and table.shape == (300, 10)
    np.testing.assert_array_equal(table, brute_force(vectors, 10))


def test_small_batches_give_the_same_table():
    vectors = random_vectors(200, 8, seed=1)
    full = nearest_neighbours(vectors, 5, progress=False)
    np.testing.assert_array_equal(nearest_neighbours(vectors, 5, batch_size=7, search_margin=0, progress=False), full)


def test_ids_are_returned_instead_of_rows():
    vectors = random_vectors(120, 8, seed=2)
    ids = np.arange(1, 121)
    table = nearest_neighbours(vectors, 6, ids=ids, progress=False)
    assert table.min() >= 1 and table.max() <= 120
    np.testing.assert_array_equal(table, brute_force(vectors, 6) + 1)


def test_self_is_excluded_by_id_not_by_position():
    vectors = random_vectors(50, 8, seed=3)
    vectors[7] = vectors[3]  # exact duplicate with another id
    table = nearest_neighbours(vectors, 4, progress=False)
    assert table[3, 0] == 7 and table[7, 0] == 3
    assert not (table == np.arange(50)[:, None]).any()


def test_equal_scores_are_ordered_by_row():
    vectors = random_vectors(40, 8, seed=4)
    vectors[[5, 9, 21, 30]] = vectors[0]  # five identical rows: all tie at cosine 1
    table = nearest_neighbours(vectors, 4, progress=False)
    np.testing.assert_array_equal(table[0], [5, 9, 21, 30])
    np.testing.assert_array_equal(table[21], [0, 5, 9, 30])


def test_same_user_exclusion_never_returns_the_same_user():
    vectors = random_vectors(200, 8, seed=5)
    users = np.random.default_rng(0).integers(0, 20, size=200)
    exclude = same_user_exclusion(users)
    table = nearest_neighbours(vectors, 10, exclude=exclude, progress=False)
    assert (table >= 0).all()
    assert not (users[table] == users[:, None]).any()
    np.testing.assert_array_equal(table, brute_force(vectors, 10, drop=users[:, None] == users[None, :]))


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_deeper_search_when_first_candidates_are_excluded(index):
    rng = np.random.default_rng(6)
    vectors = random_vectors(300, 16, seed=6)
    # User 0 owns 60 near-identical rows: the first k + margin candidates of each are all its own.
    vectors[:60] = vectors[0] + 0.01 * rng.standard_normal((60, 16)).astype(np.float32)
    users = np.concatenate([np.zeros(60, dtype=np.int64), np.arange(1, 241)])
    widths = []
    same_user = same_user_exclusion(users)

    def exclude(anchors, candidates):
        widths.append(candidates.shape[1])
        return same_user(anchors, candidates)

    table = nearest_neighbours(vectors, 5, index=index, exclude=exclude, search_margin=4, threads=1, progress=False)
    assert max(widths) > 5 + 4  # a deeper pass happened
    assert not (users[table] == users[:, None]).any()
    np.testing.assert_array_equal(table, brute_force(vectors, 5, drop=users[:, None] == users[None, :]))


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_too_few_valid_neighbours_raises_or_pads(index):
    vectors = random_vectors(300, 8, seed=7)
    users = np.zeros(300, dtype=np.int64)
    users[:3] = [1, 2, 3]  # rows 3..299 share user 0: only 3 valid neighbours each
    exclude = same_user_exclusion(users)
    with pytest.raises(ValueError, match=r"297 of 300 anchor row\(s\)"):
        nearest_neighbours(vectors, 5, index=index, exclude=exclude, threads=1, progress=False)
    table = nearest_neighbours(vectors, 5, index=index, exclude=exclude, allow_missing=True, threads=1, progress=False)
    assert (table[3:, 3:] == -1).all() and (table[3:, :3] >= 0).all()
    assert (table[:3] >= 0).all()


@pytest.fixture()
def tiny_prefixes():
    """Three users and six prefixes, written out by hand.

    user 0: [1, 2, 3, 4, 5]  (validation 4, test 5)
    user 1: [6, 4, 7, 8]     (validation 7, test 8)
    user 2: [9, 5, 10, 11, 12] (validation 11, test 12)
    """
    items = np.array([1, 2, 3, 4, 5, 6, 4, 7, 8, 9, 5, 10, 11, 12], dtype=np.int32)
    offsets = np.array([0, 5, 9, 14])
    prefix_user = np.array([0, 0, 1, 1, 2, 2])
    prefix_end = np.array([2, 4, 7, 8, 10, 12])  # [1,2] [1,2,3,4] [6,4] [6,4,7] [9] [9,5,10]
    return items, offsets, prefix_user, prefix_end


def test_leakage_exclusion_on_hand_made_prefixes(tiny_prefixes):
    exclude = leakage_exclusion(*tiny_prefixes)
    rows = np.arange(6)
    drop = exclude(rows, np.tile(rows, (6, 1)))  # (6, 6): anchor x candidate
    expected = np.zeros((6, 6), dtype=bool)
    expected[[0, 1], 1:4] = True  # user 0's validation item 4 is in [1,2,3,4], [6,4], [6,4,7]
    expected[[0, 1], 5] = True  # user 0's test item 5 is in [9,5,10]
    expected[[2, 3], 3] = True  # user 1's validation item 7 is in [6,4,7]
    np.testing.assert_array_equal(drop, expected)  # user 2's items 11, 12 are in no prefix


def test_leakage_exclusion_of_the_anchor_target(tiny_prefixes):
    exclude = leakage_exclusion(*tiny_prefixes, anchor_target=True)
    rows = np.arange(6)
    drop = exclude(rows, np.tile(rows, (6, 1)))
    # Row 0 ([1,2], target 3) now also drops row 1 ([1,2,3,4], already dropped); row 4 ([9], target 5) drops
    # row 5 ([9,5,10]); row 5 (target 11) and rows 2, 3 (targets 7, 8) add nothing new.
    assert drop[4].tolist() == [False, False, False, False, False, True]
    assert drop[0].tolist() == [False, True, True, True, False, True]
    assert drop[2].tolist() == [False, False, False, True, False, False]


def test_leakage_exclusion_matches_a_python_reference():
    rng = np.random.default_rng(8)
    lengths = rng.integers(3, 12, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(1, 15, size=offsets[-1])
    prefix_user = np.repeat(np.arange(40), lengths - 1)
    prefix_end = np.concatenate([np.arange(offsets[u] + 1, offsets[u + 1]) for u in range(40)])
    exclude = leakage_exclusion(items, offsets, prefix_user, prefix_end)
    m = len(prefix_user)
    anchors = rng.integers(0, m, size=50)
    candidates = rng.integers(0, m, size=(50, 30))
    drop = exclude(anchors, candidates)
    for a, row in zip(anchors, range(50), strict=True):
        held_out = set(items[offsets[prefix_user[a] + 1] - 2 : offsets[prefix_user[a] + 1]].tolist())
        for c, flag in zip(candidates[row], drop[row], strict=True):
            prefix = set(items[offsets[prefix_user[c]] : prefix_end[c]].tolist())
            assert flag == bool(prefix & held_out)


def test_nearest_neighbours_with_combined_exclusions(tiny_prefixes):
    items, offsets, prefix_user, prefix_end = tiny_prefixes
    exclude = combine_exclusions(leakage_exclusion(*tiny_prefixes), same_user_exclusion(prefix_user), None)
    vectors = random_vectors(6, 4, seed=9)
    table = nearest_neighbours(vectors, 1, exclude=exclude, allow_missing=True, progress=False)
    # Row 0/1 (user 0) may only take row 4; row 4/5 (user 2) may take rows 0..3.
    assert table[0, 0] == 4 and table[1, 0] == 4
    assert set(table[4:, 0].tolist()) <= {0, 1, 2, 3}
    assert table[2, 0] in (0, 1, 4, 5) and table[3, 0] in (0, 1, 4, 5)


def test_hnsw_recall_on_random_data():
    vectors = random_vectors(2000, 32, seed=10)
    exact = nearest_neighbours(vectors, 10, progress=False)
    approx = nearest_neighbours(vectors, 10, index="hnsw", threads=1, progress=False)
    assert approx.shape == (2000, 10) and (approx >= 0).all()
    assert not (approx == np.arange(2000)[:, None]).any()
    recall = (approx[:, :, None] == exact[:, None, :]).any(axis=1).mean()
    assert recall >= 0.9
    measured = ann_recall(vectors, 10, sample=500, threads=1)
    assert isinstance(measured, float) and 0.9 <= measured <= 1.0
    assert ann_recall(vectors, 10, sample=500, table=exact) == 1.0
    assert ann_recall(vectors, 10, sample=500, table=approx) == pytest.approx(recall, abs=0.05)


def test_threads_setting_is_restored():
    before = faiss.omp_get_max_threads()
    nearest_neighbours(random_vectors(50, 4), 3, threads=1, progress=False)
    assert faiss.omp_get_max_threads() == before


def test_zero_and_non_finite_rows_raise():
    vectors = random_vectors(20, 4)
    vectors[13] = 0
    with pytest.raises(ValueError, match="row 13"):
        nearest_neighbours(vectors, 3, progress=False)
    vectors[13] = 1
    vectors[5, 2] = np.nan
    with pytest.raises(ValueError, match="row 5"):
        nearest_neighbours(vectors, 3, progress=False)


@pytest.mark.parametrize("k", [0, 20, 21])
def test_k_out_of_range_raises(k):
    with pytest.raises(ValueError, match="1 <= k < M"):
        nearest_neighbours(random_vectors(20, 4), k, progress=False)


def test_bad_ids_raise():
    with pytest.raises(ValueError, match="ids"):
        nearest_neighbours(random_vectors(20, 4), 3, ids=np.arange(19), progress=False)
    with pytest.raises(ValueError, match="ids"):
        nearest_neighbours(random_vectors(20, 4), 3, ids=np.arange(-1, 19), progress=False)
