"""Full-ranking metrics against hand-computed ranks, the tie rule, masking, and batch-size invariance."""

from __future__ import annotations

import math

import pytest
import torch

from sracl_lightning.models.metrics import RankingMetrics, target_ranks

pytestmark = pytest.mark.unit


def test_ranks_by_hand() -> None:
    scores = torch.tensor([
        [0.1, 0.9, 0.5, 0.3],  # target col 2 (0.5): only 0.9 is higher -> rank 2
        [0.4, 0.4, 0.4, 0.1],  # target col 0 ties with cols 1 and 2 -> both count above -> rank 3
        [0.0, 0.0, 0.0, 0.0],  # constant scores -> worst rank N = 4, never 1
        [5.0, 1.0, 2.0, 3.0],  # target col 0 is the best -> rank 1
    ])
    ranks = target_ranks(scores, torch.tensor([2, 0, 3, 0]))
    assert ranks.tolist() == [2, 3, 4, 1]


def test_metric_values_by_hand() -> None:
    metric = RankingMetrics(ks=(1, 3))
    metric.update_ranks(torch.tensor([1, 2, 3, 10]))
    out = metric.compute()
    assert out["count"] == 4
    assert out["hr@1"].item() == pytest.approx(0.25)
    assert out["hr@3"].item() == pytest.approx(0.75)
    assert out["ndcg@3"].item() == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4)
    assert out["mrr@3"].item() == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert out["mrr@1"].item() == pytest.approx(0.25)


def test_exclude_seen_items_but_never_the_target() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.5, 0.7, 0.1]])
    target = torch.tensor([2])
    assert target_ranks(scores, target).item() == 4
    # Exclude items 0 and 3 (seen) and the target itself (repeat purchase): only item 1 remains above.
    assert target_ranks(scores, target, exclude=torch.tensor([[0, 3, 2, -1]])).item() == 2


def test_batch_size_invariance() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(103, 57, generator=generator).round(decimals=1)  # rounding creates ties
    target = torch.randint(0, 57, (103,), generator=generator)
    results = []
    for batch_size in (1, 7, 64, 103):
        metric = RankingMetrics()
        for start in range(0, 103, batch_size):
            metric.update(scores[start:start + batch_size], target[start:start + batch_size])
        results.append(metric.compute())
    for other in results[1:]:
        for key in results[0]:
            torch.testing.assert_close(other[key], results[0][key])


def test_sum_states_merge_like_two_processes() -> None:
    """Two metric instances (as two DDP ranks) merged by summing states equal one instance over all users."""
    ranks = torch.arange(1, 41)
    whole, first, second = RankingMetrics(), RankingMetrics(), RankingMetrics()
    whole.update_ranks(ranks)
    first.update_ranks(ranks[:21])
    second.update_ranks(ranks[21:])
    merged_sums, merged_count = first.sums + second.sums, first.count + second.count  # what dist "sum" does
    torch.testing.assert_close(merged_sums, whole.sums)
    assert merged_count == whole.count == 40


def test_rejects_bad_cutoffs() -> None:
    with pytest.raises(ValueError):
        RankingMetrics(ks=(0, 10))


def test_kept_ranks_are_per_user_sorted_and_required_users():
    from sracl_lightning.models.metrics import RankingMetrics, per_user_values

    metric = RankingMetrics((1, 10), keep_ranks=True)
    metric.update_ranks(torch.tensor([3, 1]), torch.tensor([5, 2]))
    metric.update_ranks(torch.tensor([12]), torch.tensor([0]))
    users, ranks = metric.user_ranks()
    assert users.tolist() == [0, 2, 5] and ranks.tolist() == [12, 1, 3]
    values = per_user_values(ranks, (10,))
    assert values["hr@10"].tolist() == [0.0, 1.0, 1.0]
    assert values["ndcg@10"][2].item() == pytest.approx(0.5) and values["mrr@10"][2].item() == pytest.approx(1 / 3)
    assert metric.compute()["hr@10"].item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="needs the users"):
        metric.update_ranks(torch.tensor([1]))
    with pytest.raises(RuntimeError, match="keeps no ranks"):
        RankingMetrics((10,)).user_ranks()


def test_update_ranks_counts_as_an_update_and_refreshes_compute() -> None:
    import warnings

    metric = RankingMetrics(ks=(1,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchmetrics warns when compute() follows no counted update
        metric.update_ranks(torch.tensor([1, 3]))
        first = metric.compute()
        metric.update_ranks(torch.tensor([1, 1]))
        second = metric.compute()  # not the cached first value
    assert first["hr@1"].item() == 0.5 and first["count"].item() == 2
    assert second["hr@1"].item() == 0.75 and second["count"].item() == 4
