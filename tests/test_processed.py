"""Tests of the processed layout (convert once, reuse until a source changes), its item text, and catalog.resolve."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from sracl_lightning.atomic import exclusive_lock
from sracl_lightning.datasets import catalog, item_text, processed
from sracl_lightning.datasets.sequence_files import read_s3rec
from sracl_lightning.datasets.sequences import DataFormatError

pytestmark = pytest.mark.unit

LAYOUT_FILES = {"items.npy", "offsets.npy", "id_map.json", "stats.json"}
TOY_LINES = ["5 10 20 30 40", "2 20 50 10", "9 30 30 50 20 10"]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small S3-Rec file with item ids that need renumbering."""
    path = tmp_path / "src" / "toy.txt"
    path.parent.mkdir()
    path.write_text("\n".join(TOY_LINES) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "processed"


def _mtimes(directory: Path) -> dict[str, int]:
    return {name: (directory / name).stat().st_mtime_ns for name in os.listdir(directory)}


def _set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_prepare_converts_once_then_reuses(source: Path, data_root: Path) -> None:
    """The second call reads nothing and rewrites nothing; both calls return the same stats."""
    directory, stats, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted and directory == processed.dataset_directory(data_root, "toy", source, "s3rec")
    assert directory.parent == data_root and directory.name.startswith("toy-")
    assert set(os.listdir(directory)) == LAYOUT_FILES
    before = _mtimes(directory)
    directory2, stats2, converted2 = processed.prepare("toy", source, "s3rec", data_root)
    assert not converted2 and directory2 == directory
    assert stats2 == stats
    assert _mtimes(directory) == before


def test_force_reconverts(source: Path, data_root: Path) -> None:
    """``force=True`` converts even when the conversion is current."""
    processed.prepare("toy", source, "s3rec", data_root)
    assert processed.prepare("toy", source, "s3rec", data_root, force=True)[2]


def test_load_returns_the_reader_arrays(source: Path, data_root: Path) -> None:
    """``load`` gives back exactly the reader's arrays and dtypes; the id map holds the source ids."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    expected = read_s3rec(source)
    loaded = processed.load(directory)
    assert np.array_equal(loaded.items, expected.items) and loaded.items.dtype == np.int32
    assert np.array_equal(loaded.offsets, expected.offsets) and loaded.offsets.dtype == np.int64
    assert loaded.num_items == expected.num_items == stats["num_items"] == 5
    assert loaded.stats() == expected.stats()
    id_map = processed.load_id_map(directory)
    assert id_map == {"users": ["5", "2", "9"], "items": [None, "10", "20", "30", "40", "50"]}


def test_changed_content_is_reconverted(source: Path, data_root: Path) -> None:
    """Appending a user triggers a new conversion with the new statistics."""
    _, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (3, 5, 12)
    with source.open("a", encoding="utf-8") as f:
        f.write("4 60 10 20\n")
    directory, stats, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (4, 6, 15)
    assert processed.load(directory).num_users == 4
    assert processed.read_stats(directory) == stats


def test_same_size_new_content_is_reconverted(source: Path, data_root: Path) -> None:
    """A same-size edit with a new mtime is caught by the content hash."""
    processed.prepare("toy", source, "s3rec", data_root)
    old = source.read_bytes()
    new = old.replace(b"2 20 50 10", b"2 20 50 40")
    assert len(new) == len(old) and new != old
    mtime = source.stat().st_mtime_ns
    source.write_bytes(new)
    _set_mtime(source, mtime + 5_000_000_000)
    directory, _, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted
    assert processed.load(directory).sequence(1).tolist() == [2, 5, 4]


def test_touched_file_is_not_reconverted(source: Path, data_root: Path) -> None:
    """A new mtime with the same bytes is recognised by its sha256: no reconversion, no rewritten files."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    before = _mtimes(directory)
    _set_mtime(source, source.stat().st_mtime_ns + 7_000_000_000)
    assert source.stat().st_mtime_ns != stats["source"]["mtime_ns"]  # the cheap check really misses
    _, stats2, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert not converted
    assert stats2["num_interactions"] == stats["num_interactions"]
    assert _mtimes(directory) == before


def test_missing_stats_json_means_convert_again(source: Path, data_root: Path) -> None:
    """A folder without ``stats.json`` (an interrupted conversion) is converted again."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    (directory / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="stats.json"):
        processed.load(directory)
    directory, stats2, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted
    assert processed.read_stats(directory) == stats2
    assert {k: v for k, v in stats2.items() if k != "source"} == {k: v for k, v in stats.items() if k != "source"}


def test_other_format_is_not_reused(tmp_path: Path, data_root: Path) -> None:
    """The same file registered under another format is converted again (the format is in the fingerprint)."""
    path = tmp_path / "x.txt"
    path.write_text("1 1\n1 2\n1 3\n", encoding="utf-8")
    directory, _, _ = processed.prepare("x", path, "sracl", data_root)
    stats_path = directory / "stats.json"
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats["source"]["format"] = "s3rec"
    stats_path.write_text(json.dumps(stats), encoding="utf-8")
    _, stats2, converted = processed.prepare("x", path, "sracl", data_root)
    assert converted and stats2["source"]["format"] == "sracl"


def test_no_temporary_files_are_left(source: Path, data_root: Path) -> None:
    """After a conversion (and a reconversion) the folder holds exactly the four layout files."""
    directory, _, _ = processed.prepare("toy", source, "s3rec", data_root)
    assert set(os.listdir(directory)) == LAYOUT_FILES
    processed.prepare("toy", source, "s3rec", data_root, force=True)
    names = os.listdir(directory)
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    assert set(names) == LAYOUT_FILES


def test_stats_json_holds_statistics_and_fingerprint(source: Path, data_root: Path) -> None:
    """``stats.json`` has every ``Sequences.stats()`` key with the reader's values, plus the source fingerprint."""
    directory, _, _ = processed.prepare("toy", source, "s3rec", data_root)
    on_disk = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
    expected = read_s3rec(source).stats()
    assert {k: on_disk[k] for k in expected} == expected
    assert on_disk["num_train_samples"] == sum(len(line.split()) - 1 - 3 for line in TOY_LINES) == 3
    assert on_disk["name"] == "toy"
    assert on_disk["layout_version"] == processed.LAYOUT_VERSION
    content = source.read_bytes()
    assert on_disk["source"] == {
        "path": str(source),
        "format": "s3rec",
        "size": len(content),
        "mtime_ns": source.stat().st_mtime_ns,
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_prepare_missing_source(tmp_path: Path, data_root: Path) -> None:
    """A missing source raises FileNotFoundError naming the dataset, and creates nothing."""
    with pytest.raises(FileNotFoundError, match="'toy'"):
        processed.prepare("toy", tmp_path / "none.txt", "s3rec", data_root)
    assert not data_root.exists()


# ------------------------------------------------------------------------------------------------ catalog


@pytest.mark.parametrize(
    ("name", "relative", "fmt"),
    [
        ("beauty", "Beauty/Beauty.txt", "s3rec"),
        ("sports", "Sports_and_Outdoors/Sports_and_Outdoors.txt", "s3rec"),
        ("toys", "Toys_and_Games/Toys_and_Games.txt", "s3rec"),
        ("office", "sracl/Office.txt", "sracl"),
        ("yelp", "sracl/Yelp.txt", "sracl"),
        ("yelp_s3rec", "Yelp/Yelp.txt", "s3rec"),
        ("beauty_sracl", "sracl/Beauty.txt", "sracl"),
    ],
)
def test_resolve_catalog_names(tmp_path: Path, name: str, relative: str, fmt: str) -> None:
    """A catalog name resolves to its file under the source root and its format."""
    assert catalog.resolve(name, tmp_path) == (name, tmp_path / relative, fmt)


def test_resolve_catalog_name_with_explicit_format(tmp_path: Path) -> None:
    """An explicit format overrides the catalog's."""
    assert catalog.resolve("beauty", tmp_path, "sracl")[2] == "sracl"


@pytest.mark.parametrize(
    ("file_name", "name", "fmt"),
    [
        ("ml-1m.inter", "ml-1m", "recbole"),
        ("reviews_Beauty_5.json.gz", "beauty", "amazon"),
        ("reviews_Toys_and_Games_5.json", "toys_and_games", "amazon"),
        ("reviews_Office_Products.json.gz", "office_products", "amazon"),
        ("other.json", "other", "amazon"),
        ("review.json", "yelp_review", "yelp"),
        ("review.json.gz", "yelp_review", "yelp"),
        ("yelp_academic_dataset_review.json", "yelp_review", "yelp"),
        ("my_review.json", "my_review", "amazon"),  # not the Yelp dump's name: needs --format yelp
    ],
)
def test_resolve_file_path_infers_format_and_name(tmp_path: Path, file_name: str, name: str, fmt: str) -> None:
    """A file path gets its format from the extension and its name from the file name."""
    path = tmp_path / file_name
    assert catalog.resolve(str(path), "unused") == (name, path, fmt)


def test_resolve_txt_with_explicit_format(tmp_path: Path) -> None:
    """A ``.txt`` path is accepted once its format is given."""
    path = tmp_path / "Mine.txt"
    assert catalog.resolve(str(path), "unused", "sracl") == ("Mine", path, "sracl")


def test_resolve_unknown_name() -> None:
    """An unknown name that is not a file is a clear ValueError listing the catalog."""
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset'") as info:
        catalog.resolve("no_such_dataset", "unused")
    assert "beauty" in str(info.value)


def test_resolve_txt_without_format(tmp_path: Path) -> None:
    """A ``.txt`` path without a format is ambiguous and says which formats to choose from."""
    path = tmp_path / "Beauty.txt"
    path.write_text("1 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell the format") as info:
        catalog.resolve(str(path), "unused")
    assert "s3rec" in str(info.value) and "sracl" in str(info.value)


# ------------------------------------------------------------------------------------------------ item text


def _items_table(path: Path, titles: dict[int, str | None]) -> Path:
    """A shared-style ``*_items.jsonl`` table keyed by the toy file's source item ids (10, 20, ...)."""
    rows = [{"item_id": i, "asin": f"A{i}", "title": t, "brand": None, "categories": [["Toys"]]}
            for i, t in titles.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def text_source(source: Path) -> item_text.ItemTextSource:
    path = _items_table(source.with_name("toy_items.jsonl"), {10: "ten", 20: "twenty", 30: None, 40: "forty",
                                                               50: "fifty"})
    return item_text.ItemTextSource(path, "items_jsonl")


def test_prepare_writes_item_text_and_its_fingerprint(source: Path, text_source, data_root: Path) -> None:
    """With a text source the folder gains ``item_text.jsonl``; stats.json records its source and counts."""
    directory, stats, converted = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    assert converted and set(os.listdir(directory)) == LAYOUT_FILES | {item_text.ITEM_TEXT_FILE}
    records = item_text.load_item_text(directory)
    assert [r["title"] for r in records[1:]] == ["ten", "twenty", None, "forty", "fifty"]
    assert [r["source_id"] for r in records[1:]] == ["10", "20", "30", "40", "50"]
    content = text_source.path.read_bytes()
    assert stats["item_text_source"] == {
        "path": str(text_source.path), "kind": "items_jsonl", "size": len(content),
        "mtime_ns": text_source.path.stat().st_mtime_ns, "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert stats["item_text_stats"]["missing_title"] == 1
    assert processed.read_stats(directory) == stats
    # Unchanged sources: nothing is read or rewritten, with or without asking for the text.
    before = _mtimes(directory)
    assert not processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)[2]
    assert not processed.prepare("toy", source, "s3rec", data_root)[2]
    assert _mtimes(directory) == before
    # A (path, kind) tuple works too.
    assert not processed.prepare("toy", source, "s3rec", data_root, item_text=(text_source.path, "items_jsonl"))[2]


def test_changed_text_source_rebuilds_only_the_text(source: Path, text_source, data_root: Path) -> None:
    """A new text file (same interactions) rewrites item_text.jsonl and stats.json, not the arrays."""
    directory, _, _ = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    before = _mtimes(directory)
    mtime = text_source.path.stat().st_mtime_ns
    _items_table(text_source.path, {10: "TEN", 20: "twenty", 30: "thirty", 40: "forty", 50: "fifty"})
    _set_mtime(text_source.path, mtime + 5_000_000_000)
    _, stats, converted = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    assert converted
    assert item_text.load_item_text(directory)[1]["title"] == "TEN"
    assert stats["item_text_stats"]["missing_title"] == 0
    assert stats["item_text_source"]["sha256"] == hashlib.sha256(text_source.path.read_bytes()).hexdigest()
    after = _mtimes(directory)
    assert {n for n in after if after[n] != before[n]} == {item_text.ITEM_TEXT_FILE, "stats.json"}


def test_touched_text_source_is_not_reread(source: Path, text_source, data_root: Path) -> None:
    """A new mtime with the same bytes is recognised by its sha256."""
    directory, _, _ = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    before = _mtimes(directory)
    _set_mtime(text_source.path, text_source.path.stat().st_mtime_ns + 7_000_000_000)
    assert not processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)[2]
    assert _mtimes(directory) == before


def test_text_added_to_an_existing_conversion(source: Path, text_source, data_root: Path) -> None:
    """A conversion made without text (or before item text existed) gains it when asked, arrays untouched."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    assert stats["item_text_source"] is None and stats["item_text_stats"] is None
    before = _mtimes(directory)
    _, stats, converted = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    assert converted and stats["item_text_stats"]["num_items"] == 5
    assert _mtimes(directory)["items.npy"] == before["items.npy"]
    # A deleted table is rebuilt too.
    (directory / item_text.ITEM_TEXT_FILE).unlink()
    assert processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)[2]
    assert (directory / item_text.ITEM_TEXT_FILE).is_file()


def test_reconversion_without_text_drops_the_stale_table(source: Path, text_source, data_root: Path) -> None:
    """New interactions may renumber items, so a reconversion without text removes the old table."""
    directory, _, _ = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    with source.open("a", encoding="utf-8") as f:
        f.write("4 60 10 20\n")
    _, stats, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted and stats["item_text_source"] is None
    assert set(os.listdir(directory)) == LAYOUT_FILES


def test_bad_text_source_keeps_the_previous_conversion(source: Path, text_source, data_root: Path) -> None:
    """A malformed or missing text file fails before anything is written."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root, item_text=text_source)
    bad = text_source.path.with_name("bad_items.jsonl")
    bad.write_text('{"item_id": 10, "title": 3}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="field 'title'"):
        processed.prepare("toy", source, "s3rec", data_root, item_text=(bad, "items_jsonl"), force=True)
    assert processed.read_stats(directory) == stats
    with pytest.raises(FileNotFoundError, match="item text file of dataset 'toy'"):
        processed.prepare("toy", source, "s3rec", data_root, item_text=(bad.with_name("none.jsonl"), "items_jsonl"))


def test_prepare_synthetic_raw_files_with_metadata(synthetic_reviews: Path, data_root: Path) -> None:
    """The generator's reviews + meta (Python literals, gzipped) give item text with titles for most items."""
    resolved = catalog.resolve_source(str(synthetic_reviews), "unused")
    assert resolved.item_text == item_text.ItemTextSource(synthetic_reviews.with_name("meta_Synthetic.json.gz"),
                                                          "amazon_meta")
    directory, stats, _ = processed.prepare(resolved.name, resolved.path, resolved.format, data_root,
                                            item_text=resolved.item_text)
    records = item_text.load_item_text(directory)
    assert len(records) == stats["num_items"] + 1 == 121
    assert records[1:] and all(r["source_id"] == t for r, t in zip(records[1:], processed.load_id_map(directory)
                                                                    ["items"][1:], strict=True))
    titles = sum(r["title"] is not None for r in records[1:])
    assert 0.9 * 120 <= titles < 120  # the generator leaves ~2% of titles out
    assert stats["item_text_stats"]["no_text"] == 0
    assert all(r["categories"][0] == "Beauty" for r in records[1:])


@pytest.mark.parametrize(
    ("files", "review", "fmt", "expected"),
    [
        (["reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"], "reviews_Beauty_5.json.gz", "amazon",
         ("meta_Beauty.json.gz", "amazon_meta")),
        (["reviews_Toys_5.json", "meta_Toys.json"], "reviews_Toys_5.json", "amazon", ("meta_Toys.json", "amazon_meta")),
        (["reviews_Toys.json"], "reviews_Toys.json", "amazon", None),
        (["review.json", "business.json"], "review.json", "yelp", ("business.json", "yelp_business")),
        (["yelp_academic_dataset_review.json", "yelp_academic_dataset_business.json"],
         "yelp_academic_dataset_review.json", "yelp", ("yelp_academic_dataset_business.json", "yelp_business")),
        (["review.json", "meta_x.json"], "review.json", "yelp", None),
    ],
)
def test_resolve_source_finds_sibling_item_text(tmp_path: Path, files: list[str], review: str, fmt: str,
                                                expected: tuple[str, str] | None) -> None:
    """Raw review files get their metadata sibling; without one there is no item text."""
    for name in files:
        (tmp_path / name).write_text("", encoding="utf-8")
    resolved = catalog.resolve_source(str(tmp_path / review), "unused")
    assert resolved.format == fmt
    text = None if expected is None else item_text.ItemTextSource(tmp_path / expected[0], expected[1])
    assert resolved.item_text == text


def test_resolve_source_catalog_item_text(tmp_path: Path) -> None:
    """Catalog datasets with a table get it (in their own format only); the others have none."""
    beauty = catalog.resolve_source("beauty", tmp_path)
    assert beauty.item_text == item_text.ItemTextSource(tmp_path / "Beauty/Beauty_items.jsonl", "items_jsonl")
    assert catalog.resolve_source("sports", tmp_path).item_text.path.name == "Sports_and_Outdoors_items.jsonl"
    assert catalog.resolve_source("office", tmp_path).item_text is None
    assert catalog.resolve_source("beauty_sracl", tmp_path).item_text is None  # other item ids
    assert catalog.resolve_source("beauty", tmp_path, "sracl").item_text is None
    assert catalog.resolve("beauty", tmp_path) == (beauty.name, beauty.path, beauty.format)


@pytest.mark.parametrize(
    ("file_name", "kind"),
    [("meta_Beauty.json.gz", "amazon_meta"), ("Beauty_items.jsonl", "items_jsonl"), ("business.json", "yelp_business"),
     ("ml-100k.item", "recbole_item"), ("yelp_academic_dataset_business.json", "yelp_business")],
)
def test_infer_item_text_kind(file_name: str, kind: str) -> None:
    assert catalog.infer_item_text_kind(Path(file_name)) == kind


def test_infer_item_text_kind_unknown() -> None:
    with pytest.raises(ValueError, match="cannot tell how to read"):
        catalog.infer_item_text_kind(Path("stuff.csv"))


# ------------------------------------------------------------------------------------------- folder identity
def test_sources_sharing_a_stem_get_their_own_folders(tmp_path: Path, data_root: Path) -> None:
    """``a/Beauty.txt`` and ``b/Beauty.txt`` (or one file read in two formats) never overwrite each other."""
    first, second = tmp_path / "a" / "Beauty.txt", tmp_path / "b" / "Beauty.txt"
    for path, lines in ((first, TOY_LINES), (second, TOY_LINES[:2])):
        path.parent.mkdir()
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dir1, stats1, _ = processed.prepare("Beauty", first, "s3rec", data_root)
    dir2, stats2, _ = processed.prepare("Beauty", second, "s3rec", data_root)
    assert dir1 != dir2 and dir1.name.startswith("Beauty-") and dir2.name.startswith("Beauty-")
    assert (stats1["num_users"], stats2["num_users"]) == (3, 2)
    # Both conversions stay current: neither source is read again.
    assert not processed.prepare("Beauty", first, "s3rec", data_root)[2]
    assert not processed.prepare("Beauty", second, "s3rec", data_root)[2]
    assert processed.load(dir1).num_users == 3
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\n1 2\n1 3\n", encoding="utf-8")
    assert processed.dataset_directory(data_root, "pairs", pairs, "sracl") != processed.dataset_directory(
        data_root, "pairs", pairs, "s3rec")


def _zero(path: Path) -> None:
    np.save(path, np.zeros_like(np.load(path)))


def _shuffle(path: Path) -> None:
    array = np.load(path)
    np.save(path, np.random.default_rng(0).permutation(array))


def _as_float(path: Path) -> None:
    np.save(path, np.load(path).astype(np.float32))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _edit_stats(key: str, value: object):
    def edit(path: Path) -> None:
        stats = json.loads(path.read_text(encoding="utf-8"))
        stats[key] = value
        path.write_text(json.dumps(stats), encoding="utf-8")
    return edit


DAMAGES = [
    ("items.npy", _zero, "items.npy"),
    ("items.npy", _shuffle, "items.npy"),
    ("items.npy", _as_float, "items.npy"),
    ("items.npy", _truncate, "items.npy"),
    ("offsets.npy", _zero, "offsets.npy"),
    ("stats.json", _edit_stats("num_items", 5000), "num_items"),
    ("stats.json", _edit_stats("num_users", 2), "num_users"),
    ("stats.json", lambda p: p.write_text("{not json", encoding="utf-8"), "stats.json"),
    ("id_map.json", lambda p: p.unlink(), "id_map.json"),
    ("id_map.json", lambda p: p.write_text(p.read_text(encoding="utf-8").replace('"', "'", 2), encoding="utf-8"),
     "id_map.json"),
]


@pytest.mark.parametrize(("file", "damage", "named"), DAMAGES,
                         ids=["items-zeroed", "items-shuffled", "items-float", "items-truncated", "offsets-zeroed",
                              "stats-num_items", "stats-num_users", "stats-unreadable", "id_map-missing",
                              "id_map-edited"])
def test_damaged_files_are_refused_then_converted_again(source: Path, data_root: Path, caplog, file: str, damage,
                                                        named: str) -> None:
    """Any damaged, edited or unreadable file of a conversion: ``load`` names it, ``prepare`` converts again."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    expected = processed.load(directory)
    damage(directory / file)
    with pytest.raises(processed.DamagedConversionError, match=named):
        processed.load(directory)
    with caplog.at_level("WARNING"):
        _, stats2, converted = processed.prepare("toy", source, "s3rec", data_root)
    assert converted
    assert any(named in r.getMessage() and "converting" in r.getMessage() for r in caplog.records)
    again = processed.load(directory)
    assert np.array_equal(again.items, expected.items) and np.array_equal(again.offsets, expected.offsets)
    assert {k: v for k, v in stats2.items() if k != "source"} == {k: v for k, v in stats.items() if k != "source"}


def test_stats_json_records_the_files(source: Path, data_root: Path) -> None:
    """``stats.json`` records each array's hash, dtype, length and value range, and the id map's hash."""
    directory, stats, _ = processed.prepare("toy", source, "s3rec", data_root)
    items = np.load(directory / "items.npy")
    assert stats["files"]["items"] == {"sha256": processed.array_hash(items), "dtype": "<i4", "length": len(items),
                                       "min": 1, "max": stats["num_items"]}
    assert stats["files"]["id_map"]["sha256"] == hashlib.sha256((directory / "id_map.json").read_bytes()).hexdigest()
    identity = processed.data_identity(stats)
    assert identity["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert identity["num_items"] == stats["num_items"] and "path" not in identity


def _prepare_and_load(args: tuple[str, str]) -> int:
    source, data_root = args
    directory, _, converted = processed.prepare("toy", Path(source), "s3rec", Path(data_root))
    return int(converted) + 2 * processed.load(directory).num_users


def test_concurrent_prepares_of_one_folder_take_turns(source: Path, data_root: Path) -> None:
    """Two runner jobs on a fresh data root: one converts, the other waits and reuses; neither ever finds the folder
    half-written (before the lock, a job could load while the other had removed stats.json)."""
    import multiprocessing
    import threading
    import time

    directory = processed.dataset_directory(data_root, "toy", source, "s3rec")
    order = []

    def prepare_then_note() -> None:
        processed.prepare("toy", source, "s3rec", data_root)
        order.append("second")

    with exclusive_lock(directory):
        waiting = threading.Thread(target=prepare_then_note)
        waiting.start()
        time.sleep(0.3)
        order.append("first")  # the thread is still blocked on the lock
    waiting.join(10)
    assert order == ["first", "second"]

    for round_ in range(3):
        root = data_root.parent / f"fresh{round_}"
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            results = pool.map(_prepare_and_load, [(str(source), str(root))] * 3)
        assert sorted(result % 2 for result in results) == [0, 0, 1]  # exactly one process converted
        assert {result // 2 for result in results} == {len(TOY_LINES)}
