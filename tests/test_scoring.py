"""The one scoring rule: fp32 scores of every item, excluded columns at -inf, the kept column never excluded."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from sracl_lightning.models.metrics import target_ranks
from sracl_lightning.models.scoring import rank_targets, score_items

pytestmark = pytest.mark.unit

H = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # (B=2, D=2)
ITEMS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (N=3, D): items 1, 2, 3


def test_scores_by_hand() -> None:
    assert score_items(H, ITEMS).tolist() == [[1.0, 2.0, 3.0], [0.0, -1.0, -1.0]]


def test_excluded_columns_are_minus_inf_except_the_kept_one() -> None:
    exclude = torch.tensor([[2, 0, -1], [1, -1, -1]])  # (B, H): row 0 saw items 3 and 1, row 1 item 2
    scores = score_items(H, ITEMS, exclude)
    assert scores.tolist() == [[-math.inf, 2.0, -math.inf], [0.0, -math.inf, -1.0]]
    kept = score_items(H, ITEMS, exclude, keep=torch.tensor([2, 0]))  # row 0's target is item 3, seen before
    assert kept.tolist() == [[-math.inf, 2.0, 3.0], [0.0, -math.inf, -1.0]]
    # Ranking the masked scores is ranking the raw ones with the same exclusions.
    target = torch.tensor([1, 2])
    raw = score_items(H, ITEMS)
    assert torch.equal(target_ranks(score_items(H, ITEMS, exclude, keep=target), target),
                       target_ranks(raw, target, exclude))


def test_float32_from_bf16() -> None:
    scores = score_items(H.bfloat16(), ITEMS.bfloat16())
    assert scores.dtype == torch.float32


def test_ranks_by_hand() -> None:
    # Row 0 scores [1, 2, 3]: target item 2 (column 1) has item 3 above it -> rank 2; row 1 scores [0, -1, -1]:
    # target column 2 ties with column 1, which counts as above it -> rank 3 (pessimistic).
    score = partial(score_items, item_embeddings=ITEMS)
    assert rank_targets(H, torch.tensor([1, 2]), lambda h, e, k, out: score(h, exclude=e, keep=k, out=out)).tolist() \
        == [2, 3]


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_chunked_ranks_equal_the_one_matrix_rule(chunk_size) -> None:
    generator = torch.Generator().manual_seed(0)
    b, n, d = 10, 40, 4
    h = torch.randint(-2, 3, (b, d), generator=generator).float()  # small integers: many exact ties
    items = torch.randint(-2, 3, (n, d), generator=generator).float()
    target = torch.randint(0, n, (b,), generator=generator)
    exclude = torch.randint(-1, n, (b, 6), generator=generator)  # repeats, -1 padding, sometimes the target
    exclude[0, :2] = target[0]

    def score(h_chunk, exclude_chunk, keep, out):
        return score_items(h_chunk, items, exclude_chunk, keep, out=out)

    for excluded in (None, exclude):
        expected = target_ranks(score_items(h, items), target, excluded)
        assert torch.equal(rank_targets(h, target, score, excluded, chunk_size=chunk_size), expected)
