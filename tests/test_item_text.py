"""Tests of the item-text table: the three raw readers, the on-disk file, the statistics, and the shared tables."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sracl_lightning.datasets import catalog, item_text
from sracl_lightning.datasets.item_text import (
    ItemTextSource,
    empty_record,
    format_item_text_stats,
    item_text_stats,
    load_item_text,
    read_amazon_meta,
    read_items_jsonl,
    read_yelp_business,
    write_item_text,
)
from sracl_lightning.datasets.sequences import DataFormatError
from tests.conftest import SHARED_DATA


def _write(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` as a text file, gzipped when the name ends in ``.gz``."""
    content = "".join(f"{line}\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _raises_at(call, path: Path, line: int | None, *expected: str) -> None:
    """``call()`` raises a DataFormatError at ``path:line`` whose message holds every ``expected`` text."""
    with pytest.raises(DataFormatError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: " if line is not None else f"{path}: "), message
    assert info.value.line == line
    for text in expected:
        assert text in message, (text, message)


# ------------------------------------------------------------------------------------------------ Amazon meta

# A 2014-style metadata file: items in asin order, as the dumps list them, not in project id order.
META_OBJECTS = [
    {"asin": "A1", "title": "Rose Toner 8 oz", "brand": "Vela", "price": 12.5,
     "categories": [["Beauty", "Skin Care", "Face", "Toners"], ["Beauty", "Skin Care", "Toners"]],
     "description": "A gentle toner.", "salesRank": {"Beauty": 123},
     "related": {"also_bought": ["B2", "C3"]}, "imUrl": "http://x/y.jpg"},
    {"asin": "Z9", "title": "Not in the dataset", "categories": [["Beauty"]]},
    {"asin": "B2", "title": "  ", "brand": "", "categories": [["Beauty", "Hair Care"]]},  # blank strings: missing
    {"asin": "C3", "title": "Clay Mask \u00e9t\u00e9 \"Pro\"", "price": 30, "categories": []},
]
TOKENS = [None, "B2", "A1", "D4", "C3"]  # D4 has no metadata line


def _check_meta(records: list) -> None:
    assert len(records) == 5 and records[0] is None
    assert records[2] == {
        "item": 2, "source_id": "A1", "title": "Rose Toner 8 oz", "brand": "Vela",
        "categories": ["Beauty", "Skin Care", "Face", "Toners"],  # flattened, de-duplicated, order kept
        "price": 12.5, "description": "A gentle toner.", "extra": {"salesRank": {"Beauty": 123}},
    }
    assert records[1] == {**empty_record(1, "B2"), "categories": ["Beauty", "Hair Care"]}
    assert records[3] == empty_record(3, "D4")
    assert records[4]["title"] == 'Clay Mask \u00e9t\u00e9 "Pro"' and records[4]["price"] == 30.0
    assert records[4]["categories"] == []


@pytest.mark.unit
@pytest.mark.parametrize("style", ["json", "python"])
@pytest.mark.parametrize("name", ["meta_Toy.json", "meta_Toy.json.gz"])
def test_amazon_meta_json_and_python_literals_plain_and_gz(tmp_path: Path, style: str, name: str) -> None:
    """Strict JSON and Python-literal lines (the 2014 dumps), plain or gzipped, read to the same records."""
    dump = json.dumps if style == "json" else repr
    _check_meta(read_amazon_meta(_write(tmp_path / name, [dump(o) for o in META_OBJECTS]), TOKENS))


@pytest.mark.unit
def test_amazon_meta_mixed_styles_and_blank_lines(tmp_path: Path) -> None:
    """Styles may mix line by line; blank lines carry nothing."""
    lines = [repr(META_OBJECTS[0]), "", json.dumps(META_OBJECTS[1]), repr(META_OBJECTS[2]), "  ",
             json.dumps(META_OBJECTS[3])]
    _check_meta(read_amazon_meta(_write(tmp_path / "meta_Toy.json", lines), TOKENS))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param("{'asin': 'A1', 'title': 'cut off", ["JSON object or Python dict literal"], id="truncated-wanted"),
        pytest.param("{\"title\": 'no asin', ", ["JSON object or Python dict literal"], id="garbage"),
        pytest.param("['A1', 'a list']", ["expected an object", "list"], id="not-a-dict"),
        pytest.param("{'title': 'x'}", ["field 'asin'", "expected str", "None"], id="no-asin"),
        pytest.param("{'asin': 'A1', 'title': 5}", ["field 'title'", "string or null", "5"], id="title-int"),
        pytest.param("{'asin': 'A1', 'price': 'cheap'}", ["field 'price'", "a number", "'cheap'"], id="price-word"),
        pytest.param("{'asin': 'A1', 'categories': 'x', 'brand': ['a']}", ["field 'brand'"], id="brand-list"),
        pytest.param("{'asin': 'A1', 'categories': [[['deep']]]}", ["field 'categories'", "lists of strings"],
                     id="categories-too-deep"),
    ],
)
def test_amazon_meta_bad_line_names_file_line_and_field(tmp_path: Path, bad: str, expected: list[str]) -> None:
    """A malformed line raises DataFormatError at ``path:line`` saying what was expected."""
    lines = [repr(META_OBJECTS[1]), "", bad, repr(META_OBJECTS[0])]
    path = _write(tmp_path / "meta_Toy.json", lines)
    _raises_at(lambda: read_amazon_meta(path, TOKENS), path, 3, *expected)


@pytest.mark.unit
def test_amazon_meta_asin_twice(tmp_path: Path) -> None:
    """A wanted asin listed twice is an error naming both lines."""
    path = _write(tmp_path / "meta_Toy.json", [repr(o) for o in [*META_OBJECTS, META_OBJECTS[0]]])
    _raises_at(lambda: read_amazon_meta(path, TOKENS), path, 5, "'A1' appears again", "line 1")


@pytest.mark.unit
def test_amazon_meta_of_another_dataset(tmp_path: Path) -> None:
    """Metadata that describes none of the items is an error, not an all-missing table."""
    path = _write(tmp_path / "meta_Other.json", [repr(META_OBJECTS[1])])
    _raises_at(lambda: read_amazon_meta(path, TOKENS), path, None, "none of the 4 items")


@pytest.mark.unit
@pytest.mark.parametrize("content", ["", "\n\n"])
def test_amazon_meta_empty_or_missing(tmp_path: Path, content: str) -> None:
    """An empty file and a missing file name the path."""
    path = tmp_path / "meta_Toy.json"
    path.write_text(content, encoding="utf-8")
    _raises_at(lambda: read_amazon_meta(path, TOKENS), path, None, "empty file")
    _raises_at(lambda: read_amazon_meta(tmp_path / "nope.json", TOKENS), tmp_path / "nope.json", None,
               "file not found")


@pytest.mark.unit
def test_item_tokens_must_start_with_padding(tmp_path: Path) -> None:
    """``item_tokens`` without the padding slot (or with a repeated id) is a programming error."""
    path = _write(tmp_path / "meta_Toy.json", [repr(o) for o in META_OBJECTS])
    with pytest.raises(ValueError, match="start with None"):
        read_amazon_meta(path, ["A1", "B2"])
    with pytest.raises(ValueError, match="twice"):
        read_amazon_meta(path, [None, "A1", "A1"])


# ------------------------------------------------------------------------------------------------ shared tables

ITEMS_JSONL = [
    {"item_id": 1, "asin": "X1", "title": None, "brand": "Ghost", "categories": [["Hunting", "Gun Tools"]],
     "s3_attributes": ["Ghost", None, "Hunting"], "idgenrec_text_id": "ghost armorers tool"},
    {"item_id": 2, "asin": "X2", "title": "Tent", "brand": None, "categories": None,
     "s3_attributes": [], "idgenrec_text_id": "tent"},
    {"item_id": 3, "asin": "X3", "title": None, "brand": "", "categories": None, "idgenrec_text_id": "pole"},
]


@pytest.mark.unit
def test_items_jsonl_reads_sports_style_rows(tmp_path: Path) -> None:
    """Rows keyed by S3-Rec ``item_id`` (the string item tokens); null is missing; other fields go to ``extra``."""
    path = _write(tmp_path / "Toy_items.jsonl", [json.dumps(o) for o in ITEMS_JSONL])
    records = read_items_jsonl(path, [None, "1", "2", "3", "4"])
    assert records[1] == {
        "item": 1, "source_id": "1", "title": None, "brand": "Ghost", "categories": ["Hunting", "Gun Tools"],
        "price": None, "description": None,
        "extra": {"asin": "X1", "s3_attributes": ["Ghost", None, "Hunting"], "idgenrec_text_id": "ghost armorers tool"},
    }
    assert records[2]["title"] == "Tent" and records[2]["categories"] == []
    assert records[3]["brand"] is None and records[3]["extra"] == {"asin": "X3", "idgenrec_text_id": "pole"}
    assert records[4] == empty_record(4, "4")
    stats = item_text_stats(records)
    assert stats == {"num_items": 4, "missing_title": 3, "missing_brand": 3, "missing_categories": 3,
                     "missing_price": 4, "missing_description": 4, "no_text": 2}


@pytest.mark.unit
def test_items_jsonl_bad_id(tmp_path: Path) -> None:
    """An ``item_id`` that is not an integer is reported at its line."""
    path = _write(tmp_path / "Toy_items.jsonl", [json.dumps(ITEMS_JSONL[0]), json.dumps({"item_id": "2"})])
    _raises_at(lambda: read_items_jsonl(path, [None, "1", "2"]), path, 2, "field 'item_id'", "expected int")


@pytest.mark.unit
def test_items_jsonl_with_other_ids(tmp_path: Path) -> None:
    """A table keyed by S3-Rec ids cannot serve a dataset whose item tokens are asins."""
    path = _write(tmp_path / "Toy_items.jsonl", [json.dumps(o) for o in ITEMS_JSONL])
    _raises_at(lambda: read_items_jsonl(path, [None, "X1", "X2"]), path, None, "none of the 2 items")


# ------------------------------------------------------------------------------------------------ Yelp business

BUSINESSES = [
    {"business_id": "b1", "name": "Taco Stand", "address": "1 Main St", "city": "Phoenix", "state": "AZ",
     "stars": 4.5, "review_count": 10, "categories": "Mexican, Restaurants,  Food Trucks, Mexican",
     "attributes": {"WiFi": "u'free'"}},
    {"business_id": "b2", "name": "Quiet Spa", "city": "Tempe", "state": "AZ", "stars": 3, "categories": None},
    {"business_id": "b0", "name": "Elsewhere", "city": "Reno", "state": "NV", "stars": 2.0, "categories": "Bars"},
]


@pytest.mark.unit
def test_yelp_business(tmp_path: Path) -> None:
    """``name`` is the title, ``categories`` splits on commas, city/state/stars go to ``extra``."""
    path = _write(tmp_path / "business.json", [json.dumps(b) for b in BUSINESSES])
    records = read_yelp_business(path, [None, "b2", "b1"])
    assert records[2] == {
        "item": 2, "source_id": "b1", "title": "Taco Stand", "brand": None,
        "categories": ["Mexican", "Restaurants", "Food Trucks"], "price": None, "description": None,
        "extra": {"city": "Phoenix", "state": "AZ", "stars": 4.5},
    }
    assert records[1]["categories"] == [] and records[1]["extra"] == {"city": "Tempe", "state": "AZ", "stars": 3.0}


@pytest.mark.unit
def test_yelp_business_bad_stars(tmp_path: Path) -> None:
    """A non-numeric ``stars`` is reported at its line."""
    bad = {**BUSINESSES[1], "stars": "three"}
    path = _write(tmp_path / "business.json", [json.dumps(BUSINESSES[0]), json.dumps(bad)])
    _raises_at(lambda: read_yelp_business(path, [None, "b2", "b1"]), path, 2, "field 'stars'", "'three'")


# ------------------------------------------------------------------------------------------------ on disk


@pytest.mark.unit
def test_write_and_load_round_trip(tmp_path: Path) -> None:
    """The written table loads back identically (unicode kept), as a list indexed by item id."""
    records = read_amazon_meta(_write(tmp_path / "meta_Toy.json", [repr(o) for o in META_OBJECTS]), TOKENS)
    path = write_item_text(tmp_path / "toy", records)
    assert path == tmp_path / "toy" / item_text.ITEM_TEXT_FILE
    assert "\u00e9t\u00e9" in path.read_text(encoding="utf-8")
    assert load_item_text(tmp_path / "toy") == records
    assert load_item_text(tmp_path / "toy", num_items=4) == records
    assert [p.name for p in (tmp_path / "toy").iterdir()] == [item_text.ITEM_TEXT_FILE]  # no temporary files


@pytest.mark.unit
def test_load_checks_ids_fields_and_count(tmp_path: Path) -> None:
    """Out-of-order items, a missing field and a wrong item count are errors naming the file (and line)."""
    records = [None, empty_record(1, "a"), empty_record(2, "b")]
    directory = tmp_path / "toy"
    path = write_item_text(directory, records)
    (directory / "stats.json").write_text(json.dumps({"num_items": 3}), encoding="utf-8")
    _raises_at(lambda: load_item_text(directory), path, None, "holds 2 items, expected 3")
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[1], lines[0]]) + "\n", encoding="utf-8")
    _raises_at(lambda: load_item_text(directory, 2), path, 1, "field 'item'", "expected 1", "got 2")
    broken = {k: v for k, v in records[2].items() if k != "categories"}
    path.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n", encoding="utf-8")
    _raises_at(lambda: load_item_text(directory, 2), path, 2, "no field 'categories'")
    with pytest.raises(FileNotFoundError, match="without item text"):
        load_item_text(tmp_path / "none")
    with pytest.raises(ValueError, match="start with None"):
        write_item_text(directory, records[1:])


@pytest.mark.unit
def test_stats_and_their_line() -> None:
    """Missing counts per field; 'no text' means no title, brand, category or description."""
    records = [None, {**empty_record(1, "a"), "title": "T", "price": 0.0}, empty_record(2, "b"),
               {**empty_record(3, "c"), "categories": ["X"]}]
    stats = item_text_stats(records)
    assert stats == {"num_items": 3, "missing_title": 2, "missing_brand": 3, "missing_categories": 2,
                     "missing_price": 2, "missing_description": 3, "no_text": 1}
    assert format_item_text_stats({**stats, "num_items": 12_101, "missing_brand": 4_646}) == (
        "item text: 12,101 items; missing title 2, brand 4,646, categories 2, price 2, description 3; no text 1")


@pytest.mark.unit
def test_source_kind_is_checked(tmp_path: Path) -> None:
    """An unknown kind is rejected when the source is made."""
    with pytest.raises(ValueError, match="amazon_meta"):
        ItemTextSource(tmp_path / "x.json", "amazon")


# ------------------------------------------------------------------------------------------------ shared data

# ../shared/data/README.md, "Item text": (items, with a title, with a brand, with categories).
SHARED_EXPECTED = {
    "beauty": (12_101, 12_094, 7_455, 12_101),
    "sports": (18_357, 0, 10_870, 18_115),
    "toys": (11_924, 11_865, 0, 11_924),
}


@pytest.mark.integration
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")
@pytest.mark.parametrize("name", list(SHARED_EXPECTED))
def test_shared_item_text_counts(name: str) -> None:
    """The shared tables read to the README's counts; every item has text, except Sports (no titles)."""
    resolved = catalog.resolve_source(name, SHARED_DATA)
    assert resolved.item_text is not None and resolved.item_text.kind == "items_jsonl"
    items, titles, brands, categories = SHARED_EXPECTED[name]
    records = item_text.read_item_text(resolved.item_text, [None, *map(str, range(1, items + 1))])
    stats = item_text_stats(records)
    assert stats["num_items"] == items
    assert (items - stats["missing_title"], items - stats["missing_brand"]) == (titles, brands)
    assert items - stats["missing_categories"] == categories
    if name == "sports":
        # Sports items without brand and categories still carry the title-derived phrase.
        assert stats["no_text"] > 0
        assert all(r["extra"].get("idgenrec_text_id") for r in records[1:])
    else:
        assert stats["no_text"] == 0


# ------------------------------------------------------------------------------------------------ RecBole .item

RECBOLE_INTER = [
    "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "1\t10\t5\t3", "1\t20\t4\t1", "1\t30\t3\t2",
    "2\t20\t5\t1", "2\t10\t5\t2", "2\t40\t5\t3",
]
RECBOLE_ITEM = [
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
    "10\tToy Story (1995)\t1995\tAnimation Children's Comedy",
    "20\tHeat (1995)\t1995\tAction Crime Thriller",
    "99\tNot in the interactions\t2000\tDrama",
    "30\tGoldenEye (1995)\t\tAction",
]


@pytest.mark.unit
def test_recbole_item_reads_movielens_fields(tmp_path: Path) -> None:
    """``movie_title`` (token_seq) is the title, ``class`` the categories, other fields go to ``extra``."""
    path = _write(tmp_path / "ml.item", RECBOLE_ITEM)
    records = item_text.read_recbole_item(path, [None, "20", "10", "30", "40"])
    assert records[2] == {**empty_record(2, "10"), "title": "Toy Story (1995)",
                          "categories": ["Animation", "Children's", "Comedy"], "extra": {"release_year": "1995"}}
    assert records[3]["title"] == "GoldenEye (1995)" and records[3]["extra"] == {"release_year": None}
    assert records[4] == empty_record(4, "40")  # no row in the .item file
    assert item_text_stats(records)["no_text"] == 1


@pytest.mark.unit
def test_recbole_item_of_another_dataset(tmp_path: Path) -> None:
    """An .item file that describes none of the items is an error, not an all-missing table."""
    path = _write(tmp_path / "ml.item", RECBOLE_ITEM)
    _raises_at(lambda: item_text.read_recbole_item(path, [None, "a", "b"]), path, None, "none of the 2 items")


@pytest.mark.unit
def test_recbole_item_without_item_id_field(tmp_path: Path) -> None:
    """The header must have an ``item_id:token`` field."""
    path = _write(tmp_path / "ml.item", ["movie_id:token\ttitle:token", "10\tx"])
    _raises_at(lambda: item_text.read_recbole_item(path, [None, "10"]), path, 1, "no token field 'item_id'")


@pytest.mark.unit
def test_sibling_item_text_of_a_recbole_inter(tmp_path: Path) -> None:
    """``<name>.item`` beside ``<name>.inter`` is the item text; without it there is none."""
    inter = _write(tmp_path / "ml-100k.inter", RECBOLE_INTER)
    assert catalog.sibling_item_text(inter, "recbole") is None
    _write(tmp_path / "ml-100k.item", RECBOLE_ITEM)
    assert catalog.sibling_item_text(inter, "recbole") == ItemTextSource(tmp_path / "ml-100k.item", "recbole_item")
    assert catalog.resolve_source(str(inter), tmp_path).item_text == ItemTextSource(tmp_path / "ml-100k.item",
                                                                                    "recbole_item")


@pytest.mark.unit
def test_recbole_item_text_end_to_end_through_prepare(tmp_path: Path) -> None:
    """A .inter + .item pair converts with its item text, which the semantic stage's item text is built from."""
    from sracl_lightning.datasets import processed
    from sracl_lightning.semantic.stage import item_raw_text

    inter = _write(tmp_path / "ml.inter", RECBOLE_INTER)
    _write(tmp_path / "ml.item", RECBOLE_ITEM)
    directory, stats, converted = processed.prepare("ml", inter, "recbole", tmp_path / "processed",
                                                    item_text=catalog.sibling_item_text(inter, "recbole"))
    assert converted and stats["item_text_source"]["kind"] == "recbole_item"
    assert stats["item_text_stats"]["num_items"] == 4 and stats["item_text_stats"]["no_text"] == 1
    records = load_item_text(directory)
    # Items are numbered by first appearance in the time-sorted log: 20, 30, 10 (user 1), then 40.
    assert [r["source_id"] for r in records[1:]] == ["20", "30", "10", "40"]
    assert item_raw_text(records[1]) == "Title: Heat (1995); Categories: Action > Crime > Thriller"
    assert item_raw_text(records[4]) == ""


@pytest.mark.unit
def test_item_name_is_the_title_else_the_short_text_id() -> None:
    from sracl_lightning.datasets.item_text import item_name, item_text_id, item_title

    sports = {"title": None, "extra": {"idgenrec_text_id": " pocket stove "}}
    assert item_name({"title": "Heat (1995)", "extra": {"idgenrec_text_id": "heat"}}) == "Heat (1995)"
    assert item_name(sports) == "pocket stove" and item_title(sports) is None
    assert item_name({"title": "  ", "extra": {"idgenrec_text_id": "tent"}}) == "tent"  # a blank title is absent
    assert item_name({"title": None, "brand": "Acme"}) is None and item_text_id({"title": "x"}) is None
    assert item_name(None) is None
