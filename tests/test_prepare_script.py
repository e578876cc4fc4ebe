"""data/prepare.py: converts, prints the statistics, reuses, and reports bad input with a non-zero exit."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import REPO_ROOT


def load_prepare():
    spec = importlib.util.spec_from_file_location("prepare", REPO_ROOT / "data" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert (tmp_path / "synthetic" / "item_text.jsonl").is_file()


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
    records = [json.loads(line) for line in (tmp_path / "out" / "yelp_review" / "item_text.jsonl").open()]
    assert [r["title"] for r in records] == [f"Place {b}" for b in range(5)]
    assert records[0]["extra"] == {"city": "Reno", "state": "NV", "stars": 4.0}
