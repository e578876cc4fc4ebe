"""Semantic item substitution (docs/method.md#intra-user-loss): valid ids, padding kept, neighbour-only
replacements, rate, seeding."""

from __future__ import annotations

import pytest
import torch

from sracl_lightning.methods.substitution import check_item_neighbours, substitute_items

pytestmark = pytest.mark.unit

N, K = 30, 4


def neighbour_table(n: int = N, k: int = K, seed: int = 0) -> torch.Tensor:
    """(N + 1, K) random neighbours excluding self, row 0 = -1; item 1's row holds the highest ids."""
    g = torch.Generator().manual_seed(seed)
    table = torch.full((n + 1, k), -1, dtype=torch.int64)
    for item in range(1, n + 1):
        others = torch.tensor([v for v in range(1, n + 1) if v != item])
        table[item] = others[torch.randperm(n - 1, generator=g)[:k]]
    table[1] = torch.arange(n, n - k, -1)  # N, N-1, ...: the top of the id range
    return table


def random_windows(b: int, length: int, n: int = N, seed: int = 0) -> torch.Tensor:
    """(B, L) left-padded windows with random lengths 0..L (some rows all padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, n + 1, (b, length), generator=g)
    lengths = torch.randint(0, length + 1, (b,), generator=g)
    pad = torch.arange(length)[None, :] < (length - lengths)[:, None]  # (B, L)
    return ids.masked_fill(pad, 0)


def test_valid_ids_padding_kept_and_replacements_from_the_neighbour_row() -> None:
    table = neighbour_table()
    ids = random_windows(2000, 20)
    ids[:5, -1] = 1  # item 1 (neighbours at the top of the id range) appears for sure
    g = torch.Generator().manual_seed(1)
    high_ids_emitted = False
    for _ in range(10):
        out = substitute_items(ids, table, 0.5, generator=g)
        assert out.shape == ids.shape and out.dtype == torch.int64
        pad = ids == 0
        assert torch.equal(out[pad], ids[pad])
        assert (out[~pad] >= 1).all() and (out[~pad] <= N).all()
        changed = out != ids  # (B, L)
        rows = table[ids[changed]]  # (C, K) neighbour rows of the replaced items
        assert (rows == out[changed][:, None]).any(dim=1).all()
        high_ids_emitted |= bool((out[:5, -1] == N).any())
    assert high_ids_emitted  # item 1's neighbour N, the largest valid id, was drawn and kept in range


def test_replacement_rate_matches_probability() -> None:
    """Neighbours exclude self, so the changed fraction estimates p directly (200k real positions)."""
    table = neighbour_table()
    ids = torch.randint(1, N + 1, (10_000, 20), generator=torch.Generator().manual_seed(2))
    for p in (0.2, 0.5):
        out = substitute_items(ids, table, p, generator=torch.Generator().manual_seed(3))
        rate = (out != ids).float().mean().item()
        assert abs(rate - p) < 0.01, (p, rate)


def test_neighbour_choice_is_uniform() -> None:
    table = neighbour_table()
    ids = torch.full((50_000,), 7, dtype=torch.int64)
    out = substitute_items(ids, table, 1.0, generator=torch.Generator().manual_seed(4))
    counts = torch.stack([(out == v).sum() for v in table[7]]).float() / len(ids)
    torch.testing.assert_close(counts, torch.full((K,), 1 / K), atol=0.01, rtol=0)


def test_probability_zero_and_one() -> None:
    table = neighbour_table()
    ids = random_windows(500, 20)
    assert torch.equal(substitute_items(ids, table, 0.0), ids)
    out = substitute_items(ids, table, 1.0)
    real = ids != 0
    assert (out[real] != ids[real]).all()
    assert torch.equal(out[~real], ids[~real])


def test_all_padding_rows_and_empty_batch() -> None:
    table = neighbour_table()
    ids = torch.zeros(3, 20, dtype=torch.int64)
    ids[1, -2:] = torch.tensor([4, 5])
    out = substitute_items(ids, table, 1.0)
    assert torch.equal(out[[0, 2]], ids[[0, 2]])
    assert (out[1, -2:] != ids[1, -2:]).all()
    assert substitute_items(torch.zeros(0, 20, dtype=torch.int64), table).shape == (0, 20)


def test_seeded_generator_is_reproducible() -> None:
    table = neighbour_table()
    ids = random_windows(64, 20)
    first = substitute_items(ids, table, generator=torch.Generator().manual_seed(9))
    again = substitute_items(ids, table, generator=torch.Generator().manual_seed(9))
    other = substitute_items(ids, table, generator=torch.Generator().manual_seed(10))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_invalid_tables_and_arguments_raise() -> None:
    table = neighbour_table()
    broken = table.clone()
    broken[3, 2] = -1  # a pool that found fewer than K neighbours
    with pytest.raises(ValueError, match="item 3"):
        check_item_neighbours(broken)
    ids = torch.full((1, 500), 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="item 3 has a neighbour id below 1"):
        substitute_items(ids, broken, 1.0, generator=torch.Generator().manual_seed(0))
    too_high = table.clone()
    too_high[2, 0] = N + 1
    with pytest.raises(ValueError, match="outside 1..30"):
        check_item_neighbours(too_high)
    with pytest.raises(ValueError, match="rows"):
        check_item_neighbours(table, num_items=N + 1)
    with pytest.raises(ValueError, match="integer"):
        check_item_neighbours(table.float())
    with pytest.raises(ValueError, match="probability"):
        substitute_items(ids, table, 1.5)
    check_item_neighbours(table, num_items=N)  # row 0 = -1 is allowed
