"""Item vectors from co-occurrence, the fallback for datasets without item text (Office, the paper's Yelp).

Items that appear within ``window`` steps of each other in a user's *training* part (``items[:-2]``, so the
validation and test targets never contribute) are counted as co-occurring; the symmetric counts become a
positive-PMI matrix, and a rank-``dim`` truncated SVD of it gives ``U·sqrt(S)`` as item vectors (the classic
word2vec-as-matrix-factorisation recipe). They are collaborative, not semantic.

NOTE: the paper has no fallback for text-less items (its Office and Yelp had text). Results built on these
vectors must say so; the semantic stage records ``item_source: cooccurrence`` in every manifest.

Dimension letters: T interactions, N items, E output width.
"""

from __future__ import annotations

import numpy as np
import torch

from sracl_lightning.datasets.samples import training_span


def cooccurrence_item_embeddings(items: np.ndarray, offsets: np.ndarray, num_items: int, dim: int = 64,
                                 window: int = 3, seed: int = 0) -> np.ndarray:
    """``(N + 1, dim)`` float32 PPMI-SVD item vectors; row 0 (padding) is zeros.

    Args:
        items: ``(T,)`` flat item ids 1..N, user after user.
        offsets: ``(U + 1,)`` user boundaries in ``items``.
        num_items: N.
        dim: Output width E (at most N - 1).
        window: Items at most this many steps apart co-occur.
        seed: Seed of the randomised SVD and of the tiny random vectors given to items with no co-occurrence.
    """
    if not 1 <= dim < num_items:
        raise ValueError(f"dim must be in 1..{num_items - 1}, got {dim}")
    items = np.asarray(items, dtype=np.int64)
    starts, ends = training_span(offsets)  # (U,) each: training part of each user, [start, end - 2)
    user_of = np.repeat(np.arange(len(starts)), np.diff(offsets))  # (T,)
    train_end = ends[user_of]  # (T,)
    heads, tails = [], []
    for distance in range(1, window + 1):
        t = np.arange(len(items) - distance)
        ok = (t + distance < train_end[t]) & (user_of[t] == user_of[t + distance])
        heads.append(items[t[ok]])
        tails.append(items[t[ok] + distance])
    a, b = np.concatenate(heads), np.concatenate(tails)
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])  # symmetric pairs
    keys, counts = np.unique(rows * (num_items + 1) + cols, return_counts=True)
    rows, cols = keys // (num_items + 1), keys % (num_items + 1)

    # Positive PMI: log(c_ij * total / (c_i * c_j)), negatives clipped to 0.
    counts = counts.astype(np.float64)
    marginal = np.bincount(rows, weights=counts, minlength=num_items + 1)  # (N + 1,)
    pmi = np.log(counts * counts.sum() / (marginal[rows] * marginal[cols]))
    keep = pmi > 0
    matrix = torch.sparse_coo_tensor(np.stack([rows[keep], cols[keep]]), pmi[keep].astype(np.float32),
                                     (num_items + 1, num_items + 1), check_invariants=True).coalesce()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=dim, niter=4)  # (N + 1, E), (E,)
    finally:
        torch.random.set_rng_state(generator_state)
    vectors = (u * s.sqrt()).numpy().astype(np.float32)  # (N + 1, E)
    vectors[0] = 0.0
    # Items that never co-occur in training (e.g. seen only as validation/test targets) get a distinct tiny
    # random vector, so retrieval has something to normalise and they match nothing in particular.
    empty = np.flatnonzero(np.abs(vectors[1:]).sum(1) == 0) + 1
    if len(empty):
        rng = np.random.default_rng(seed)
        vectors[empty] = 1e-6 * rng.standard_normal((len(empty), dim)).astype(np.float32)
    return vectors
