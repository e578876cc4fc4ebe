"""Timestamped interaction logs -> chronological user sequences, with ``polars``.

Formats:

* RecBole atomic ``.inter`` files: tab-separated, typed header such as ``user_id:token  item_id:token
  timestamp:float``.
* Amazon 2014 review files ``reviews_<Category>_5.json(.gz)``: one JSON object per line with ``reviewerID``,
  ``asin`` and ``unixReviewTime``. Read in chunks, keeping three columns, so large files never sit in RAM whole.
* Yelp Open Dataset ``review.json``: one JSON object per line with ``user_id``, ``business_id`` and ``date``
  (``YYYY-MM-DD HH:MM:SS``); read in chunks like the Amazon files and cut to a date window.

The rules follow the released preprocessing (docs/method.md#datasets-and-preprocessing): optional removal of
duplicate (user, item, time) rows, iterative k-core filtering, a *stable* sort by (user id string, time) so that
same-time ties keep file order, users numbered in that order and items by first appearance in the sorted log.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from sracl_lightning.datasets.sequences import DataFormatError, Sequences

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


#: RecBole's atomic-file field types (``recbole.utils.FeatureType``); its reader refuses any other.
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")

#: Strings pandas' ``read_csv`` (RecBole's reader) turns into NaN even in a ``str`` column; RecBole then drops a row
#: whose user or item is NaN, so such an id would mean a row here and no row there.
PANDAS_NA_STRINGS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def decode_error(path: Path, data: bytes, err: UnicodeDecodeError, *, first_line: int = 1,
                 offset: int | None = None) -> DataFormatError:
    """The DataFormatError of undecodable bytes in ``data``, which starts at ``first_line`` (and at byte ``offset``
    of the file, when known; for a ``.gz`` it is an offset into the decompressed text)."""
    line_start = data.rfind(b"\n", 0, err.start) + 1
    where = "" if offset is None else f" (byte offset {offset + err.start})"
    return DataFormatError(path, f"expected UTF-8 text: byte 0x{data[err.start]:02x} at column "
                                 f"{err.start - line_start + 1}{where} cannot be decoded ({err.reason})",
                           line=first_line + data.count(b"\n", 0, err.start))


def read_recbole_header(path: Path) -> list[tuple[str, str]]:
    """The ``(field, type)`` pairs of a RecBole atomic file's first line, checked as RecBole checks them.

    RecBole splits each tab-separated header entry on ``:`` into exactly a name and one of :data:`RECBOLE_TYPES`
    and refuses anything else; a name given twice is refused too (pandas would rename the second one).
    """
    with path.open("rb") as f:
        raw = f.readline()
    try:
        header = raw.decode("utf-8").rstrip("\n\r")
    except UnicodeDecodeError as err:
        raise decode_error(path, raw, err, offset=0) from None
    if not header:
        raise DataFormatError(path, "empty file: expected a typed header such as 'user_id:token\\titem_id:token\\t"
                                    "timestamp:float'", line=1)
    fields: list[tuple[str, str]] = []
    for column, entry in enumerate(header.split("\t"), start=1):
        parts = entry.split(":")
        if len(parts) != 2 or not parts[0] or parts[0] != parts[0].strip():
            raise DataFormatError(path, f"header column {column}: expected 'name:type', got {entry!r}", line=1)
        if parts[1] not in RECBOLE_TYPES:
            raise DataFormatError(path, f"header column {column}: type {parts[1]!r} of field {parts[0]!r} is not "
                                        f"one of RecBole's {', '.join(RECBOLE_TYPES)}", line=1)
        if any(name == parts[0] for name, _ in fields):
            raise DataFormatError(path, f"header column {column}: field {parts[0]!r} appears twice", line=1)
        fields.append((parts[0], parts[1]))
    return fields


def read_recbole_frame(path: Path, fields: list[tuple[str, str]]) -> pl.DataFrame:
    """Every column of a RecBole atomic file as strings, plus ``_line`` (1-based file line); blank lines dropped.

    Fields are tab-separated; quotes are not interpreted (see :func:`check_recbole_tokens`). A row with more fields
    than the header is an error; one with fewer has nulls in the missing trailing fields (pandas' NaN).
    """
    names = [name for name, _ in fields]
    try:
        frame = pl.read_csv(path, separator="\t", has_header=True, new_columns=names, infer_schema=False,
                            quote_char=None)
    except pl.exceptions.PolarsError as err:
        raise _locate_read_error(path, len(names), err) from None
    frame = frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("_line"))  # header is line 1
    # Blank lines (e.g. a trailing one) come back as rows of nulls and carry nothing.
    return frame.filter(~pl.all_horizontal(pl.col(names).is_null()))


def first_row(frame: pl.DataFrame, bad: pl.Expr) -> int | None:
    """Index of the first row of ``frame`` where ``bad`` is true (null counts as false), or ``None``."""
    hit = frame.select(bad.fill_null(False).arg_true().first()).item()
    return None if hit is None else int(hit)


def _column(fields: list[tuple[str, str]], name: str) -> str:
    return f"field {name!r} (column {[n for n, _ in fields].index(name) + 1})"


def check_recbole_tokens(path: Path, frame: pl.DataFrame, fields: list[tuple[str, str]],
                         what: dict[str, str]) -> None:
    """Refuse id tokens (``what``: field -> "a user id") that would silently make two ids of one.

    * missing: an empty field, or one of :data:`PANDAS_NA_STRINGS`, which RecBole drops as NaN;
    * leading or trailing whitespace: ``'u1 '`` and ``'u1'`` would be two users;
    * a leading or trailing double quote: RecBole's pandas reader strips quotes (``"u1"`` is ``u1`` there), this
      reader does not interpret them, so the two would disagree.
    """
    checks = []
    for name, expected in what.items():
        value = pl.col(name)
        checks += [
            (name, value.is_null() | value.is_in(PANDAS_NA_STRINGS), f"expected {expected}, got a missing value"),
            (name, value != value.str.strip_chars(), f"{expected} has leading or trailing whitespace"),
            (name, value.str.starts_with('"') | value.str.ends_with('"'),
             f"{expected} is in double quotes (RecBole strips them and would read another id)"),
        ]
    # One parallel pass says whether anything is wrong; only then is the first offending row looked up.
    found = frame.select(bad.fill_null(False).any().alias(str(i)) for i, (_, bad, _) in enumerate(checks)).row(0)
    for (name, bad, message), hit in zip(checks, found, strict=True):
        row = first_row(frame, bad) if hit else None
        if row is not None:
            raw = frame[row, name]
            shown = "an empty field" if raw is None else repr(raw)
            raise DataFormatError(path, f"{_column(fields, name)}: {message}: {shown}", line=int(frame["_line"][row]))


def parse_recbole_floats(path: Path, frame: pl.DataFrame, fields: list[tuple[str, str]],
                         expected: dict[str, str] | None = None) -> pl.DataFrame:
    """``frame`` with every ``float`` field parsed as RecBole parses it; a value that is no number is an error.

    Surrounding whitespace is allowed; an empty field and :data:`PANDAS_NA_STRINGS` are null (NaN to RecBole).
    ``expected`` (field -> what it holds, default "a number") names the fields checked first and their message.
    """
    expected = expected or {}
    floats = [name for name, kind in fields if kind == "float"]
    parsed = frame.with_columns(pl.col(floats).cast(pl.Float64, strict=False))  # "nan" is NaN, "inf" inf
    for name in sorted(floats, key=lambda n: n not in expected):
        if parsed[name].null_count() == frame[name].null_count():
            continue  # every value is a number (the common case, decided without a pass over the column)
        text = frame[name].str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        bad = number.is_null() & text.is_not_null() & ~text.is_in(PANDAS_NA_STRINGS)  # "NA", "null": NaN to pandas
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataFormatError(path, f"{_column(fields, name)} is typed float: expected "
                                        f"{expected.get(name, 'a number')}, got {frame[row, name]!r}",
                                  line=int(frame["_line"][row]))
        parsed = parsed.with_columns(number.alias(name))
    return parsed


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

    The file is read as RecBole reads it (``recbole.data.dataset.Dataset._load_feat``): UTF-8, tab-separated, a
    ``name:type`` header with RecBole's types, ``float`` fields parsed as numbers, tokens kept as strings. Where
    RecBole would quietly produce something else, or the order would be arbitrary, this reader refuses, naming the
    file, line and field: a timestamp that is missing, ``nan`` or infinite; a user or item token that is missing, has
    leading or trailing whitespace (``'u1 '`` would be a second user) or is quoted (RecBole strips the quotes, this
    reader does not). The user and item fields must be typed ``token``, the time field ``float``.

    Raises:
        DataFormatError: on any of the above, a malformed header, a row with more fields than the header, a
            non-number in any ``float`` field, text that is not UTF-8, or a user with fewer than 3 interactions.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    fields = read_recbole_header(path)
    types = dict(fields)
    for field, expected in ((user_field, "token"), (item_field, "token"), (time_field, "float")):
        if field not in types:
            raise DataFormatError(path, f"header has no field {field!r} (found {list(types)})", line=1)
        if types[field] != expected:
            raise DataFormatError(path, f"header: field {field!r} must be typed {expected}, not {types[field]}",
                                  line=1)
    frame = read_recbole_frame(path, fields)
    check_recbole_tokens(path, frame, fields, {user_field: "a user id", item_field: "an item id"})
    parsed = parse_recbole_floats(path, frame, fields, {time_field: "a numeric timestamp"})
    row = first_row(parsed, pl.col(time_field).is_null() | ~pl.col(time_field).is_finite())
    if row is not None:
        raise DataFormatError(path, f"{_column(fields, time_field)}: expected a numeric timestamp (a finite number), "
                                    f"got {frame[row, time_field]!r}", line=int(frame["_line"][row]))
    log = parsed.select(
        pl.col(user_field).alias("user"),
        pl.col(item_field).alias("item"),
        pl.col(time_field).alias("time"),
        pl.col("_line").alias("line"),
    )
    return log_to_sequences(log, path, min_interactions=min_interactions, drop_duplicates=drop_duplicates)


def _locate_read_error(path: Path, expected: int, err: Exception) -> DataFormatError:
    """Name the line behind a failed CSV read: the first undecodable one, or the first with a wrong field count."""
    with path.open("rb") as f:
        offset = 0
        for lineno, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8").rstrip("\n\r")
            except UnicodeDecodeError as decode_err:
                return decode_error(path, line, decode_err, first_line=lineno, offset=offset)
            offset += len(line)
            count = len(text.split("\t"))
            if text and count != expected:
                return DataFormatError(path, f"expected {expected} tab-separated fields as in the header, got "
                                             f"{count}", line=lineno)
    detail = " ".join(str(err).split())
    return DataFormatError(path, f"could not read the tab-separated rows: {detail}")


#: What gzip raises on a file that is not gzip, is cut short, or is corrupt.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def gzip_error(path: Path, err: Exception, line: int) -> DataFormatError:
    """The DataFormatError of a ``.gz`` file that failed to decompress while ``line`` was being read."""
    if isinstance(err, gzip.BadGzipFile) and line == 1:
        return DataFormatError(path, f"not a gzip file ({err}); a plain-text file must not be named .gz", line=line)
    if isinstance(err, EOFError):
        what = "the gzip file is truncated (it ends before its end-of-stream marker)"
    else:
        what = f"the gzip file is corrupt ({err})"
    return DataFormatError(path, f"{what}; {line - 1:,} complete line(s) read before it broke", line=line)


def open_maybe_gzip(path: Path):
    """Open ``path`` for binary reading, gunzipping a ``.gz`` name or a file that starts with gzip's magic bytes."""
    with path.open("rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if path.suffix == ".gz" or magic == b"\x1f\x8b" else path.open("rb")


def _line_chunks(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (first line number, lines) in chunks; transparently gunzips ``.gz`` files (and gzip data by any name).

    A truncated or corrupt ``.gz`` is a :class:`DataFormatError` naming the line it broke in, never fewer lines.
    """
    lineno = 0
    try:
        with open_maybe_gzip(path) as f:
            chunk: list[bytes] = []
            start = 1
            for lineno, line in enumerate(f, start=1):
                chunk.append(line)
                if len(chunk) == _CHUNK_LINES:
                    yield start, chunk
                    chunk, start = [], lineno + 1
            if chunk:
                yield start, chunk
    except GZIP_ERRORS as err:
        raise gzip_error(path, err, lineno + 1) from None


_AMAZON_FIELDS = {"reviewerID": pl.String, "asin": pl.String, "unixReviewTime": pl.Int64}
_YELP_FIELDS = {"user_id": pl.String, "business_id": pl.String, "date": pl.String}
#: The id fields, which must be JSON strings: polars would turn ``"asin": 3`` into ``"3"`` and ``true`` into
#: ``"true"`` without a word.
_AMAZON_IDS = ("reviewerID", "asin")
_YELP_IDS = ("user_id", "business_id")
_INT64 = (-(2**63), 2**63)


def json_line_error(path: Path, lineno: int, line: bytes, err: Exception, offset: int | None = None
                    ) -> DataFormatError:
    """The DataFormatError of a line ``json.loads`` refused (bad JSON, not UTF-8, too deep, a 5000-digit number).

    ``offset`` is the line's byte offset in the file, for the message of undecodable bytes.
    """
    if isinstance(err, UnicodeDecodeError):
        return decode_error(path, line, err, first_line=lineno, offset=offset)
    if isinstance(err, json.JSONDecodeError):
        return DataFormatError(path, f"expected one JSON object per line: {err.msg} (column {err.colno})",
                               line=lineno)
    reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
    return DataFormatError(path, f"expected one JSON object per line: {reason}", line=lineno)


def _check_review_line(path: Path, lineno: int, line: bytes, fields: dict[str, pl.DataType]) -> None:
    """Raise a :class:`DataFormatError` naming ``lineno`` if the line is not a usable review object."""
    try:
        review = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise json_line_error(path, lineno, line, err) from None
    if not isinstance(review, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(review).__name__}", line=lineno)
    for field, dtype in fields.items():
        value = review.get(field)
        if value is None:
            continue  # reported as a missing field
        if dtype == pl.String and not isinstance(value, str):
            raise DataFormatError(path, f"field {field!r}: expected a string, got {json.dumps(value)}", line=lineno)
        if dtype == pl.Int64 and (isinstance(value, bool) or not isinstance(value, int)
                                  or not _INT64[0] <= value < _INT64[1]):
            raise DataFormatError(path, f"field {field!r}: expected an integer (64-bit), got {json.dumps(value)}",
                                  line=lineno)


#: What polars makes of a JSON number, boolean, object or list read into a string column.
_COERCED = r"^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|\{.*\}|\[.*\])$"
#: Up to this many look-alike rows a chunk checks them one by one, above it with one regex over the chunk.
_FEW_SUSPECTS = 2_000


def _check_ids_are_strings(path: Path, frame: pl.DataFrame, lines: list[bytes], data: bytes, start: int,
                           ids: tuple[str, ...], fields: dict[str, pl.DataType]) -> None:
    """Refuse a line whose id field holds a number, boolean, object or list, which polars reads as a string.

    Only rows whose id *looks* coerced (``3``, ``true``, ``{...}``; a vectorised match) can be such a line. A few are
    checked one by one with the precise parser; many (e.g. ISBN-like asins) with one regex over the chunk's bytes
    (C speed), each hit confirmed by the precise parser.
    """
    suspect = frame.select(pl.any_horizontal(pl.col(k).str.contains(_COERCED) for k in ids).fill_null(False))
    rows = suspect.to_series().arg_true()
    if len(rows) == 0:
        return
    if len(rows) <= _FEW_SUSPECTS:
        for lineno in frame["line"].gather(rows).to_list():
            _check_review_line(path, lineno, lines[lineno - start], fields)
        return
    pattern = re.compile(rb'"(?:' + b"|".join(re.escape(k.encode()) for k in ids) + rb')"\s*:\s*[^"\sn]')
    position = 0
    while (match := pattern.search(data, position)) is not None:
        index = data.count(b"\n", 0, match.start())
        _check_review_line(path, start + index, lines[index], fields)
        position = data.find(b"\n", match.start()) + 1 or len(data)


def _parse_review_chunk(path: Path, start: int, lines: list[bytes], fields: dict[str, pl.DataType],
                        ids: tuple[str, ...]) -> pl.DataFrame:
    """Parse one chunk of JSON lines into the ``fields`` columns plus ``line``; every field is required."""
    kept = [start + i for i, line in enumerate(lines) if line.strip()]  # the JSON reader skips blank lines
    data = b"".join(lines)
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=fields)
    except pl.exceptions.PolarsError:
        frame = None
    if frame is None or frame.height != len(kept):
        # Find the offending line with the slow, precise parser so the error can name it.
        for lineno in kept:
            _check_review_line(path, lineno, lines[lineno - start], fields)
        raise DataFormatError(path, f"could not parse the review lines {start}..{start + len(lines) - 1}")
    frame = frame.with_columns(pl.Series("line", kept, dtype=pl.Int64))
    _check_ids_are_strings(path, frame, lines, data, start, ids, fields)
    for field in fields:
        row = _first_bad_row(frame, field)
        if row is not None:
            raise DataFormatError(path, f"review has no {field!r} (expected {', '.join(fields)})",
                                  line=int(frame["line"][row]))
    return frame


def read_amazon_reviews(
    path: str | Path, *, min_interactions: int = 5, drop_duplicates: bool = True
) -> Sequences:
    """Read an Amazon 2014 review file (``reviews_<Category>_5.json[.gz]``) into 5-core chronological sequences.

    ``reviewerID`` and ``asin`` must be JSON strings and ``unixReviewTime`` a JSON integer: ``"asin": 3``,
    ``"reviewerID": true``, ``"unixReviewTime": "5"``, ``1.5`` or ``true`` are errors naming the line, as are
    text that is not UTF-8 and a truncated or corrupt ``.gz``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    frames = [_parse_review_chunk(path, start, lines, _AMAZON_FIELDS, _AMAZON_IDS)
              for start, lines in _line_chunks(path)]
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
    frame = _parse_review_chunk(path, start, lines, _YELP_FIELDS, _YELP_IDS)
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
    """Read the Yelp Open Dataset ``review.json`` into chronological sequences, as the released code
    (docs/method.md#datasets-and-preprocessing).

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
