"""Tests of the source readers: S3-Rec, SRA-CL, RecBole ``.inter``, Amazon 2014 reviews and Yelp reviews."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from sracl_lightning.datasets import interaction_logs
from sracl_lightning.datasets.interaction_logs import read_amazon_reviews, read_recbole_inter, read_yelp_reviews
from sracl_lightning.datasets.sequence_files import read_s3rec, read_sracl
from sracl_lightning.datasets.sequences import DataFormatError, Sequences

pytestmark = pytest.mark.unit

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _review(user: str, item: str, time: int, **extra) -> str:
    """One line of an Amazon 2014 review file (with some of the real file's other fields)."""
    return json.dumps({"reviewerID": user, "asin": item, "overall": 5.0, "reviewText": "ok",
                       "unixReviewTime": time, **extra})


def _recbole_row(user: str, item: str, time: str, rating: str = "5.0") -> str:
    return "\t".join([user, item, rating, time])


def _assert_sequences(seqs: Sequences, items: list[int], offsets: list[int], users: list[str],
                      item_tokens: list[str | None]) -> None:
    assert seqs.items.tolist() == items
    assert seqs.offsets.tolist() == offsets
    assert seqs.user_tokens == users
    assert seqs.item_tokens == item_tokens
    assert seqs.items.dtype == np.int32 and seqs.offsets.dtype == np.int64


def _raises_at(reader, path: Path, line: int | None, *expected: str, **kwargs) -> DataFormatError:
    """Call ``reader(path)``; check the DataFormatError names ``path:line`` and contains every ``expected`` text."""
    with pytest.raises(DataFormatError) as info:
        reader(path, **kwargs)
    message = str(info.value)
    if line is None:
        assert message.startswith(f"{path}: "), message
    else:
        assert f"{path}:{line}: " in message, message
    assert info.value.line == line
    assert info.value.path == str(path)
    for text in expected:
        assert text in message, (text, message)
    return info.value


# ------------------------------------------------------------------------------------------------ S3-Rec


def test_s3rec_renumbers_items_by_ascending_id_and_keeps_user_order(tmp_path: Path) -> None:
    """Items map to 1..N by ascending source id; users keep file order; blank lines are skipped."""
    path = _write(tmp_path / "toy.txt", ["3 10 20 30 40", "", "1 20 50 10", "7 30 30 50"])
    seqs = read_s3rec(path)
    _assert_sequences(seqs, items=[1, 2, 3, 4, 2, 5, 1, 3, 3, 5], offsets=[0, 4, 7, 10], users=["3", "1", "7"],
                      item_tokens=[None, "10", "20", "30", "40", "50"])
    assert seqs.first_line.tolist() == [1, 3, 4]
    assert seqs.num_users == 3 and seqs.num_items == 5 and seqs.num_interactions == 10


def test_s3rec_renumbering_is_identity_for_ids_1_to_n(tmp_path: Path) -> None:
    """When the source item ids are exactly 1..N they are kept unchanged."""
    rows = [[2, 5, 1, 3], [4, 1, 2, 3, 5, 4]]
    path = _write(tmp_path / "toy.txt", [" ".join(map(str, [u + 1, *r])) for u, r in enumerate(rows)])
    seqs = read_s3rec(path)
    _assert_sequences(seqs, items=rows[0] + rows[1], offsets=[0, 4, 10], users=["1", "2"],
                      item_tokens=[None, "1", "2", "3", "4", "5"])


# ------------------------------------------------------------------------------------------------ SRA-CL


def test_sracl_groups_contiguous_lines_and_renumbers_items(tmp_path: Path) -> None:
    """``user item`` lines become one sequence per user (file order), items renumbered by ascending id."""
    lines = ["2 5", "2 3", "2 5", "9 1", "9 4", "9 3", "1 3", "1 1", "1 4"]
    seqs = read_sracl(_write(tmp_path / "toy.txt", lines))
    # Source ids 1, 3, 4, 5 -> 1, 2, 3, 4.
    _assert_sequences(seqs, items=[4, 2, 4, 1, 3, 2, 2, 1, 3], offsets=[0, 3, 6, 9], users=["2", "9", "1"],
                      item_tokens=[None, "1", "3", "4", "5"])
    assert seqs.first_line.tolist() == [1, 4, 7]


def test_sracl_and_s3rec_agree_on_the_same_sequences(tmp_path: Path) -> None:
    """The same sequences written in both formats read to identical arrays."""
    rows = {"4": [7, 2, 9], "2": [2, 2, 5, 7]}
    s3rec = read_s3rec(_write(tmp_path / "a.txt", [" ".join([u, *map(str, r)]) for u, r in rows.items()]))
    sracl = read_sracl(_write(tmp_path / "b.txt", [f"{u} {i}" for u, r in rows.items() for i in r]))
    assert np.array_equal(s3rec.items, sracl.items) and np.array_equal(s3rec.offsets, sracl.offsets)
    assert s3rec.user_tokens == sracl.user_tokens == ["4", "2"]
    assert s3rec.item_tokens == sracl.item_tokens == [None, "2", "5", "7", "9"]


# ------------------------------------------------------------------------------------------------ RecBole


def test_recbole_sorts_users_by_id_string_and_rows_by_time(tmp_path: Path) -> None:
    """Users in id-string order; rows by timestamp; equal timestamps keep file order; items by first appearance."""
    path = _write(tmp_path / "toy.inter", [
        RECBOLE_HEADER,
        _recbole_row("u2", "i9", "30"),   # line 2
        _recbole_row("u10", "i7", "5"),   # line 3: tie with line 5, comes first
        _recbole_row("u2", "i5", "10"),   # line 4
        _recbole_row("u10", "i5", "5"),   # line 5
        _recbole_row("u2", "i1", "20.5"),  # line 6
        _recbole_row("u10", "i9", "1"),   # line 7
    ])
    seqs = read_recbole_inter(path)
    # "u10" < "u2" as strings. u10: i9(1) i7(5) i5(5); u2: i5(10) i1(20.5) i9(30).
    _assert_sequences(seqs, items=[1, 2, 3, 3, 4, 1], offsets=[0, 3, 6], users=["u10", "u2"],
                      item_tokens=[None, "i9", "i7", "i5", "i1"])
    # The line of each user's first row in the sorted log.
    assert seqs.first_line.tolist() == [7, 4]


def test_recbole_finds_fields_by_name_in_any_column_order(tmp_path: Path) -> None:
    """Field lookup uses the header names (without ``:type``), not column positions."""
    path = _write(tmp_path / "toy.inter", [
        "timestamp:float\trating:float\titem_id:token\tuser_id:token",
        "3\t1\ta\t7", "1\t1\tb\t7", "2\t1\tc\t7",
    ])
    seqs = read_recbole_inter(path)
    _assert_sequences(seqs, items=[1, 2, 3], offsets=[0, 3], users=["7"], item_tokens=[None, "b", "c", "a"])


def test_recbole_custom_field_names(tmp_path: Path) -> None:
    """``user_field``/``item_field``/``time_field`` select other columns."""
    path = _write(tmp_path / "toy.inter", [
        "session:token\tproduct:token\tts:float\ttimestamp:float",
        "s\tp1\t2\t0", "s\tp2\t1\t0", "s\tp3\t3\t0",
    ])
    seqs = read_recbole_inter(path, user_field="session", item_field="product", time_field="ts")
    _assert_sequences(seqs, items=[1, 2, 3], offsets=[0, 3], users=["s"], item_tokens=[None, "p2", "p1", "p3"])


# ------------------------------------------------------------------------------------------------ Amazon

AMAZON_LINES = [
    _review("B", "x", 200),  # 1
    _review("A", "y", 100),  # 2: same-day tie with line 4, comes first
    _review("B", "z", 100),  # 3
    _review("A", "x", 100),  # 4
    _review("B", "x", 200),  # 5: exact duplicate of line 1
    _review("A", "w", 300),  # 6
    _review("B", "y", 300),  # 7
    _review("B", "x", 400),  # 8: same (user, item), other time: kept
]


def _check_amazon_toy(seqs: Sequences) -> None:
    # A: y x w (tie kept in file order); B: z x y x. Items by first appearance: y x w z.
    _assert_sequences(seqs, items=[1, 2, 3, 4, 2, 1, 2], offsets=[0, 3, 7], users=["A", "B"],
                      item_tokens=[None, "y", "x", "w", "z"])
    assert seqs.first_line.tolist() == [2, 3]


def test_amazon_plain_json(tmp_path: Path) -> None:
    """A plain ``.json`` file: duplicates dropped, (user, time) order, same-day ties in file order."""
    _check_amazon_toy(read_amazon_reviews(_write(tmp_path / "reviews_Toy_5.json", AMAZON_LINES), min_interactions=0))


def test_amazon_gzip_json(tmp_path: Path) -> None:
    """A gzipped ``.json.gz`` file reads exactly like the plain one."""
    path = tmp_path / "reviews_Toy_5.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in AMAZON_LINES))
    _check_amazon_toy(read_amazon_reviews(path, min_interactions=0))


def test_amazon_keeps_duplicates_when_asked(tmp_path: Path) -> None:
    """``drop_duplicates=False`` keeps the repeated (user, item, time) row."""
    seqs = read_amazon_reviews(_write(tmp_path / "r.json", AMAZON_LINES), min_interactions=0, drop_duplicates=False)
    assert seqs.offsets.tolist() == [0, 3, 8]
    assert seqs.sequence(1).tolist() == [4, 2, 2, 1, 2]


def test_amazon_reads_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked reading (tiny chunks) gives the same result and the same line numbers."""
    monkeypatch.setattr(interaction_logs, "_CHUNK_LINES", 3)
    _check_amazon_toy(read_amazon_reviews(_write(tmp_path / "r.json", AMAZON_LINES), min_interactions=0))
    bad = _write(tmp_path / "bad.json", [*AMAZON_LINES[:6], "{not json", *AMAZON_LINES[6:]])
    _raises_at(read_amazon_reviews, bad, 7, "JSON")


def _k_core_log() -> list[str]:
    """Five users x five items survive; V (4 reviews) goes, then item X (down to 4), then user W (down to 4)."""
    core_items = ["I1", "I2", "I3", "I4", "I5"]
    lines = []
    for u in range(1, 6):
        order = ["I3", "I1", "I5", "I2", "I4"] if u == 1 else core_items
        lines += [_review(f"U{u}", item, 10 * t) for t, item in enumerate(order, start=1)]
    lines += [_review(f"U{u}", "X", 60) for u in (1, 2, 3)]  # U1..U3 keep 5 after X goes
    lines += [_review("W", item, 10 * t) for t, item in enumerate(["I1", "I2", "I3", "I4", "X"], start=1)]
    lines += [_review("V", item, 10 * t) for t, item in enumerate(["X", "I5", "I1", "I2"], start=1)]
    return lines


def test_amazon_iterative_five_core(tmp_path: Path) -> None:
    """Removing V drops item X below 5, which drops W below 5: only U1..U5 x I1..I5 remain."""
    seqs = read_amazon_reviews(_write(tmp_path / "r.json", _k_core_log()))
    # U1 reviewed I3 I1 I5 I2 I4 first in the sorted log, which fixes the item numbering.
    _assert_sequences(seqs, items=[1, 2, 3, 4, 5] + [2, 4, 1, 5, 3] * 4, offsets=[0, 5, 10, 15, 20, 25],
                      users=["U1", "U2", "U3", "U4", "U5"], item_tokens=[None, "I3", "I1", "I5", "I2", "I4"])


def test_amazon_single_pass_would_keep_w(tmp_path: Path) -> None:
    """Without k-core filtering W and X are present, so the 5-core result above really needed the iteration."""
    seqs = read_amazon_reviews(_write(tmp_path / "r.json", _k_core_log()), min_interactions=0)
    assert "W" in seqs.user_tokens and "V" in seqs.user_tokens and "X" in seqs.item_tokens
    w = seqs.user_tokens.index("W")
    assert len(seqs.sequence(w)) == 5  # W passes the first user filter; only the cascade removes it


def test_amazon_duplicates_do_not_count_towards_the_core(tmp_path: Path) -> None:
    """A user with 4 distinct reviews plus an exact duplicate is removed by the 5-core filter."""
    lines = _k_core_log()[:25]  # the stable 5 x 5 core
    lines += [_review("Z", item, t) for t, item in enumerate(["I1", "I2", "I3", "I4", "I4"], start=1)]
    lines[-1] = _review("Z", "I4", 4)  # exact duplicate of Z's previous line
    seqs = read_amazon_reviews(_write(tmp_path / "r.json", lines))
    assert "Z" not in seqs.user_tokens
    assert seqs.num_users == 5 and seqs.num_interactions == 25
    kept = read_amazon_reviews(_write(tmp_path / "r2.json", lines), drop_duplicates=False)
    assert "Z" in kept.user_tokens


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("reader", "lines", "line", "expected"),
    [
        pytest.param(read_sracl, ["1 1", "1 2 3", "1 3"], 2, ["expected 2 fields", "got 3"], id="sracl-3-fields"),
        pytest.param(read_sracl, ["1 1", "1 2", "1", "1 3"], 3, ["expected 2 fields", "got 1"], id="sracl-1-field"),
        pytest.param(read_sracl, ["1 1", "1 2", "1 3", "u2 1"], 4, ["user id", "positive integer", "'u2'"],
                     id="sracl-user-not-int"),
        pytest.param(read_sracl, ["1 1", "1 2", "1 3.5"], 3, ["item id", "positive integer", "'3.5'"],
                     id="sracl-item-not-int"),
        pytest.param(read_sracl, ["1 1", "1 0", "1 3"], 2, ["item id", "0 is padding"], id="sracl-item-zero"),
        pytest.param(read_sracl, ["1 1", "1 2", "1 3", "-2 1"], 4, ["user id", "positive integer", "-2"],
                     id="sracl-user-negative"),
        pytest.param(read_sracl, ["1 1", "1 2", "1 3", "2 1", "2 2", "3 1", "3 2", "3 3"], 4,
                     ["user '2'", "2 interaction(s)", "at least 3"], id="sracl-short-user"),
        pytest.param(read_sracl, ["1 1", "1 2", "2 1", "2 2", "2 3", "1 3"], 6,
                     ["user 1 reappears", "line 1", "contiguous"], id="sracl-not-contiguous"),
        pytest.param(read_s3rec, ["1 1 2 3", "x 1 2 3"], 2, ["user id", "positive integer", "'x'"],
                     id="s3rec-user-not-int"),
        pytest.param(read_s3rec, ["1 1 2 3", "2 1 b 3"], 2, ["item id", "positive integer", "'b'"],
                     id="s3rec-item-not-int"),
        pytest.param(read_s3rec, ["1 1 2 3", "0 1 2 3"], 2, ["user id", "0 is padding"], id="s3rec-user-zero"),
        pytest.param(read_s3rec, ["1 1 -2 3"], 1, ["item id", "positive integer", "-2"], id="s3rec-item-negative"),
        pytest.param(read_s3rec, ["1 1 2 3", "2 4 5 6", "3 1 2", "4 1"], 3,
                     ["user '3'", "2 interaction(s)", "at least 3", "2 user(s)"], id="s3rec-short-user"),
        pytest.param(read_s3rec, ["1 1 2 3", "2 1 2 3", "1 4 5 6"], 3, ["user 1 appears again", "line 1"],
                     id="s3rec-user-twice"),
    ],
)
def test_sequence_file_errors_name_file_and_line(tmp_path: Path, reader, lines: list[str], line: int,
                                                 expected: list[str]) -> None:
    """Malformed S3-Rec/SRA-CL input raises DataFormatError at ``path:line`` saying what was expected."""
    _raises_at(reader, _write(tmp_path / "bad.txt", lines), line, *expected)


@pytest.mark.parametrize(
    ("reader", "name", "content"),
    [
        (read_s3rec, "empty.txt", ""),
        (read_s3rec, "blank.txt", "\n  \n"),
        (read_sracl, "empty.txt", ""),
        (read_recbole_inter, "empty.inter", ""),
        (read_amazon_reviews, "empty.json", ""),
    ],
)
def test_empty_file_error_names_the_file(tmp_path: Path, reader, name: str, content: str) -> None:
    """An empty file raises DataFormatError naming the path and saying it is empty."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match="empty file") as info:
        reader(path)
    assert str(path) in str(info.value)


def test_empty_gzip_file(tmp_path: Path) -> None:
    """An empty gzipped review file is reported as empty."""
    path = tmp_path / "reviews_Empty_5.json.gz"
    with gzip.open(path, "wb"):
        pass
    _raises_at(read_amazon_reviews, path, None, "empty file")


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist raises DataFormatError naming it, for every reader."""
    for reader in (read_s3rec, read_sracl, read_recbole_inter, read_amazon_reviews, read_yelp_reviews):
        _raises_at(reader, tmp_path / "nope.txt", None, "file not found")


def test_recbole_header_only(tmp_path: Path) -> None:
    """A header without rows names the file and reports no interactions."""
    _raises_at(read_recbole_inter, _write(tmp_path / "h.inter", [RECBOLE_HEADER]), None, "no interactions")


def test_recbole_missing_timestamp_field(tmp_path: Path) -> None:
    """A header without the time field is reported on line 1, naming the field."""
    path = _write(tmp_path / "bad.inter", ["user_id:token\titem_id:token\trating:float", "1\t1\t5", "1\t2\t5"])
    _raises_at(read_recbole_inter, path, 1, "no field 'timestamp'")


def test_recbole_non_numeric_timestamp(tmp_path: Path) -> None:
    """A timestamp that is not a number is reported on its own line."""
    rows = [_recbole_row("1", "1", "1"), _recbole_row("1", "2", "2"), _recbole_row("1", "3", "yesterday")]
    _raises_at(read_recbole_inter, _write(tmp_path / "bad.inter", [RECBOLE_HEADER, *rows]), 4,
               "numeric timestamp", "'yesterday'")


def test_recbole_short_user(tmp_path: Path) -> None:
    """A user with fewer than 3 rows is reported at the line where that user starts."""
    rows = [_recbole_row("a", str(i), str(i)) for i in range(3)] + [_recbole_row("b", "1", "5"),
                                                                    _recbole_row("b", "2", "6")]
    _raises_at(read_recbole_inter, _write(tmp_path / "bad.inter", [RECBOLE_HEADER, *rows]), 5,
               "user 'b'", "at least 3")


def test_amazon_line_not_json(tmp_path: Path) -> None:
    """A line that is not JSON is reported at its line (blank lines still count)."""
    path = _write(tmp_path / "bad.json", [AMAZON_LINES[0], "", "{'reviewerID': 'A'}", AMAZON_LINES[1]])
    _raises_at(read_amazon_reviews, path, 3, "expected one JSON object per line")


def test_amazon_missing_asin(tmp_path: Path) -> None:
    """A review without ``asin`` is reported at its line, naming the field."""
    missing = json.dumps({"reviewerID": "A", "unixReviewTime": 5})
    path = _write(tmp_path / "bad.json", [*AMAZON_LINES[:4], "", missing, *AMAZON_LINES[4:]])
    _raises_at(read_amazon_reviews, path, 6, "no 'asin'")


def test_amazon_short_user_after_filtering(tmp_path: Path) -> None:
    """Without k-core filtering a 2-review user is reported at the line of its first review."""
    lines = [*AMAZON_LINES, _review("C", "x", 1), _review("C", "y", 2)]
    _raises_at(read_amazon_reviews, _write(tmp_path / "r.json", lines), 9, "user 'C'", "at least 3",
               min_interactions=0)


def test_amazon_everything_filtered_out(tmp_path: Path) -> None:
    """A file whose users all fail the 5-core names the file and the filter."""
    _raises_at(read_amazon_reviews, _write(tmp_path / "r.json", AMAZON_LINES), None, "5-core")


# Errors the fast polars paths cannot locate: the precise fallback must still name the line.


def test_amazon_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    """A JSON array instead of a review object is reported at its line."""
    _raises_at(read_amazon_reviews, _write(tmp_path / "bad.json", [*AMAZON_LINES[:2], "[1, 2]", *AMAZON_LINES[2:]]),
               3, "JSON object")


def test_amazon_time_of_wrong_type(tmp_path: Path) -> None:
    """A quoted (string) ``unixReviewTime`` is reported at its line."""
    bad = json.dumps({"reviewerID": "A", "asin": "q", "unixReviewTime": "12 05, 2013"})
    _raises_at(read_amazon_reviews, _write(tmp_path / "bad.json", [*AMAZON_LINES[:4], bad, *AMAZON_LINES[4:]]), 5,
               "unixReviewTime")


def test_recbole_row_with_extra_field(tmp_path: Path) -> None:
    """A row with more tab-separated fields than the header is reported at its line."""
    rows = [_recbole_row("1", "1", "1"), _recbole_row("1", "2", "2") + "\textra", _recbole_row("1", "3", "3")]
    _raises_at(read_recbole_inter, _write(tmp_path / "bad.inter", [RECBOLE_HEADER, *rows]), 3)


def test_recbole_trailing_blank_line_is_ignored(tmp_path: Path) -> None:
    """A trailing blank line carries nothing, as in the S3-Rec/SRA-CL/Amazon readers."""
    rows = [_recbole_row("1", "1", "1"), _recbole_row("1", "2", "2"), _recbole_row("1", "3", "3")]
    seqs = read_recbole_inter(_write(tmp_path / "ok.inter", [RECBOLE_HEADER, *rows, ""]))
    assert seqs.items.tolist() == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ max_len


def test_max_len_below_one_is_rejected(tmp_path: Path) -> None:
    """``max_len=0`` is a ValueError both for SequenceSamples and for SeqRecDataModule."""
    from sracl_lightning.datasets.samples import SequenceSamples
    from sracl_lightning.training.datamodule import SeqRecDataModule

    path = _write(tmp_path / "toy.txt", ["1 1 2 3 4", "2 2 3 4"])
    seqs = read_s3rec(path)
    assert len(SequenceSamples(seqs, "train", max_len=1)) == 1  # the boundary value is accepted
    for bad in (0, -3):
        with pytest.raises(ValueError, match="max_len"):
            SequenceSamples(seqs, "train", max_len=bad)
        with pytest.raises(ValueError, match="max_len"):
            SeqRecDataModule(dataset=str(path), source_format="s3rec", data_root=str(tmp_path / "processed"),
                             max_len=bad)
    assert not (tmp_path / "processed").exists()


def test_integer_user_ids_are_canonical(tmp_path: Path) -> None:
    """``01`` and ``1`` are the same user: listing both is the 'appears again' error, not two users."""
    _raises_at(read_s3rec, _write(tmp_path / "dup.txt", ["1 1 2 3", "01 2 3 4"]), 2, "appears again")


# ------------------------------------------------------------------------------------------------ Yelp


def _yelp(user: str, business: str, date: str, **extra) -> str:
    """One line of the Yelp Open Dataset ``review.json`` (with some of the real file's other fields)."""
    return json.dumps({"review_id": f"r{user}{business}{date}", "user_id": user, "business_id": business,
                       "stars": 4.0, "useful": 0, "text": "Great tacos.", "date": date, **extra})


YELP_LINES = [
    _yelp("B", "x", "2019-03-01 10:00:00"),  # 1
    _yelp("A", "y", "2019-02-01 08:00:00"),  # 2: same-second tie with line 4, comes first
    _yelp("B", "z", "2019-02-01 08:00:00"),  # 3
    _yelp("A", "x", "2019-02-01 08:00:00"),  # 4
    _yelp("B", "x", "2019-03-01 10:00:00"),  # 5: exact duplicate of line 1
    _yelp("A", "w", "2019-12-31 23:59:59"),  # 6: last second of the window
    _yelp("B", "y", "2019-01-01 00:00:00"),  # 7: first second of the window
    _yelp("B", "x", "2019-03-01 10:00:01"),  # 8: same (user, item), one second later: kept
    _yelp("A", "v", "2018-12-31 23:59:59"),  # 9: before the window
    _yelp("B", "v", "2020-01-01 00:00:00"),  # 10: end of the window, excluded
]


def _check_yelp_toy(seqs: Sequences) -> None:
    # A: y x w (tie kept in file order); B: y z x x. Items by first appearance in the sorted log: y x w z; v is gone.
    _assert_sequences(seqs, items=[1, 2, 3, 1, 4, 2, 2], offsets=[0, 3, 7], users=["A", "B"],
                      item_tokens=[None, "y", "x", "w", "z"])
    assert seqs.first_line.tolist() == [2, 7]


def test_yelp_window_duplicates_ties_and_ids(tmp_path: Path) -> None:
    """2019 only (start inclusive, end exclusive), duplicates dropped, second-resolution ties in file order."""
    _check_yelp_toy(read_yelp_reviews(_write(tmp_path / "review.json", YELP_LINES), min_interactions=0))


def test_yelp_gzip_and_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gzipped file read in tiny chunks gives the same sequences and line numbers."""
    monkeypatch.setattr(interaction_logs, "_CHUNK_LINES", 3)
    path = tmp_path / "review.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in YELP_LINES))
    _check_yelp_toy(read_yelp_reviews(path, min_interactions=0))


def test_yelp_other_window_and_day_only_dates(tmp_path: Path) -> None:
    """Another window selects other reviews; a day-only date (older dumps) means midnight."""
    lines = [*YELP_LINES, _yelp("A", "u", "2018-12-30"), _yelp("A", "t", "2018-12-31")]
    seqs = read_yelp_reviews(_write(tmp_path / "review.json", lines), "2018-12-30", "2019-01-01", min_interactions=0)
    _assert_sequences(seqs, items=[1, 2, 3], offsets=[0, 3], users=["A"], item_tokens=[None, "u", "t", "v"])


def test_yelp_iterative_five_core(tmp_path: Path) -> None:
    """The 5-core cascade of the Amazon test, on Yelp lines: only U1..U5 x I1..I5 remain."""
    lines = [json.loads(line) for line in _k_core_log()]
    yelp = [_yelp(r["reviewerID"], r["asin"], f"2019-05-01 00:{r['unixReviewTime'] // 10:02d}:00") for r in lines]
    yelp += [_yelp("U1", "I1", "2018-05-01 00:00:00")] * 3  # outside the window: neither counted nor kept
    seqs = read_yelp_reviews(_write(tmp_path / "review.json", yelp))
    _assert_sequences(seqs, items=[1, 2, 3, 4, 5] + [2, 4, 1, 5, 3] * 4, offsets=[0, 5, 10, 15, 20, 25],
                      users=["U1", "U2", "U3", "U4", "U5"], item_tokens=[None, "I3", "I1", "I5", "I2", "I4"])


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param(_yelp("A", "q", "01/02/2019"), ["field 'date'", "YYYY-MM-DD", "'01/02/2019'"], id="date"),
        pytest.param(json.dumps({"user_id": "A", "date": "2019-01-02 00:00:00"}), ["no 'business_id'"],
                     id="no-business"),
        pytest.param(json.dumps({"user_id": "A", "business_id": "q", "date": 20190102}), ["field 'date'", "'20190102'"],
                     id="date-not-string"),
        pytest.param("{'user_id': 'A'}", ["expected one JSON object per line"], id="not-json"),
    ],
)
def test_yelp_bad_line_names_it(tmp_path: Path, bad: str, expected: list[str]) -> None:
    """A malformed review is reported at its line, even outside the date window."""
    path = _write(tmp_path / "review.json", [*YELP_LINES[:4], bad, *YELP_LINES[4:]])
    _raises_at(read_yelp_reviews, path, 5, *expected, min_interactions=0)


def test_yelp_amazon_file_is_rejected(tmp_path: Path) -> None:
    """An Amazon review file read as Yelp fails on its first line instead of producing anything."""
    _raises_at(read_yelp_reviews, _write(tmp_path / "r.json", AMAZON_LINES), 1, "no 'user_id'")


def test_yelp_nothing_in_window(tmp_path: Path) -> None:
    """A file without a review in the window names the window."""
    _raises_at(read_yelp_reviews, _write(tmp_path / "review.json", YELP_LINES), None, "no review dated",
               "2021-01-01", start="2021-01-01", end="2022-01-01")


def test_yelp_bad_window(tmp_path: Path) -> None:
    """A reversed or malformed window is a ValueError before the file is read."""
    path = _write(tmp_path / "review.json", YELP_LINES)
    with pytest.raises(ValueError, match="empty date window"):
        read_yelp_reviews(path, start="2020-01-01", end="2019-01-01")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        read_yelp_reviews(path, start="2019")


# ------------------------------------------------------------------------------------------------ id types


@pytest.mark.parametrize("chunk", [200_000, 700])
def test_amazon_numeric_id_among_many_digit_asins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  chunk: int) -> None:
    """Thousands of digit-only string asins (ISBNs) take the chunk-regex path; a JSON number among them is still
    found at its line, in any chunk, and string asins are never mistaken for numbers."""
    monkeypatch.setattr(interaction_logs, "_CHUNK_LINES", chunk)
    lines = [_review(f"U{i % 7}", str(1_000_000_000 + i), i) for i in range(3_000)]
    seqs = read_amazon_reviews(_write(tmp_path / "ok.json", lines), min_interactions=0)
    assert seqs.num_interactions == 3_000 and seqs.item_tokens[1] == "1000000000"
    lines[2_499] = json.dumps({"reviewerID": "U1", "asin": 1_000_002_499, "unixReviewTime": 5})
    _raises_at(read_amazon_reviews, _write(tmp_path / "bad.json", lines), 2_500, "field 'asin': expected a string",
               min_interactions=0)


def test_amazon_nested_look_alike_key_is_not_an_error(tmp_path: Path) -> None:
    """A nested ``"asin": 3`` (not the review's own field) that the chunk regex finds among many digit-only asins
    is confirmed by the precise parser and accepted."""
    lines = [_review("A", str(10_000 + i), i, related={"asin": i}) for i in range(2_100)]
    seqs = read_amazon_reviews(_write(tmp_path / "r.json", lines), min_interactions=0)
    assert seqs.item_tokens[:3] == [None, "10000", "10001"] and seqs.num_interactions == 2_100


def test_recbole_nan_rows_would_have_sorted_last(tmp_path: Path) -> None:
    """A NaN timestamp has no place in the order (polars sorts it last): refused at its line, naming the column."""
    rows = [_recbole_row("1", "1", "nan"), _recbole_row("1", "2", "2"), _recbole_row("1", "3", "3")]
    _raises_at(read_recbole_inter, _write(tmp_path / "bad.inter", [RECBOLE_HEADER, *rows]), 2,
               "field 'timestamp' (column 4)", "finite", "'nan'")


def test_recbole_trailing_space_would_split_a_user(tmp_path: Path) -> None:
    """``'1 '`` on some lines would be a second user: refused, naming file, line and column."""
    rows = [_recbole_row("1", str(i), str(i)) for i in range(3)] + [_recbole_row("1 ", "9", "9")]
    _raises_at(read_recbole_inter, _write(tmp_path / "bad.inter", [RECBOLE_HEADER, *rows]), 5,
               "field 'user_id' (column 1)", "leading or trailing whitespace", "'1 '")
