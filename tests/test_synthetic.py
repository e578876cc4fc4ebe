"""Tests of the synthetic Amazon-2014-style dataset generator in ``data/synthetic.py``."""

import ast
import gzip
import importlib.util
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SYNTHETIC_PATH = Path(__file__).resolve().parents[1] / "data" / "synthetic.py"
NUM_USERS = 800
NUM_ITEMS = 800
REVIEW_TYPES = {
    "reviewerID": str,
    "asin": str,
    "reviewerName": str,
    "helpful": list,
    "reviewText": str,
    "overall": float,
    "summary": str,
    "unixReviewTime": int,
    "reviewTime": str,
}
META_KEYS = {"asin", "title", "brand", "categories", "price", "description", "salesRank", "related"}


def _load_module() -> ModuleType:
    # There is no ``data`` package, so the generator is loaded by path exactly as other code is expected to.
    spec = importlib.util.spec_from_file_location("synthetic_under_test", SYNTHETIC_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _load_module()


def _read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Generates one small dataset shared by the read-only tests."""
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), num_users=NUM_USERS, num_items=NUM_ITEMS, seed=0)


@pytest.fixture(scope="module")
def reviews(generated: dict) -> list[dict]:
    return [json.loads(line) for line in _read_lines(generated["reviews_path"])]


@pytest.fixture(scope="module")
def meta_lines(generated: dict) -> list[str]:
    return _read_lines(generated["meta_path"])


def _dedupe(reviews: list[dict]) -> list[dict]:
    """Drops exact (reviewerID, asin, unixReviewTime) duplicates, keeping the first occurrence in file order."""
    seen: set[tuple[str, str, int]] = set()
    unique = []
    for review in reviews:
        key = (review["reviewerID"], review["asin"], review["unixReviewTime"])
        if key not in seen:
            seen.add(key)
            unique.append(review)
    return unique


@pytest.mark.unit
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = synthetic.generate(tmp_path / "a", num_users=NUM_USERS, num_items=NUM_ITEMS, seed=7)
    second = synthetic.generate(tmp_path / "b", num_users=NUM_USERS, num_items=NUM_ITEMS, seed=7)
    other = synthetic.generate(tmp_path / "c", num_users=NUM_USERS, num_items=NUM_ITEMS, seed=8)
    for key in ("reviews_path", "meta_path"):
        assert first[key].read_bytes() == second[key].read_bytes()
        assert first[key].read_bytes() != other[key].read_bytes()
    assert {k: v for k, v in first.items() if not k.endswith("_path")} == {
        k: v for k, v in second.items() if not k.endswith("_path")
    }
    # Atomic writes must not leave temporary files behind.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [synthetic.META_FILENAME, synthetic.REVIEWS_FILENAME]
    )


@pytest.mark.unit
def test_returned_counts_match_files(generated: dict, reviews: list[dict], meta_lines: list[str]) -> None:
    unique = _dedupe(reviews)
    assert generated["users"] == NUM_USERS == len({r["reviewerID"] for r in reviews})
    assert generated["items"] == NUM_ITEMS == len(meta_lines) == len({r["asin"] for r in reviews})
    assert generated["interactions"] == len(unique)
    assert generated["rows"] == len(reviews) == generated["interactions"] + generated["duplicates"]
    # Histories are short by design: a mean of 7 drawn, plus the 5-core repair's insertions.
    assert 6.5 <= generated["interactions"] / NUM_USERS <= 10


@pytest.mark.unit
def test_review_lines_have_2014_format(reviews: list[dict]) -> None:
    for review in reviews:
        assert set(review) == set(REVIEW_TYPES)
        for key, expected_type in REVIEW_TYPES.items():
            assert type(review[key]) is expected_type, key
        assert review["reviewerID"].startswith("A") and len(review["reviewerID"]) == 14
        assert review["asin"].startswith("B00") and len(review["asin"]) == 10
        helpful_yes, helpful_total = review["helpful"]
        assert isinstance(helpful_yes, int) and isinstance(helpful_total, int) and 0 <= helpful_yes <= helpful_total
        assert 1.0 <= review["overall"] <= 5.0
        assert review["unixReviewTime"] % 86400 == 0
        month, day_year = review["reviewTime"].split(" ", 1)
        day, year = day_year.split(", ")
        assert len(month) == 2 and 1 <= int(month) <= 12 and 1 <= int(day) <= 31 and 2010 <= int(year) <= 2014
        assert review["reviewText"] and review["summary"]


@pytest.mark.unit
def test_reviews_grouped_by_asin_not_by_user(reviews: list[dict]) -> None:
    asins = [r["asin"] for r in reviews]
    runs = [a for i, a in enumerate(asins) if i == 0 or asins[i - 1] != a]
    assert len(runs) == len(set(asins))
    users = [r["reviewerID"] for r in reviews]
    assert sum(1 for i in range(1, len(users)) if users[i] != users[i - 1]) > len(set(users))


@pytest.mark.unit
def test_same_day_ties_exist(reviews: list[dict]) -> None:
    per_user_days = defaultdict(list)
    for review in _dedupe(reviews):
        per_user_days[review["reviewerID"]].append(review["unixReviewTime"])
    ties = sum(len(days) - len(set(days)) for days in per_user_days.values())
    assert ties > 0


@pytest.mark.unit
def test_meta_lines_are_python_literals(meta_lines: list[str], reviews: list[dict]) -> None:
    items = [ast.literal_eval(line) for line in meta_lines]
    for line in meta_lines[:20]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    asins = {r["asin"] for r in reviews}
    for item in items:
        assert set(item) <= META_KEYS
        assert {"asin", "categories", "salesRank", "related"} <= set(item)
        assert item["asin"] in asins
        assert isinstance(item["categories"], list) and item["categories"][0][0] == "Beauty"
        assert len(item["categories"][0]) == 4
        assert set(item["salesRank"]) == {"Beauty"} and isinstance(item["salesRank"]["Beauty"], int)
        assert all(a in asins and a != item["asin"] for a in item["related"]["also_bought"])
        if "price" in item:
            assert isinstance(item["price"], float) and item["price"] > 0
        if "title" in item and "brand" in item:
            assert item["title"].startswith(item["brand"])


@pytest.mark.unit
def test_meta_missing_field_fractions(meta_lines: list[str]) -> None:
    items = [ast.literal_eval(line) for line in meta_lines]
    expected = {"title": (0.005, 0.05), "brand": (0.05, 0.15), "price": (0.10, 0.20), "description": (0.05, 0.15)}
    for field, (low, high) in expected.items():
        missing = sum(field not in item for item in items) / len(items)
        assert low <= missing <= high, (field, missing)


@pytest.mark.unit
def test_catalog_has_category_and_brand_structure(meta_lines: list[str]) -> None:
    items = [ast.literal_eval(line) for line in meta_lines]
    categories = Counter(item["categories"][0][1] for item in items)
    assert len(categories) >= 6
    categories_per_brand = defaultdict(set)
    for item in items:
        if "brand" in item:
            categories_per_brand[item["brand"]].add(item["categories"][0][1])
    # Brands specialise in one or two top-level categories.
    assert len(categories_per_brand) >= 15
    assert max(len(c) for c in categories_per_brand.values()) <= 2


@pytest.mark.unit
def test_five_core_after_dedupe(reviews: list[dict]) -> None:
    unique = _dedupe(reviews)
    user_counts = Counter(r["reviewerID"] for r in unique)
    item_counts = Counter(r["asin"] for r in unique)
    assert min(user_counts.values()) >= 5
    assert min(item_counts.values()) >= 5
    # Users never review the same item twice, apart from the exact duplicate rows.
    assert len({(r["reviewerID"], r["asin"]) for r in unique}) == len(unique)


@pytest.mark.unit
def test_exact_duplicates_exist(generated: dict, reviews: list[dict]) -> None:
    keys = Counter((r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in reviews)
    duplicates = sum(count - 1 for count in keys.values())
    assert duplicates == generated["duplicates"] >= 1
    assert duplicates / len(reviews) < 0.02


# The labels that tell a family's variants apart, longest first (so "Value Pack of 3" is cut before "Pack of 3").
_PACK_LABELS = sorted((pack for pack in synthetic._PACKS if pack), key=len, reverse=True)
_SIZE_LABELS = sorted({size for category in synthetic.CATALOG.values() for size in category.sizes if size}
                      | {size for size in synthetic._COUNT_SIZES if size}, key=len, reverse=True)


def _family_of_title(title: str) -> str:
    """The product a variant belongs to: its title without the trailing pack label and size."""
    for pack in _PACK_LABELS:
        title = title.removesuffix(" " + pack)
    for size in _SIZE_LABELS:
        if title.endswith(" " + size):
            return title.removesuffix(" " + size)
    return title


@pytest.mark.unit
def test_items_come_in_families_of_interchangeable_variants(meta_lines: list[str]) -> None:
    items = [ast.literal_eval(line) for line in meta_lines]
    families = Counter(_family_of_title(item["title"]) for item in items if "title" in item)
    sizes = sorted(families.values())
    # 6 to 10 variants per family (a family missing a few titles, or the catalog's last one, may look smaller).
    assert sizes[-1] <= synthetic.FAMILY_SIZES[1]
    assert sum(size >= synthetic.FAMILY_SIZES[0] for size in sizes) >= 0.8 * len(sizes)
    assert len(families) >= NUM_ITEMS / synthetic.FAMILY_SIZES[1]


@pytest.mark.integration
def test_an_items_text_neighbours_are_mostly_its_family(semantic_data_root: str) -> None:
    # The session's 301-user fixture, its items embedded by the real MiniLM (profile minilm_nollm, pools of 10).
    (directory,) = Path(semantic_data_root).glob("synthetic-*")
    rows = [json.loads(line) for line in (directory / "item_text.jsonl").read_text().splitlines()]
    family = {row["item"]: _family_of_title(row["title"]) for row in rows if row.get("title")}
    neighbours = np.load(directory / "semantic" / "minilm_nollm" / "item_neighbours.npy")  # (N + 1, 10), row 0 pad
    pairs = [(item, int(other)) for item in family for other in neighbours[item] if int(other) in family]
    share = sum(family[item] == family[other] for item, other in pairs) / len(pairs)
    assert len(pairs) >= 0.9 * 10 * len(family) and share >= 0.6, share


@pytest.mark.unit
def test_next_item_depends_on_the_family_more_than_on_the_variant(reviews: list[dict], meta_lines: list[str]) -> None:
    # Chronological order: stable sort by time keeps file order for same-day ties, as the real pipeline does.
    events = defaultdict(list)
    for order, review in enumerate(_dedupe(reviews)):
        events[review["reviewerID"]].append((review["unixReviewTime"], order, review["asin"]))
    sequences = [[asin for _, _, asin in sorted(user_events)] for user_events in events.values()]
    family = {item["asin"]: _family_of_title(item["title"]) if "title" in item else item["asin"]
              for item in map(ast.literal_eval, meta_lines)}

    # Successors counted per last item, and per last item's family; the held-out last item is never counted.
    by_item: dict[str, Counter] = defaultdict(Counter)
    by_family: dict[str, Counter] = defaultdict(Counter)
    popularity: Counter = Counter()
    for sequence in sequences:
        train = sequence[:-1]
        popularity.update(train)
        for current, following in itertools.pairwise(train):
            by_item[current][following] += 1
            by_family[family[current]][following] += 1
    top_popular = [asin for asin, _ in popularity.most_common(10)]

    def top10(counts: Counter) -> list[str]:
        ranked = [asin for asin, _ in counts.most_common(10)]
        return ranked + [asin for asin in top_popular if asin not in ranked][: 10 - len(ranked)]

    hits = Counter()
    for sequence in sequences:
        last, target = sequence[-2], sequence[-1]
        hits["item"] += target in top10(by_item[last])
        hits["family"] += target in top10(by_family[family[last]])
        hits["popular"] += target in top_popular
    rate = {name: count / len(sequences) for name, count in hits.items()}
    # Sequential structure: the last item predicts the next one far better than popularity does, and the last
    # item's family predicts it better still (pooling the variants' successors), because the next step depends on
    # the family, not on the variant.
    assert rate["item"] >= 2 * rate["popular"], rate
    assert rate["family"] >= 1.3 * rate["item"] and rate["family"] >= 0.3, rate


@pytest.mark.unit
def test_rejects_sizes_too_small_for_five_core(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synthetic.generate(tmp_path, num_users=3, num_items=120)
    assert not (tmp_path / synthetic.REVIEWS_FILENAME).exists()


@pytest.mark.integration
def test_cli_writes_files_and_reports_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic.main(["--out", str(tmp_path / "cli"), "--users", "60", "--items", "40", "--seed", "3"])
    output = capsys.readouterr().out
    assert str(tmp_path / "cli" / synthetic.REVIEWS_FILENAME) in output
    assert "users=60" in output and "items=40" in output and "duplicates=" in output
    assert (tmp_path / "cli" / synthetic.META_FILENAME).is_file()
