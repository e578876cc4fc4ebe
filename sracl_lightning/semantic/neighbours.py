"""Candidate pools: the top-k cosine neighbours of every user or item embedding (paper Eq. 5, Eq. 10;
docs/method.md#neighbour-pools).

``N_u = Top-k over u' != u of cos(h_u, h_u')`` and ``N_v = Top-k over v' != v of cos(e_v, e_v')``. Cosine is the inner
product of L2-normalised float32 copies, searched with faiss: ``IndexFlatIP`` (exact) or ``IndexHNSWFlat`` with
``METRIC_INNER_PRODUCT`` (approximate; report :func:`ann_recall` next to a table built with it). This is the only
module of the package that imports faiss; it returns plain numpy ``int32`` tables and keeps no faiss object alive.
It also holds the package's k-means (:func:`kmeans`, faiss's ``Clustering``; ICLRec's intents).

Dimension letters: M rows (users/prefixes or items), E embedding width, K neighbours, Q anchors of one search call,
C candidates per anchor, T interactions, U users.

Search: each anchor first fetches ``k + search_margin`` candidates. Candidates whose *id* equals the anchor's id, and
those dropped by an optional ``exclude`` callable, are removed; anchors left with fewer than ``k`` valid candidates are
searched again with twice the depth until ``k`` are found or all M rows were examined. An anchor that still lacks
neighbours raises a ValueError, or is padded with ``-1`` when ``allow_missing=True``.

Ties: candidates are ordered by descending score, equal scores by ascending row. Which of several candidates tied
exactly at the search cut-off enters the candidate list is faiss's choice; in practice it is deterministic for a given
faiss build and thread count. Flat tables are reproducible; an HNSW graph built with more than one thread is not
(parallel insertion order), so build with ``threads=1`` where an HNSW table must be bit-identical across runs.

Exclusions (docs/method.md#neighbour-pools), for pools over user prefixes, where row ``r`` is the prefix
``items[offsets[prefix_user[r]] : prefix_end[r]]``. For the training samples
(``positions, users = samples.split_positions(seqs, "train")``) that is ``prefix_user = users`` and
``prefix_end = positions``:

* :func:`same_user_exclusion` drops the other prefixes of the anchor's user (near-duplicate summaries);
* :func:`leakage_exclusion` drops prefixes that contain the anchor user's validation or test item;
* :func:`combine_exclusions` ORs several of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import faiss
import numpy as np
from tqdm.auto import tqdm

from sracl_lightning.datasets.samples import held_out_positions

#: ``exclude(anchor_rows (Q,), candidate_rows (Q, C)) -> (Q, C) bool``, True = drop the candidate.
Exclusion = Callable[[np.ndarray, np.ndarray], np.ndarray]
IndexKind = Literal["flat", "hnsw"]

#: Candidates fetched beyond k on the first pass (default of ``search_margin``).
DEFAULT_SEARCH_MARGIN = 16
# Cap on Q * C entries of one deeper-pass faiss call (scores + ids + masks stay around 100 MB).
_MAX_RESULT_ENTRIES = 1 << 23
# Rows added to an HNSW graph per call, only so that the build can show progress.
_HNSW_ADD_CHUNK = 16_384
# Deeper passes on an HNSW index switch to exact search once the depth reaches this fraction of M: a graph walk
# that deep visits most of the graph anyway, and only exact search can guarantee that all rows were examined.
_HNSW_EXACT_FRACTION = 0.25


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set faiss's OpenMP thread count; ``None`` leaves it unchanged."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def kmeans(vectors: np.ndarray, k: int, niter: int = 20, nredo: int = 5, seed: int = 1,
           initial: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """``(k, E)`` float32 centroids of faiss's Euclidean k-means over ``(M, E)`` vectors.

    Args:
        vectors: The points, M >= k.
        k: Clusters.
        niter: Lloyd iterations per run.
        nredo: Runs; the one with the lowest objective is kept.
        seed: faiss's seed (initial centroids, subsampling).
        initial: ``(k, E)`` centroids to start from instead of a random draw (warm start).
        threads: faiss's OpenMP threads during the call (``None``: unchanged).

    Raises:
        ValueError: Fewer points than clusters, a non-finite point, or ``initial`` of the wrong shape.
    """
    points = np.ascontiguousarray(vectors, dtype=np.float32)  # (M, E)
    if points.ndim != 2 or len(points) < k or k < 1:
        raise ValueError(f"k-means needs an (M, E) array with M >= k = {k} points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("k-means: the points hold a non-finite value")
    dim = points.shape[1]
    clustering = faiss.Clustering(dim, k)
    clustering.niter, clustering.nredo, clustering.seed = niter, nredo, seed
    clustering.max_points_per_centroid, clustering.min_points_per_centroid = 4096, 0
    if initial is not None:
        start = np.ascontiguousarray(initial, dtype=np.float32)
        if start.shape != (k, dim):
            raise ValueError(f"k-means: initial centroids must have shape {(k, dim)}, got {start.shape}")
        faiss.copy_array_to_vector(start.ravel(), clustering.centroids)
    with faiss_threads(threads):
        clustering.train(points, faiss.IndexFlatL2(dim))
    return faiss.vector_float_to_array(clustering.centroids).reshape(k, dim).copy()


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of ``(M, E)`` vectors; zero or non-finite rows raise, naming the first one."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be a non-empty (M, E) array, got shape {vectors.shape}")
    normed = np.array(vectors, dtype=np.float32, order="C", copy=True)  # (M, E)
    norms = np.linalg.norm(normed.astype(np.float64), axis=1)  # (M,); float64 so tiny rows don't underflow
    bad = np.flatnonzero(~(np.isfinite(norms) & (norms > 0)))
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"cannot L2-normalise: row {row} has norm {norms[row]} ({len(bad)} zero or non-finite "
            "row(s) in all); cosine similarity is undefined for it"
        )
    normed /= norms[:, None].astype(np.float32)
    return normed


def _build_index(
    normed: np.ndarray, kind: IndexKind, hnsw_m: int, hnsw_ef_construction: int, hnsw_ef_search: int, progress: bool
) -> faiss.Index:
    """A faiss inner-product index over the normalised rows."""
    dim = normed.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(normed)
        return index
    if kind != "hnsw":
        raise ValueError(f"index must be 'flat' or 'hnsw', got {kind!r}")
    index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = hnsw_ef_construction
    index.hnsw.efSearch = hnsw_ef_search
    starts = range(0, len(normed), _HNSW_ADD_CHUNK)
    for start in tqdm(starts, desc="hnsw build", unit="chunk", disable=not progress, leave=False):
        index.add(normed[start : start + _HNSW_ADD_CHUNK])
    return index


class _PoolSearch:
    """Top-k search with id-based self-exclusion, an optional exclusion and deeper re-search (private helper)."""

    def __init__(
        self,
        normed: np.ndarray,
        ids: np.ndarray,
        index: faiss.Index,
        kind: IndexKind,
        k: int,
        exclude: Exclusion | None,
    ) -> None:
        self.normed, self.ids, self.index, self.kind, self.k, self.exclude = normed, ids, index, kind, k, exclude
        self.num_rows = len(normed)

    def _exact_index(self) -> faiss.Index:
        if self.kind == "flat":
            return self.index
        # IndexHNSWFlat keeps its vectors in an IndexFlat of the same metric: exact search without a second copy.
        return faiss.downcast_index(self.index.storage)

    def candidates(self, anchors: np.ndarray, depth: int) -> np.ndarray:
        """``(Q, depth)`` candidate rows of ``anchors``, by descending score then ascending row; -1 = none."""
        exact = self.kind == "flat" or depth >= _HNSW_EXACT_FRACTION * self.num_rows
        index = self._exact_index() if exact else self.index
        scores, rows = index.search(self.normed[anchors], depth)  # (Q, depth) each
        missing = rows < 0  # HNSW may return fewer than depth results
        scores = np.where(missing, -np.inf, scores)
        # Primary key: score (descending); secondary: row (ascending) -> a deterministic order among equal scores.
        order = np.lexsort((np.where(missing, self.num_rows, rows), -scores), axis=1)  # (Q, depth)
        return np.take_along_axis(rows, order, axis=1)

    def select(self, anchors: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first ``k`` valid candidates of each anchor, as ids (-1 where too few), and a "complete" mask."""
        # A missing result (-1) is replaced by the anchor itself, which the id test below always drops.
        rows = np.where(rows >= 0, rows, anchors[:, None])  # (Q, C)
        # NOTE: the released code drops column 0 of the sorted similarities, assuming it is the anchor
        # (docs/method.md#deviations, D16); an exact duplicate row can take that column instead. Here self is dropped by
        # id, and a duplicate row with another id stays a valid neighbour.
        keep = self.ids[rows] != self.ids[anchors][:, None]  # (Q, C)
        if self.exclude is not None:
            keep &= ~np.asarray(self.exclude(anchors, rows), dtype=bool)
        # Stable sort of "dropped" flags moves kept candidates to the front without changing their order.
        order = np.argsort(~keep, axis=1, kind="stable")[:, : self.k]  # (Q, K)
        ok = np.take_along_axis(keep, order, axis=1)  # (Q, K)
        table = np.where(ok, self.ids[np.take_along_axis(rows, order, axis=1)], -1)  # (Q, K)
        return table, ok[:, -1]

    def run(self, anchors: np.ndarray, first_depth: int, batch_size: int, progress: bool) -> np.ndarray:
        """``(Q, K)`` int64 neighbour ids of ``anchors``; -1 where fewer than ``k`` valid neighbours exist."""
        table = np.full((len(anchors), self.k), -1, dtype=np.int64)  # (Q, K)
        depth = min(self.num_rows, first_depth)
        incomplete = []
        starts = range(0, len(anchors), batch_size)
        for start in tqdm(starts, desc="neighbours", unit="batch", disable=not progress, leave=False):
            part = np.arange(start, min(start + batch_size, len(anchors)))
            table[part], complete = self.select(anchors[part], self.candidates(anchors[part], depth))
            incomplete.append(part[~complete])
        pending = np.concatenate(incomplete)
        # Deeper passes only for the anchors whose first candidates were mostly excluded.
        while len(pending) and depth < self.num_rows:
            depth = min(self.num_rows, 2 * depth)
            chunk = max(1, _MAX_RESULT_ENTRIES // depth)
            still = []
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                table[part], complete = self.select(anchors[part], self.candidates(anchors[part], depth))
                still.append(part[~complete])
            pending = np.concatenate(still)
        return table


def _check_ids(ids: np.ndarray | None, num_rows: int) -> np.ndarray:
    if ids is None:
        return np.arange(num_rows, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (num_rows,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be an integer array of shape ({num_rows},), got {ids.dtype} {ids.shape}")
    if num_rows and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
        raise ValueError("ids must lie in 0..2**31-1 (-1 marks a missing neighbour in int32 tables)")
    return ids.astype(np.int64)


def nearest_neighbours(
    vectors: np.ndarray,
    k: int,
    *,
    ids: np.ndarray | None = None,
    index: IndexKind = "flat",
    exclude: Exclusion | None = None,
    allow_missing: bool = False,
    search_margin: int = DEFAULT_SEARCH_MARGIN,
    batch_size: int = 4096,
    hnsw_m: int = 32,
    hnsw_ef_search: int = 128,
    hnsw_ef_construction: int = 200,
    threads: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The ``k`` most cosine-similar other rows of every row, best first (paper Eq. 5 / Eq. 10,
    docs/method.md#neighbour-pools).

    Args:
        vectors: ``(M, E)`` embeddings; any float dtype. Zero or non-finite rows raise a ValueError.
        k: Neighbours per row (the paper's k, about 10). Must satisfy ``1 <= k < M``.
        ids: ``(M,)`` non-negative int id of each row (default ``arange(M)``); the table holds ids, and a candidate
            whose id equals the anchor's id is never returned (self-exclusion by id). Ids are normally unique;
            rows sharing the anchor's id are all dropped.
        index: ``"flat"`` exact search (``IndexFlatIP``) or ``"hnsw"`` approximate search (``IndexHNSWFlat``).
        exclude: Optional ``exclude(anchor_rows (Q,), candidate_rows (Q, C)) -> (Q, C) bool`` (True = drop), on
            row indices, not ids; see :func:`same_user_exclusion`, :func:`leakage_exclusion`.
        allow_missing: When some row has fewer than ``k`` valid neighbours among all M rows: False raises a
            ValueError naming how many rows lack neighbours; True pads their tail with ``-1``.
        search_margin: Candidates fetched beyond ``k`` on the first pass, so that self and a few excluded rows do
            not force a deeper pass.
        batch_size: Anchors per first-pass faiss call (memory ~ ``batch_size * (k + search_margin)``).
        hnsw_m: HNSW graph degree ``M`` (``index="hnsw"`` only).
        hnsw_ef_search: HNSW search beam width; faiss uses at least the search depth.
        hnsw_ef_construction: HNSW build beam width.
        threads: faiss OpenMP threads for this call (restored afterwards); None keeps faiss's setting.
        progress: Show progress bars (HNSW build, search batches).

    Returns:
        ``(M, K)`` int32 neighbour ids, best first; ``-1`` only with ``allow_missing=True``.

    Raises:
        ValueError: Bad shapes or ``k``, a zero/non-finite row, or (without ``allow_missing``) rows with fewer than
            ``k`` valid neighbours.
    """
    normed = normalise_rows(vectors)  # (M, E)
    num_rows = len(normed)
    if not 1 <= k < num_rows:
        raise ValueError(f"k must satisfy 1 <= k < M (self is excluded), got k={k} with M={num_rows} rows")
    if batch_size < 1 or search_margin < 0:
        raise ValueError(f"batch_size must be >= 1 and search_margin >= 0, got {batch_size}, {search_margin}")
    row_ids = _check_ids(ids, num_rows)
    with faiss_threads(threads):
        faiss_index = _build_index(normed, index, hnsw_m, hnsw_ef_construction, hnsw_ef_search, progress)
        search = _PoolSearch(normed, row_ids, faiss_index, index, k, exclude)
        # At least k + 1 candidates: the anchor itself is usually among the first.
        table = search.run(np.arange(num_rows), k + max(1, search_margin), batch_size, progress)
    lacking = np.flatnonzero(table[:, -1] < 0)
    if len(lacking) and not allow_missing:
        row = int(lacking[0])
        raise ValueError(
            f"{len(lacking)} of {num_rows} anchor row(s) have fewer than k={k} valid neighbours among "
            f"all rows (first: row {row}, {int((table[row] >= 0).sum())} found); lower k, loosen the "
            "exclusion, or pass allow_missing=True to pad with -1"
        )
    return table.astype(np.int32)


def ann_recall(
    vectors: np.ndarray,
    k: int,
    *,
    sample: int = 2000,
    seed: int = 0,
    table: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    exclude: Exclusion | None = None,
    hnsw_m: int = 32,
    hnsw_ef_search: int = 128,
    hnsw_ef_construction: int = 200,
    threads: int | None = None,
    progress: bool = False,
) -> float:
    """Recall@k of HNSW neighbours against exact flat search, on a random sample of anchors.

    Recall is ``|approx ∩ exact| / |exact|`` summed over the sampled anchors, with the same id-based self-exclusion
    and ``exclude`` as :func:`nearest_neighbours`.

    Args:
        vectors: ``(M, E)`` embeddings.
        k: Neighbours per row.
        sample: Anchors to check (all rows if M is smaller).
        seed: Seed of the anchor sample.
        table: ``(M, K)`` neighbour ids already built with ``index="hnsw"`` (the table to report on); when None,
            an HNSW index is built here with the ``hnsw_*`` settings.
        ids: Row ids, as in :func:`nearest_neighbours`.
        exclude: Exclusion, as in :func:`nearest_neighbours`.
        hnsw_m: HNSW graph degree.
        hnsw_ef_search: HNSW search beam width.
        hnsw_ef_construction: HNSW build beam width.
        threads: faiss OpenMP threads for this call.
        progress: Show progress bars.

    Returns:
        Recall in ``[0, 1]`` (1.0 if no sampled anchor has any valid exact neighbour).
    """
    normed = normalise_rows(vectors)  # (M, E)
    num_rows = len(normed)
    if not 1 <= k < num_rows:
        raise ValueError(f"k must satisfy 1 <= k < M (self is excluded), got k={k} with M={num_rows} rows")
    row_ids = _check_ids(ids, num_rows)
    rng = np.random.default_rng(seed)
    anchors = np.sort(rng.choice(num_rows, size=min(sample, num_rows), replace=False))  # (S,)
    first_depth = k + DEFAULT_SEARCH_MARGIN
    with faiss_threads(threads):
        exact_index = _build_index(normed, "flat", hnsw_m, hnsw_ef_construction, hnsw_ef_search, progress)
        exact = _PoolSearch(normed, row_ids, exact_index, "flat", k, exclude).run(anchors, first_depth, 4096, progress)
        del exact_index
        if table is None:
            hnsw = _build_index(normed, "hnsw", hnsw_m, hnsw_ef_construction, hnsw_ef_search, progress)
            approx = _PoolSearch(normed, row_ids, hnsw, "hnsw", k, exclude).run(anchors, first_depth, 4096, progress)
        else:
            if table.shape != (num_rows, k):
                raise ValueError(f"table must have shape ({num_rows}, {k}), got {table.shape}")
            approx = np.asarray(table, dtype=np.int64)[anchors]  # (S, K)
    valid = exact >= 0  # (S, K)
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=1) & valid  # (S, K) exact neighbours recalled
    total = int(valid.sum())
    return float(hits.sum() / total) if total else 1.0


def same_user_exclusion(user_of_row: np.ndarray) -> Exclusion:
    """Drop candidates of the anchor's own user (docs/method.md#deviations, D17).

    NOTE: the released code keeps other prefixes of the same user as neighbours; this exclusion is an option.

    Args:
        user_of_row: ``(M,)`` user of each row (e.g. ``prefix_user``).
    """
    user_of_row = np.asarray(user_of_row)

    def exclude(anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return user_of_row[candidates] == user_of_row[anchors][:, None]  # (Q, C)

    return exclude


def same_user_share(pools: np.ndarray, users: np.ndarray, positions: np.ndarray,
                    ks: tuple[int, ...] = (10,)) -> dict[str, dict[str, float]]:
    """How much of each prefix's user pool is its own user (:func:`same_user_exclusion`'s rule): per cut-off k (and
    the whole pool), the share of the (P, K) ``pools`` entries that are the anchor user's other prefixes, the share
    that are its *later* prefixes (they hold the anchor's own target item), and the share of anchors with at least
    one of those. ``users`` and ``positions``: (P,) each prefix's user and flat target position. Entries < 0 (no
    neighbour) count as others."""
    same_user = same_user_exclusion(users)
    anchors = np.arange(len(pools))
    out = {}
    for k in sorted({*(k for k in ks if k < pools.shape[1]), pools.shape[1]}):
        table = pools[:, :k]
        valid = table >= 0
        rows = np.where(valid, table, 0)
        same = valid & same_user(anchors, rows)  # (P, k)
        later = same & (positions[rows] > positions[:, None])
        out[f"top{k}"] = {"same_user": round(float(same.mean()), 4), "holding_target": round(float(later.mean()), 4),
                          "anchors_with_one_holding_target": round(float(later.any(1).mean()), 4)}
    return out


def leakage_exclusion(
    items: np.ndarray,
    offsets: np.ndarray,
    prefix_user: np.ndarray,
    prefix_end: np.ndarray,
    *,
    anchor_target: bool = False,
) -> Exclusion:
    """Drop candidate prefixes that contain the anchor user's validation or test item (docs/method.md#deviations, D18).

    Row ``r`` is the prefix ``items[offsets[prefix_user[r]] : prefix_end[r]]``. User ``u``'s validation item is
    ``items[offsets[u + 1] - 2]`` and its test item ``items[offsets[u + 1] - 1]``. A candidate counts as containing
    an item wherever it occurs in the candidate's prefix, whichever user the candidate belongs to.

    NOTE: the released code applies no such filter; with it, no neighbour's sequence reveals an evaluation target.

    Vectorised: the first position of every (user, item) pair is stored under the sorted key
    ``user * (N + 1) + item``; a candidate contains item ``x`` iff ``first_pos(candidate user, x) < prefix_end``.

    Args:
        items: ``(T,)`` flat item array (:class:`~sracl_lightning.datasets.sequences.Sequences`).
        offsets: ``(U + 1,)`` user offsets.
        prefix_user: ``(M,)`` user of each row.
        prefix_end: ``(M,)`` flat end position (exclusive) of each row's prefix, in ``offsets[u] + 1 .. offsets[u+1]``.
        anchor_target: Also drop candidates containing the anchor's own target item ``items[prefix_end[anchor]]``
            (when the anchor prefix is not the whole sequence).
    """
    items = np.asarray(items, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    prefix_user = np.asarray(prefix_user, dtype=np.int64)
    prefix_end = np.asarray(prefix_end, dtype=np.int64)
    num_users = len(offsets) - 1
    if prefix_user.shape != prefix_end.shape or prefix_user.ndim != 1:
        raise ValueError(f"prefix_user and prefix_end must be (M,) arrays, got {prefix_user.shape}, {prefix_end.shape}")
    if len(prefix_user) and (prefix_user.min() < 0 or prefix_user.max() >= num_users):
        raise ValueError(f"prefix_user must lie in 0..{num_users - 1}")
    if np.any(prefix_end <= offsets[prefix_user]) or np.any(prefix_end > offsets[prefix_user + 1]):
        raise ValueError("each prefix_end must lie in offsets[u] + 1 .. offsets[u + 1] of its user u")
    if np.any(np.diff(offsets) < 2):
        raise ValueError("every user needs at least 2 items (a validation and a test item)")

    stride = int(items.max()) + 1 if len(items) else 1
    pos_user = np.repeat(np.arange(num_users, dtype=np.int64), np.diff(offsets))  # (T,)
    keys = pos_user * stride + items  # (T,)
    order = np.argsort(keys, kind="stable")  # equal keys keep position order: the first of a run is the earliest
    sorted_keys = keys[order]
    first = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    unique_keys, first_pos = sorted_keys[first], order[first]  # (P,) each
    held_out = items[np.stack(held_out_positions(offsets), axis=1)]  # (U, 2): validation, test item
    # The anchor's own target, or -1 (an item id that never occurs) when the prefix is the whole sequence.
    has_target = prefix_end < offsets[prefix_user + 1]
    target = np.where(has_target, items[np.minimum(prefix_end, len(items) - 1)], -1)  # (M,)

    def contains(cand_user: np.ndarray, cand_end: np.ndarray, item: np.ndarray) -> np.ndarray:
        key = cand_user * stride + item  # (Q, C)
        idx = np.minimum(np.searchsorted(unique_keys, key), len(unique_keys) - 1)
        return (unique_keys[idx] == key) & (first_pos[idx] < cand_end) & (item >= 0)

    def exclude(anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        cand_user, cand_end = prefix_user[candidates], prefix_end[candidates]  # (Q, C)
        anchor_user = prefix_user[anchors]  # (Q,)
        drop = contains(cand_user, cand_end, held_out[anchor_user, 0][:, None])
        drop |= contains(cand_user, cand_end, held_out[anchor_user, 1][:, None])
        if anchor_target:
            drop |= contains(cand_user, cand_end, target[anchors][:, None])
        return drop

    return exclude


def combine_exclusions(*fns: Exclusion | None) -> Exclusion:
    """One exclusion dropping a candidate when any of ``fns`` drops it (None entries are skipped)."""
    active = [fn for fn in fns if fn is not None]

    def exclude(anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        drop = np.zeros(candidates.shape, dtype=bool)  # (Q, C)
        for fn in active:
            drop |= np.asarray(fn(anchors, candidates), dtype=bool)
        return drop

    return exclude
