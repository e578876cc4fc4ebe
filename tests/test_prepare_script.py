"""data/prepare.py: converts, prints the statistics, reuses, and reports bad input with a non-zero exit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.integration


def load_prepare():
    return load_script("data/prepare")


def _converted_directory(out: str) -> Path:
    """The folder a ``converted: <folder>`` line of the output names."""
    line = next(line for line in out.splitlines() if line.startswith("converted: "))
    return Path(line.removeprefix("converted: ").split("  (")[0])


def test_prepare_converts_then_reuses(tmp_path, synthetic_reviews, capsys) -> None:
    prepare = load_prepare()
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert first.startswith("converted:") and "synthetic: 301 users, 120 items" in first
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("up to date:")


def test_prepare_reports_bad_input(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 2 3\n2 4 x 6\n")
    assert load_prepare().main([str(bad), "--format", "s3rec", "--data_root", str(tmp_path / "out")]) == 1
    assert f"{bad}:2: item id must be a positive integer, got 'x'" in capsys.readouterr().err


def test_prepare_prints_item_text_stats(tmp_path, synthetic_reviews, capsys) -> None:
    """The sibling ``meta_Synthetic.json.gz`` is found and its missing-field counts are printed."""
    assert load_prepare().main([str(synthetic_reviews), "--data_root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  item text: 120 items; missing title " in out and "; no text 0  (from " in out
    assert "meta_Synthetic.json.gz" in out
    assert (_converted_directory(out) / "item_text.jsonl").is_file()


def test_prepare_explicit_and_no_item_text(tmp_path, synthetic_reviews, capsys) -> None:
    """``--no_item_text`` converts the interactions only; ``--item_text`` names the file (kind inferred)."""
    prepare = load_prepare()
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path), "--no_item_text"]) == 0
    assert "  item text: none" in capsys.readouterr().out
    meta = synthetic_reviews.with_name("meta_Synthetic.json.gz")
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path), "--item_text", str(meta)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("converted:") and "item text: 120 items" in out  # only the text was built
    bad = tmp_path / "stuff.csv"
    bad.write_text("x\n")
    assert prepare.main([str(synthetic_reviews), "--data_root", str(tmp_path), "--item_text", str(bad)]) == 1
    assert "cannot tell how to read" in capsys.readouterr().err


def test_prepare_yelp_review_and_business(tmp_path, capsys) -> None:
    """A Yelp ``review.json`` is recognised by name, cut to 2019, and gets ``business.json`` beside it."""
    raw = tmp_path / "yelp"
    raw.mkdir()
    reviews = [{"user_id": f"u{u}", "business_id": f"b{b}", "date": f"2019-0{b + 1}-1{u} 12:00:00", "text": "ok"}
               for u in range(5) for b in range(5)]
    reviews.append({"user_id": "u0", "business_id": "b9", "date": "2020-01-01 00:00:00", "text": "late"})
    (raw / "review.json").write_text("".join(json.dumps(r) + "\n" for r in reviews), encoding="utf-8")
    businesses = [{"business_id": f"b{b}", "name": f"Place {b}", "categories": "Food, Bars", "city": "Reno",
                   "state": "NV", "stars": 4.0} for b in (*range(5), 9)]
    (raw / "business.json").write_text("".join(json.dumps(b) + "\n" for b in businesses), encoding="utf-8")
    assert load_prepare().main([str(raw / "review.json"), "--data_root", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "yelp_review: 5 users, 5 items, 25 interactions" in out
    assert "item text: 5 items; missing title 0, brand 5, categories 0" in out
    records = [json.loads(line) for line in (_converted_directory(out) / "item_text.jsonl").open()]
    assert [r["title"] for r in records] == [f"Place {b}" for b in range(5)]
    assert records[0]["extra"] == {"city": "Reno", "state": "NV", "stars": 4.0}


def _truncated_gz(path: Path) -> Path:
    text = "".join(json.dumps({"reviewerID": "A", "asin": f"i{i}", "unixReviewTime": i}) + "\n" for i in range(20_000))
    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])
    return path


@pytest.mark.parametrize(
    ("name", "content", "fmt", "expected"),
    [
        pytest.param("bad.txt", b"1 1 2 3\n2 4 9223372036854775808 6\n", "s3rec", ":2: item id must be a positive "
                     "integer below 2**63", id="overflow"),
        pytest.param("bad.txt", b"1 1 2 3\n2 4\xff 5 6\n", "s3rec", ":2: expected UTF-8 text: byte 0xff",
                     id="not-utf8"),
        pytest.param("reviews_Bad_5.json.gz", None, "amazon", "the gzip file is truncated", id="truncated-gz"),
        pytest.param("reviews_Bad_5.json.gz", b"not gzip\n", "amazon", ":1: not a gzip file", id="fake-gz"),
        pytest.param("bad.inter", b"user_id:token\titem_id:token\ttimestamp:float\nu\ta\t1\nu\tb\tnan\n", "recbole",
                     ":3: field 'timestamp' (column 3): expected a numeric timestamp", id="nan-timestamp"),
    ],
)
def test_prepare_reports_crashes_as_one_line(tmp_path, capsys, name: str, content: bytes | None, fmt: str,
                                             expected: str) -> None:
    """Input that used to end in a traceback (OverflowError, UnicodeDecodeError, EOFError, BadGzipFile) or pass
    silently (a NaN timestamp) is one ``error: <file>:<line>: ...`` line on stderr and exit status 1."""
    path = tmp_path / name
    if content is None:
        _truncated_gz(path)
    else:
        path.write_bytes(content)
    assert load_prepare().main([str(path), "--format", fmt, "--data_root", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and expected in err, err
    assert err.count("\n") == 1


def test_prepare_recbole_inter_with_item_file(tmp_path, capsys) -> None:
    """A RecBole ``.inter`` gets the ``.item`` beside it as item text."""
    raw = tmp_path / "ml"
    raw.mkdir()
    rows = [f"{u}\t{i}\t5\t{t}" for u in (1, 2) for t, i in enumerate((10, 20, 30))]
    (raw / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                  + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    (raw / "ml.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n10\tToy Story\tAnimation\n"
                                 "20\tHeat\tAction Crime\n", encoding="utf-8")
    assert load_prepare().main([str(raw / "ml.inter"), "--data_root", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "ml: 2 users, 3 items, 6 interactions" in out
    assert "item text: 3 items; missing title 1, brand 3, categories 1" in out and "ml.item" in out
    records = [json.loads(line) for line in (_converted_directory(out) / "item_text.jsonl").open()]
    assert [r["title"] for r in records] == ["Toy Story", "Heat", None]
