"""Timestamped interaction logs -> chronological user sequences, with ``polars``.

Formats:

* RecBole atomic ``.inter`` files: tab-separated, typed header such as ``user_id:token  item_id:token
  timestamp:float``.
* Amazon 2014 review files ``reviews_<Category>_5.json(.gz)``: one JSON object per line with ``reviewerID``,
  ``asin`` and ``unixReviewTime``. Read in chunks, keeping three columns, so large files never sit in RAM whole.
* Yelp Open Dataset ``review.json``: one JSON object per line with ``user_id``, ``business_id`` and ``date``
  (``YYYY-MM-DD HH:MM:SS``); read in chunks like the Amazon files and cut to a date window.

The rules follow the released preprocessing (SPEC §2.1): optional removal of duplicate (user, item, time) rows,
iterative k-core filtering, a *stable* sort by (user id string, time) so that same-time ties keep file order,
users numbered in that order and items by first appearance in the sorted log.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from sracl_lightning.sequences import DataFormatError, Sequences

_CHUNK_LINES = 200_000


def k_core(log: pl.DataFrame, k: int) -> pl.DataFrame:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left (``k <= 1``: no-op)."""
    if k <= 1:
        return log
    while True:
        before = log.height
        log = log.filter(pl.len().over("user") >= k)
        log = log.filter(pl.len().over("item") >= k)
        if log.height == before:
            return log


def log_to_sequences(
    log: pl.DataFrame, source: str | Path, *, min_interactions: int = 5, drop_duplicates: bool = True
) -> Sequences:
    """Turn a log with columns ``user`` (str), ``item`` (str), ``time`` (numeric), ``line`` (int) into sequences.

    Args:
        log: One row per interaction; ``line`` is the 1-based source line, used for ordering ties and errors.
        source: File name for error messages.
        min_interactions: k of the iterative k-core filter (5 in the paper; 0 or 1 disables it).
        drop_duplicates: Drop repeated (user, item, time) rows, keeping the first (released Amazon code).
    """
    if log.height == 0:
        raise DataFormatError(source, "no interactions found (empty file?)")
    if drop_duplicates:
        log = log.unique(subset=["user", "item", "time"], keep="first", maintain_order=True)
    log = k_core(log, min_interactions)
    if log.height == 0:
        raise DataFormatError(source, f"no interactions left after {min_interactions}-core filtering")
    # polars' sort is stable with maintain_order=True: same-time ties keep file order.
    log = log.sort(["user", "time", "line"], maintain_order=True)
    users = log.group_by("user", maintain_order=True).agg(pl.len().alias("n"), pl.col("line").first())
    item_codes = log.select(pl.col("item").unique(maintain_order=True))["item"]
    item_index = pl.DataFrame({"item": item_codes, "id": np.arange(1, len(item_codes) + 1, dtype=np.int32)})
    items = log.join(item_index, on="item", how="left", maintain_order="left")["id"].to_numpy()
    offsets = np.zeros(users.height + 1, dtype=np.int64)
    np.cumsum(users["n"].to_numpy(), out=offsets[1:])
    sequences = Sequences(
        items=items.astype(np.int32),
        offsets=offsets,
        user_tokens=users["user"].to_list(),
        item_tokens=[None, *item_codes.to_list()],
        first_line=users["line"].to_numpy().astype(np.int64),
    )
    sequences.validate(source)
    return sequences


def _first_bad_row(frame: pl.DataFrame, column: str) -> int | None:
    bad = frame.with_row_index("_i").filter(pl.col(column).is_null())
    return None if bad.height == 0 else int(bad["_i"][0])


def read_recbole_inter(
    path: str | Path,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    min_interactions: int = 0,
    drop_duplicates: bool = False,
) -> Sequences:
    """Read a RecBole atomic ``.inter`` file and order each user's rows by the timestamp column.

    Field names are given without their ``:type`` suffix. By default no filtering is applied: RecBole files
    are usually already filtered, and users with fewer than 3 interactions are reported as an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    with path.open("r", encoding="utf-8") as f:
        header = f.readline().rstrip("\n\r")
    if not header:
        raise DataFormatError(path, "empty file: expected a typed header such as 'user_id:token\\titem_id:token\\t"
                                    "timestamp:float'", line=1)
    columns = header.split("\t")
    names = [c.split(":", 1)[0] for c in columns]
    for field in (user_field, item_field, time_field):
        if field not in names:
            raise DataFormatError(path, f"header has no field {field!r} (found {names})", line=1)
    try:
        frame = pl.read_csv(
            path, separator="\t", has_header=True, new_columns=names, infer_schema=False, quote_char=None,
        ).select(user_field, item_field, time_field)  # all columns are read, so ragged rows are caught
    except pl.exceptions.PolarsError as err:
        line = _first_line_with_field_count_other_than(path, len(names))
        raise DataFormatError(path, f"expected {len(names)} tab-separated fields as in the header, {err}",
                              line=line) from None
    frame = frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("_line"))  # header is line 1
    # Blank lines (e.g. a trailing one) come back as rows of nulls and carry nothing.
    frame = frame.filter(~pl.all_horizontal(pl.col(user_field, item_field, time_field).is_null()))
    log = frame.select(
        pl.col(user_field).alias("user"),
        pl.col(item_field).alias("item"),
        pl.col(time_field).cast(pl.Float64, strict=False).alias("time"),
        pl.col("_line").alias("line"),
    )
    for column, expected in (("user", "a user id"), ("item", "an item id"), ("time", "a numeric timestamp")):
        row = _first_bad_row(log, column)
        if row is not None:
            raw = frame[row, {"user": user_field, "item": item_field, "time": time_field}[column]]
            raise DataFormatError(path, f"field {column!r}: expected {expected}, got {raw!r}",
                                  line=int(log["line"][row]))
    return log_to_sequences(log, path, min_interactions=min_interactions, drop_duplicates=drop_duplicates)


def _first_line_with_field_count_other_than(path: Path, expected: int) -> int | None:
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.rstrip("\n\r")
            if text and len(text.split("\t")) != expected:
                return lineno
    return None


def _line_chunks(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (first line number, lines) in chunks; transparently gunzips ``.gz`` files."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        chunk: list[bytes] = []
        start = 1
        for lineno, line in enumerate(f, start=1):
            chunk.append(line)
            if len(chunk) == _CHUNK_LINES:
                yield start, chunk
                chunk, start = [], lineno + 1
        if chunk:
            yield start, chunk


_AMAZON_FIELDS = {"reviewerID": pl.String, "asin": pl.String, "unixReviewTime": pl.Int64}
_YELP_FIELDS = {"user_id": pl.String, "business_id": pl.String, "date": pl.String}
_PYTHON_TYPES = {pl.String: str, pl.Int64: int}


def _check_review_line(path: Path, lineno: int, line: bytes, fields: dict[str, pl.DataType]) -> None:
    """Raise a :class:`DataFormatError` naming ``lineno`` if the line is not a usable review object."""
    try:
        review = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, f"expected one JSON object per line: {err.msg}", line=lineno) from None
    if not isinstance(review, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(review).__name__}", line=lineno)
    for field, dtype in fields.items():
        kind = _PYTHON_TYPES[dtype]
        if field in review and review[field] is not None and not isinstance(review[field], kind):
            raise DataFormatError(path, f"field {field!r}: expected {kind.__name__}, got {review[field]!r}",
                                  line=lineno)


def _parse_review_chunk(path: Path, start: int, lines: list[bytes], fields: dict[str, pl.DataType]) -> pl.DataFrame:
    """Parse one chunk of JSON lines into the ``fields`` columns plus ``line``; every field is required."""
    kept = [start + i for i, line in enumerate(lines) if line.strip()]  # the JSON reader skips blank lines
    try:
        frame = pl.read_ndjson(io.BytesIO(b"".join(lines)), schema=fields)
    except pl.exceptions.PolarsError:
        frame = None
    if frame is None or frame.height != len(kept):
        # Find the offending line with the slow, precise parser so the error can name it.
        for lineno in kept:
            _check_review_line(path, lineno, lines[lineno - start], fields)
        raise DataFormatError(path, f"could not parse the review lines {start}..{start + len(lines) - 1}")
    frame = frame.with_columns(pl.Series("line", kept, dtype=pl.Int64))
    for field in fields:
        row = _first_bad_row(frame, field)
        if row is not None:
            raise DataFormatError(path, f"review has no {field!r} (expected {', '.join(fields)})",
                                  line=int(frame["line"][row]))
    return frame


def read_amazon_reviews(
    path: str | Path, *, min_interactions: int = 5, drop_duplicates: bool = True
) -> Sequences:
    """Read an Amazon 2014 review file (``reviews_<Category>_5.json[.gz]``) into 5-core chronological sequences."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    frames = [_parse_review_chunk(path, start, lines, _AMAZON_FIELDS) for start, lines in _line_chunks(path)]
    if not frames:
        raise DataFormatError(path, "empty file: expected one JSON review per line")
    log = pl.concat(frames).select(
        pl.col("reviewerID").alias("user"), pl.col("asin").alias("item"), pl.col("unixReviewTime").alias("time"),
        "line",
    )
    return log_to_sequences(log, path, min_interactions=min_interactions, drop_duplicates=drop_duplicates)


def _epoch_seconds(day: str, what: str) -> int:
    try:
        parsed = dt.datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{what} must be a date 'YYYY-MM-DD', got {day!r}") from None
    return calendar.timegm(parsed.timetuple())


def _yelp_chunk(path: Path, start: int, lines: list[bytes], window: tuple[int, int]) -> pl.DataFrame:
    """One chunk of ``review.json`` as (user, item, time in seconds, line), restricted to the date window."""
    frame = _parse_review_chunk(path, start, lines, _YELP_FIELDS)
    date = pl.col("date").str.strip_chars()
    # Current dumps write "YYYY-MM-DD HH:MM:SS"; some older ones only the day.
    parsed = pl.coalesce(
        date.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False),
        date.str.strptime(pl.Datetime("us"), "%Y-%m-%d", strict=False),
    )
    frame = frame.with_columns(parsed.dt.epoch("s").alias("time"))
    row = _first_bad_row(frame, "time")
    if row is not None:
        raise DataFormatError(path, f"field 'date': expected 'YYYY-MM-DD HH:MM:SS', got {frame['date'][row]!r}",
                              line=int(frame["line"][row]))
    return frame.filter(pl.col("time").is_between(window[0], window[1], closed="left")).select(
        pl.col("user_id").alias("user"), pl.col("business_id").alias("item"), "time", "line",
    )


def read_yelp_reviews(
    path: str | Path,
    start: str = "2019-01-01",
    end: str = "2020-01-01",
    *,
    min_interactions: int = 5,
    drop_duplicates: bool = True,
) -> Sequences:
    """Read the Yelp Open Dataset ``review.json`` into chronological sequences, as the released code (SPEC §2.1).

    Keeps reviews with ``start <= date < end`` (the paper's Yelp: the year 2019), then applies the same rules as
    the Amazon path: duplicate (user, business, time) rows dropped, iterative 5-core (907,284 -> 207,952 rows for
    the paper), stable sort by (user id string, time), ids by first appearance. Times have one-second resolution;
    same-second ties keep file order. The file is read in chunks and filtered by date chunk by chunk, so the
    multi-gigabyte dump never sits in RAM whole.

    Args:
        path: ``review.json`` (or ``.json.gz``), one JSON object per line with ``user_id``, ``business_id`` and
            ``date``.
        start: First day kept, ``YYYY-MM-DD``.
        end: First day no longer kept, ``YYYY-MM-DD``.
        min_interactions: k of the iterative k-core filter (0 or 1 disables it).
        drop_duplicates: Drop repeated (user, business, time) rows, keeping the first.

    Raises:
        DataFormatError: on a malformed line, a missing field, an unreadable date, an empty file, or when no
            review falls in the window.
        ValueError: on a malformed or empty window.
    """
    path = Path(path)
    window = (_epoch_seconds(start, "start"), _epoch_seconds(end, "end"))
    if window[0] >= window[1]:
        raise ValueError(f"empty date window: start {start} must come before end {end}")
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    frames = [_yelp_chunk(path, first, lines, window) for first, lines in _line_chunks(path)]
    if not frames:
        raise DataFormatError(path, "empty file: expected one JSON review per line")
    log = pl.concat(frames)
    if log.height == 0:
        raise DataFormatError(path, f"no review dated {start} <= date < {end}")
    return log_to_sequences(log, path, min_interactions=min_interactions, drop_duplicates=drop_duplicates)
