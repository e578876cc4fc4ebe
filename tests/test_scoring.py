"""The one scoring rule: fp32 scores of every item, excluded columns at -inf, the kept column never excluded."""

from __future__ import annotations

import math

import pytest
import torch

from sracl_lightning.models.metrics import target_ranks
from sracl_lightning.models.scoring import score_items

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
