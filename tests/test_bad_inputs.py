"""The bad-input corpus: every reader, fed small hand-made files, names the file and the line of what is wrong.

``tests/bad_inputs/`` holds one case per file. :data:`CASES` maps each file to the reader that reads it, the line
the :class:`DataFormatError` must name and a key phrase of its message; :data:`VALID` maps the tricky-but-valid
files to their exact parsed result. Binary cases (a truncated or fake ``.gz``, bytes that are not UTF-8) are
generated into ``tmp_path`` for every reader that can meet them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from sracl_lightning.datasets.interaction_logs import read_amazon_reviews, read_recbole_inter, read_yelp_reviews
from sracl_lightning.datasets.item_text import (
    empty_record,
    read_amazon_meta,
    read_items_jsonl,
    read_recbole_item,
    read_yelp_business,
)
from sracl_lightning.datasets.sequence_files import read_s3rec, read_sracl
from sracl_lightning.datasets.sequences import DataFormatError

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parent / "bad_inputs"

#: Item tokens the item-text cases are read for (index 0 is the padding item).
META_TOKENS = [None, "A1", "B2"]
ITEMS_TOKENS = [None, "1", "2"]
BUSINESS_TOKENS = [None, "b1", "b2"]
MOVIE_TOKENS = [None, "20", "10", "30"]

#: Reader name -> ``call(path)``; the review readers without k-core filtering, so that tiny files are enough.
READERS: dict[str, Callable[[Path], object]] = {
    "s3rec": read_s3rec,
    "sracl": read_sracl,
    "recbole": read_recbole_inter,
    "amazon": partial(read_amazon_reviews, min_interactions=0),
    "yelp": partial(read_yelp_reviews, min_interactions=0),
    "amazon_meta": lambda path: read_amazon_meta(path, META_TOKENS),
    "items_jsonl": lambda path: read_items_jsonl(path, ITEMS_TOKENS),
    "yelp_business": lambda path: read_yelp_business(path, BUSINESS_TOKENS),
    "recbole_item": lambda path: read_recbole_item(path, MOVIE_TOKENS),
}


@dataclass(frozen=True)
class Case:
    """A corpus file that must be refused: read by ``reader``, at ``line``, with ``phrase`` in the message."""

    file: str
    reader: str
    line: int
    phrase: str


CASES = [
    # S3-Rec ``user i1 i2 ...``: ids are ASCII digits, 1 <= id < 2**63 (int() alone takes +1, 1_0 and Arabic digits).
    Case("s3rec_underscore_id.txt", "s3rec", 2, "item id must be a positive integer, got '1_0'"),
    Case("s3rec_plus_sign.txt", "s3rec", 2, "user id must be a positive integer, got '+2'"),
    Case("s3rec_arabic_indic_digit.txt", "s3rec", 2, "item id must be a positive integer, got '\u0661'"),
    Case("s3rec_fullwidth_digit.txt", "s3rec", 2, "item id must be a positive integer, got '\uff14'"),
    Case("s3rec_id_2_63.txt", "s3rec", 2, "item id must be a positive integer below 2**63, got 9223372036854775808"),
    Case("s3rec_huge_user_id.txt", "s3rec", 2, "user id must be a positive integer below 2**63"),
    Case("s3rec_nbsp_separator.txt", "s3rec", 2, "non-ASCII whitespace U+00A0 at column 4"),
    # SRA-CL ``user item``.
    Case("sracl_underscore_id.txt", "sracl", 3, "item id must be a positive integer, got '3_0'"),
    Case("sracl_plus_sign.txt", "sracl", 2, "item id must be a positive integer, got '+2'"),
    Case("sracl_arabic_indic_user.txt", "sracl", 4, "user id must be a positive integer, got '\u0662'"),
    Case("sracl_id_2_63.txt", "sracl", 3, "item id must be a positive integer below 2**63"),
    # RecBole .inter: RecBole's header rules; finite timestamps; tokens that would not silently split a user.
    Case("recbole_nan_timestamp.inter", "recbole", 3,
         "field 'timestamp' (column 4): expected a numeric timestamp (a finite number), got 'nan'"),
    Case("recbole_inf_timestamp.inter", "recbole", 4, "expected a numeric timestamp (a finite number), got 'inf'"),
    Case("recbole_trailing_space_user.inter", "recbole", 6,
         "field 'user_id' (column 1): a user id has leading or trailing whitespace: 'u2 '"),
    Case("recbole_leading_space_item.inter", "recbole", 3,
         "field 'item_id' (column 2): an item id has leading or trailing whitespace: ' i2'"),
    Case("recbole_quoted_user.inter", "recbole", 3, "field 'user_id' (column 1): a user id is in double quotes"),
    Case("recbole_na_item.inter", "recbole", 4, "field 'item_id' (column 2): expected an item id, got a missing "
                                                "value: 'NA'"),
    Case("recbole_empty_user.inter", "recbole", 3, "expected a user id, got a missing value: an empty field"),
    Case("recbole_unknown_type.inter", "recbole", 1,
         "header column 4: type 'datetime' of field 'timestamp' is not one of RecBole's"),
    Case("recbole_untyped_header.inter", "recbole", 1, "header column 1: expected 'name:type', got 'user_id'"),
    Case("recbole_duplicate_field.inter", "recbole", 1, "header column 4: field 'item_id' appears twice"),
    Case("recbole_token_timestamp.inter", "recbole", 1, "field 'timestamp' must be typed float, not token"),
    Case("recbole_bad_rating.inter", "recbole", 4,
         "field 'rating' (column 3) is typed float: expected a number, got 'five'"),
    Case("recbole_extra_field.inter", "recbole", 3, "expected 4 tab-separated fields as in the header, got 5"),
    # Amazon reviews: ids are JSON strings, unixReviewTime a 64-bit JSON integer.
    Case("amazon_int_asin.json", "amazon", 2, "field 'asin': expected a string, got 3"),
    Case("amazon_bool_reviewer.json", "amazon", 4, "field 'reviewerID': expected a string, got true"),
    Case("amazon_list_asin.json", "amazon", 3, "field 'asin': expected a string, got [\"x\"]"),
    Case("amazon_float_time.json", "amazon", 2, "field 'unixReviewTime': expected an integer (64-bit), got 1.5"),
    Case("amazon_bool_time.json", "amazon", 2, "field 'unixReviewTime': expected an integer (64-bit), got true"),
    Case("amazon_string_time.json", "amazon", 3,
         "field 'unixReviewTime': expected an integer (64-bit), got \"1300000000\""),
    Case("amazon_huge_time.json", "amazon", 2,
         "field 'unixReviewTime': expected an integer (64-bit), got 18446744073709551616"),
    # Yelp reviews.
    Case("yelp_int_business.json", "yelp", 2, "field 'business_id': expected a string, got 42"),
    Case("yelp_bool_user.json", "yelp", 3, "field 'user_id': expected a string, got false"),
    # Item text.
    Case("amazon_meta_int_asin.json", "amazon_meta", 2, "field 'asin': expected str, got 3"),
    Case("amazon_meta_huge_price.json", "amazon_meta", 2, "field 'price': expected a number"),
    Case("items_jsonl_bool_id.jsonl", "items_jsonl", 2, "field 'item_id': expected int, got True"),
    Case("items_jsonl_float_id.jsonl", "items_jsonl", 2, "field 'item_id': expected int, got 2.0"),
    Case("yelp_business_int_id.json", "yelp_business", 2, "field 'business_id': expected str, got 7"),
    Case("yelp_business_infinite_stars.json", "yelp_business", 2, "field 'stars': expected a number or null"),
    Case("recbole_item_trailing_space.item", "recbole_item", 3,
         "field 'item_id' (column 1): an item id has leading or trailing whitespace: '20 '"),
    Case("recbole_item_twice.item", "recbole_item", 4, "item_id '10' appears again (first on line 2)"),
    Case("recbole_item_bad_price.item", "recbole_item", 3,
         "field 'price' (column 3) is typed float: expected a number, got 'cheap'"),
]


def _movie(item: int, source_id: str, title: str | None, year: str | None, categories: list[str]) -> dict:
    return {**empty_record(item, source_id), "title": title, "categories": categories, "extra": {"release_year": year}}


#: Tricky but valid files -> (reader, what the result must be: a Sequences' fields, or the item-text records).
VALID: dict[str, tuple[str, dict | list]] = {
    # Leading zeros are canonical ("007" is user 7), 2**63 - 1 is the largest id, tabs and double spaces separate.
    "s3rec_valid_edge_ids.txt": ("s3rec", {"items": [4, 1, 2, 2, 3, 1], "offsets": [0, 3, 6], "users": ["7", "8"],
                                           "item_tokens": [None, "1", "2", "3", "9223372036854775807"]}),
    "sracl_valid_crlf.txt": ("sracl", {"items": [2, 1, 2], "offsets": [0, 3], "users": ["5"],
                                       "item_tokens": [None, "10", "30"]}),
    # CRLF, a quote inside a token (literal for RecBole too), a padded "1e3" timestamp, NA and empty ratings (NaN
    # to RecBole, not an error), a trailing blank line; ties on time keep file order.
    "recbole_valid_tricky.inter": ("recbole", {"items": [1, 2, 3], "offsets": [0, 3], "users": ['u"1'],
                                               "item_tokens": [None, "i1", "i2", "i3"]}),
    # Digit-only asins that are JSON strings are ids like any other (not mistaken for coerced numbers).
    "amazon_valid_digit_asins.json": ("amazon", {"items": [1, 2, 3], "offsets": [0, 3], "users": ["A"],
                                                 "item_tokens": [None, "0205616461", "B00", "1304139212"]}),
    # MovieLens layout: token_seq title joined back, class split on spaces, a quoted title unquoted, item 30 absent.
    "recbole_item_valid_movielens.item": ("recbole_item", [
        None,
        _movie(1, "20", "Heat, The", None, []),
        _movie(2, "10", "Toy Story (1995)", "1995", ["Animation", "Children's", "Comedy"]),
        empty_record(3, "30"),
    ]),
    # RecBole's Amazon layout: sales_type + sales_rank -> extra["salesRank"], comma-separated categories.
    "recbole_item_valid_amazon.item": ("amazon_recbole_item", [
        None,
        {**empty_record(1, "A1"), "title": "Rose Toner 8 oz", "brand": "Vela",
         "categories": ["Beauty", "Skin Care", "Face"], "price": 12.5, "extra": {"salesRank": {"Beauty": 123.0}}},
        {**empty_record(2, "B2"), "title": "Clay Mask", "categories": ["Beauty"]},
    ]),
}


def _read(reader: str, path: Path):
    if reader == "amazon_recbole_item":
        return read_recbole_item(path, META_TOKENS)
    return READERS[reader](path)


def _assert_error_at(reader: str, path: Path, line: int, phrase: str) -> DataFormatError:
    """``reader`` refuses ``path`` with a DataFormatError whose message starts ``path:line: `` and holds ``phrase``."""
    with pytest.raises(DataFormatError) as info:
        _read(reader, path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert phrase in message, (phrase, message)
    assert info.value.path == str(path) and info.value.line == line
    assert "\n" not in message
    return info.value


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_corpus_file_is_refused_at_its_line(case: Case) -> None:
    """Each bad corpus file raises a DataFormatError naming the file and the line, saying what is wrong."""
    _assert_error_at(case.reader, CORPUS / case.file, case.line, case.phrase)


@pytest.mark.parametrize("name", list(VALID))
def test_tricky_valid_file_reads_exactly(name: str) -> None:
    """Tricky-but-valid corpus files read to exactly the expected sequences or records."""
    reader, expected = VALID[name]
    result = _read(reader, CORPUS / name)
    if isinstance(expected, list):
        assert result == expected
    else:
        assert result.items.tolist() == expected["items"]
        assert result.offsets.tolist() == expected["offsets"]
        assert result.user_tokens == expected["users"]
        assert result.item_tokens == expected["item_tokens"]


def test_every_corpus_file_has_exactly_one_case() -> None:
    """The folder and the tables agree: no untested file, no case without its file."""
    names = [c.file for c in CASES] + list(VALID)
    assert len(names) == len(set(names))
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(names)
    assert {c.reader for c in CASES} == set(READERS)  # every reader is covered


# ------------------------------------------------------------------------------------------------ generated (binary)

#: One good line per reader that reads JSON lines, for the generated gzip and UTF-8 cases.
_JSON_LINES = {
    "amazon": lambda i: json.dumps({"reviewerID": "A", "asin": f"i{i}", "unixReviewTime": i}),
    "yelp": lambda i: json.dumps({"user_id": "u", "business_id": f"b{i}", "date": "2019-03-01 00:00:00"}),
    "amazon_meta": lambda i: json.dumps({"asin": "A1" if i == 0 else f"X{i}", "title": "t"}),
    "items_jsonl": lambda i: json.dumps({"item_id": i + 1, "title": "t"}),
    "yelp_business": lambda i: json.dumps({"business_id": "b1" if i == 0 else f"x{i}", "name": "n"}),
}


@pytest.mark.parametrize("reader", list(_JSON_LINES))
def test_truncated_gzip_names_the_line(tmp_path: Path, reader: str) -> None:
    """A ``.gz`` cut short is an error at the first line it could not deliver, not a shorter file (was EOFError)."""
    text = "".join(_JSON_LINES[reader](i) + "\n" for i in range(20_000)).encode()
    path = tmp_path / "cut.json.gz"
    whole = gzip.compress(text)
    path.write_bytes(whole[: len(whole) // 2])
    with gzip.open(path, "rb") as f:  # how many whole lines survive the cut, counted independently
        survived = 0
        try:
            for _ in f:
                survived += 1
        except EOFError:
            pass
    _assert_error_at(reader, path, survived + 1, "the gzip file is truncated")


@pytest.mark.parametrize("reader", list(_JSON_LINES))
def test_fake_gzip_is_refused(tmp_path: Path, reader: str) -> None:
    """Plain text named ``.gz`` is an error at line 1 (was BadGzipFile, without a line)."""
    path = tmp_path / "plain.json.gz"
    path.write_text(_JSON_LINES[reader](0) + "\n", encoding="utf-8")
    _assert_error_at(reader, path, 1, "not a gzip file")


def test_gzip_data_under_a_plain_name_is_read(tmp_path: Path) -> None:
    """Gzip data named ``.json`` is recognised by its magic bytes and read, with the right line numbers."""
    lines = [_JSON_LINES["amazon"](i) for i in range(3)] + ['{"reviewerID": "A", "asin": 5, "unixReviewTime": 9}']
    path = tmp_path / "reviews.json"
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    _assert_error_at("amazon", path, 4, "field 'asin': expected a string, got 5")


#: Reader -> (a file whose line 2 holds a byte 0xff at byte column 4, its name).
_NOT_UTF8 = {
    "s3rec": (b"1 1 2 3\n2 4\xff 5 6\n", "seq.txt"),
    "sracl": (b"1 1\n1 2\xff\n1 3\n", "seq.txt"),
    "recbole": (b"user_id:token\titem_id:token\ttimestamp:float\nu1\t\xffi\t1\nu1\ti2\t2\n", "x.inter"),
    "recbole_item": (b"item_id:token\ttitle:token\n10\t\xffToy\n", "x.item"),
    **{reader: (f"{line(0)}\n".encode() + b'{"\xff": 1}\n', "x.json") for reader, line in _JSON_LINES.items()},
}


@pytest.mark.parametrize("reader", list(_NOT_UTF8))
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path: Path, reader: str) -> None:
    """A byte that is not UTF-8 is an error naming the file, the line and the column (was UnicodeDecodeError)."""
    data, name = _NOT_UTF8[reader]
    path = tmp_path / name
    path.write_bytes(data)
    column = data.split(b"\n")[1].index(b"\xff") + 1
    _assert_error_at(reader, path, 2, f"expected UTF-8 text: byte 0xff at column {column}")
