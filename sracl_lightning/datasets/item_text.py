"""The item-text table: title, brand, categories, price and description of every item
(docs/method.md#datasets-and-preprocessing).

The semantic stage builds its item prompts from this table. One record per project item id 1..N (index 0 is the
padding item and holds ``None``)::

    {"item": 7, "source_id": "B004756YJA", "title": "...", "brand": "OPI" | None,
     "categories": ["Beauty", "Makeup", ...], "price": 7.5 | None, "description": "..." | None, "extra": {...}}

``source_id`` is the item's id in the interaction source (``item_tokens[item]``). ``categories`` is flattened,
de-duplicated and keeps its order (``[]`` when unknown). Empty or blank strings count as missing. ``extra`` holds
source-specific fields: Amazon ``salesRank``; the shared tables' ``asin``/``business_id``, ``s3_attributes`` and
Sports' ``idgenrec_text_id``; Yelp ``city``, ``state``, ``stars``.

Readers, each aligned to a dataset's ``item_tokens`` (index = project id, value = source id):

* :func:`read_amazon_meta`: McAuley 2014 ``meta_<Cat>.json[.gz]``, one strict-JSON or Python-literal dict a line.
* :func:`read_items_jsonl`: the shared ``<Name>/<Name>_items.jsonl`` tables, keyed by S3-Rec item ids.
* :func:`read_yelp_business`: Yelp Open Dataset ``business.json``.
* :func:`read_recbole_item`: a RecBole atomic ``<name>.item`` file (beside ``<name>.inter``), e.g. MovieLens'
  ``item_id:token  movie_title:token_seq  release_year:token  class:token_seq``; see :data:`RECBOLE_ITEM_FIELDS`.

Items without a metadata line get an all-missing record; a source that matches *none* of the items is an error
(the wrong file, or ids from another numbering), never an empty table.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import polars as pl

from sracl_lightning.atomic import atomic_write
from sracl_lightning.datasets.interaction_logs import (
    GZIP_ERRORS,
    check_recbole_tokens,
    gzip_error,
    json_line_error,
    open_maybe_gzip,
    parse_recbole_floats,
    read_recbole_frame,
    read_recbole_header,
)
from sracl_lightning.datasets.sequences import DataFormatError

ItemTextKind = Literal["amazon_meta", "items_jsonl", "yelp_business", "recbole_item"]

#: File name of the table inside a processed dataset folder.
ITEM_TEXT_FILE = "item_text.jsonl"

#: Fields that carry text; an item missing all of them has "no text".
TEXT_FIELDS = ("title", "brand", "categories", "description")
_STANDARD_FIELDS = ("title", "brand", "categories", "price", "description")


class ItemText(TypedDict):
    """One row of the item-text table (see the module docstring)."""

    item: int
    source_id: str
    title: str | None
    brand: str | None
    categories: list[str]
    price: float | None
    description: str | None
    extra: dict[str, Any]


@dataclass(frozen=True)
class ItemTextSource:
    """A raw item-text file and how to read it."""

    path: Path
    kind: ItemTextKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.kind not in TEXT_READERS:
            raise ValueError(f"unknown item text kind {self.kind!r}: expected one of {sorted(TEXT_READERS)}")


def empty_record(item: int, source_id: str) -> ItemText:
    """The record of an item the metadata says nothing about."""
    return {"item": item, "source_id": source_id, "title": None, "brand": None, "categories": [], "price": None,
            "description": None, "extra": {}}


# --------------------------------------------------------------------------------------------- an item's name
def clean_text(value: Any) -> str | None:
    """A stripped non-empty string, or ``None`` for absent and blank values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def item_title(record: Mapping[str, Any] | None) -> str | None:
    """The item's title, or ``None`` (no record, no title, a blank one)."""
    return None if record is None else clean_text(record.get("title"))


def item_text_id(record: Mapping[str, Any] | None) -> str | None:
    """The short text id that sources without titles give instead (Sports' ``extra["idgenrec_text_id"]``)."""
    return None if record is None else clean_text((record.get("extra") or {}).get("idgenrec_text_id"))


def item_name(record: Mapping[str, Any] | None) -> str | None:
    """The text that stands for an item: its title, else its short text id (Sports), else ``None``.

    The one rule behind every text that names an item: recommendation titles, prompt histories and context
    sequences (:func:`sracl_lightning.semantic.prompts.item_display_text`) and the raw text of the "w/o LLM" ablation
    (:func:`sracl_lightning.semantic.stage.item_raw_text`).
    """
    return item_title(record) or item_text_id(record)


# ------------------------------------------------------------------------------------------------ parsing helpers


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, text)``, gunzipping ``.gz`` files (and gzip data by any name); blank lines are
    skipped.

    Text that is not UTF-8 and a truncated or corrupt ``.gz`` are :class:`DataFormatError` naming the line.
    """
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    lineno, offset = 0, 0
    try:
        with open_maybe_gzip(path) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise json_line_error(path, lineno, raw, err, offset) from None
                offset += len(raw)
                if text.strip():
                    yield lineno, text
    except GZIP_ERRORS as err:
        raise gzip_error(path, err, lineno + 1) from None


def _parse_object(path: Path, lineno: int, text: str, *, python_literal: bool) -> dict:
    """Parse one line as a JSON object, or (``python_literal``) as a Python dict literal as in the 2014 dumps."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, or e.g. a number of 5,000 digits
        if not python_literal:
            raise json_line_error(path, lineno, text.encode(), err) from None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataFormatError(path, "expected one JSON object or Python dict literal per line",
                                  line=lineno) from None
    if not isinstance(value, dict):
        raise DataFormatError(path, f"expected an object per line, got {type(value).__name__}", line=lineno)
    return value


def _key_prefix(key: str) -> re.Pattern[str]:
    """Matches a line that *starts* with ``{"<key>": "<id>"`` (either quote style), capturing the id."""
    return re.compile(r"\s*\{\s*[\"']" + re.escape(key) + r"[\"']\s*:\s*[\"']([^\"'\\]*)[\"']")


def _string(path: Path, lineno: int, obj: dict, field: str, key: str | None = None) -> str | None:
    """A text field: ``None``, absent and blank strings are missing; anything but a string is an error."""
    value = obj.get(key or field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataFormatError(path, f"field {key or field!r}: expected a string or null, got {value!r}", line=lineno)
    value = value.strip()
    return value or None


def _flatten(path: Path, lineno: int, value: Any, field: str = "categories") -> list[str]:
    """Flatten a string, a list of strings or a list of lists of strings; de-duplicate keeping the order."""
    out: dict[str, None] = {}

    def add(entry: Any, depth: int) -> None:
        if isinstance(entry, str):
            if entry.strip():
                out[entry.strip()] = None
        elif isinstance(entry, list | tuple) and depth < 2:
            for inner in entry:
                add(inner, depth + 1)
        elif entry is not None:
            raise DataFormatError(path, f"field {field!r}: expected a list of lists of strings, got {value!r}",
                                  line=lineno)

    add(value, 0)
    return list(out)


def _price(path: Path, lineno: int, value: Any) -> float | None:
    """A number, or a numeric string such as ``"$12.99"``; ``None`` is missing."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lstrip("$").replace(",", "")
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise DataFormatError(path, f"field 'price': expected a number, got {value!r}", line=lineno) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:30]}... ({len(repr(value))} characters)"
        raise DataFormatError(path, f"field 'price': expected a number, got {shown}", line=lineno)
    return float(value)


def _finite(value: int | float) -> bool:
    """True for a finite float and for an int a float can hold (``10**400`` would raise OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _description(path: Path, lineno: int, obj: dict) -> str | None:
    """A string, or a list of strings (later Amazon dumps) joined by spaces."""
    value = obj.get("description")
    if isinstance(value, list):
        parts = [_string(path, lineno, {"description": part}, "description") for part in value]
        return " ".join(p for p in parts if p) or None
    return _string(path, lineno, obj, "description")


def _wanted(item_tokens: list[str | None]) -> dict[str, int]:
    """Source id -> project item id, for items 1..N."""
    if not item_tokens or item_tokens[0] is not None:
        raise ValueError("item_tokens must start with None (index 0 is the padding item)")
    wanted = {str(token): item for item, token in enumerate(item_tokens) if item > 0}
    if len(wanted) != len(item_tokens) - 1:
        raise ValueError("item_tokens holds a source id twice")
    return wanted


def _read_keyed(
    path: Path,
    item_tokens: list[str | None],
    key: str,
    build: Callable[[int, dict, int, str], ItemText],
    *,
    python_literal: bool = False,
    key_type: type = str,
) -> list[ItemText | None]:
    """Shared loop of the readers: one object per line, identified by ``key``; keep the objects of wanted items.

    NOTE: a line that visibly starts with an unwanted ``{"<key>": "<id>"`` is skipped without being parsed, so that
    the large 2014 metadata files (hundreds of thousands of Python literals) read in seconds. Such lines are not
    validated; every line that is used, or whose id cannot be seen at a glance, is (docs/method.md#other-note-lines).
    """
    path = Path(path)
    wanted = _wanted(item_tokens)
    prefix = _key_prefix(key) if key_type is str else None
    records: list[ItemText | None] = [None] * len(item_tokens)
    first_line: dict[int, int] = {}
    any_line = False
    for lineno, text in _lines(path):
        any_line = True
        match = prefix.match(text) if prefix is not None else None
        if match is not None and match.group(1) not in wanted:
            continue
        obj = _parse_object(path, lineno, text, python_literal=python_literal)
        raw = obj.get(key)
        if not isinstance(raw, key_type) or isinstance(raw, bool):
            raise DataFormatError(path, f"field {key!r}: expected {key_type.__name__}, got {raw!r}", line=lineno)
        item = wanted.get(str(raw))
        if item is None:
            continue
        if item in first_line:
            raise DataFormatError(path, f"{key} {raw!r} appears again (first on line {first_line[item]}); "
                                        "expected one line per item", line=lineno)
        first_line[item] = lineno
        records[item] = build(item, obj, lineno, str(item_tokens[item]))
    if not any_line:
        raise DataFormatError(path, f"empty file: expected one object with {key!r} per line")
    if not first_line:
        raise DataFormatError(path, f"none of the {len(wanted):,} items has a line here (matched by {key!r}); is "
                                    "this the metadata of the same dataset, in the same id numbering?")
    for item in range(1, len(records)):
        if records[item] is None:
            records[item] = empty_record(item, str(item_tokens[item]))
    return records


# ------------------------------------------------------------------------------------------------ readers


def read_amazon_meta(path: str | Path, item_tokens: list[str | None]) -> list[ItemText | None]:
    """Read McAuley's 2014 ``meta_<Cat>.json[.gz]`` for the items of a dataset read from ``reviews_<Cat>_5``.

    Lines are strict JSON or Python dict literals (the 2014 dumps use single quotes). ``categories`` is a list of
    category paths (lists of strings) and is flattened; ``salesRank`` goes to ``extra``; ``related`` (the
    also-bought lists) is dropped.

    Args:
        path: The metadata file.
        item_tokens: ``item_tokens[i]`` is the asin of project item ``i``; index 0 is ``None``.

    Returns:
        ``N + 1`` records, index 0 ``None``.

    Raises:
        DataFormatError: on a line that is neither JSON nor a Python literal, a field of the wrong type, an asin
            listed twice, an empty file, or a file that describes none of the items.
    """
    path = Path(path)

    def build(item: int, obj: dict, lineno: int, source_id: str) -> ItemText:
        record = empty_record(item, source_id)
        record.update(_standard_fields(path, lineno, obj))
        if obj.get("salesRank") is not None:
            record["extra"]["salesRank"] = obj["salesRank"]
        return record

    return _read_keyed(path, item_tokens, "asin", build, python_literal=True)


def _standard_fields(path: Path, lineno: int, obj: dict) -> dict:
    """The standard text fields of one metadata object, checked (Amazon meta and items.jsonl share them)."""
    return {
        "title": _string(path, lineno, obj, "title"),
        "brand": _string(path, lineno, obj, "brand"),
        "categories": _flatten(path, lineno, obj.get("categories")),
        "price": _price(path, lineno, obj.get("price")),
        "description": _description(path, lineno, obj),
    }


def read_items_jsonl(path: str | Path, item_tokens: list[str | None]) -> list[ItemText | None]:
    """Read a shared ``<Name>_items.jsonl`` table (``../shared/data/README.md``), keyed by S3-Rec ``item_id``.

    ``read_s3rec`` keeps ids ``1..N`` unchanged and stores them as strings, so ``item_tokens[i] == str(item_id)``.
    Fields other than the standard ones (``asin``, ``business_id``, ``s3_attributes``, ``idgenrec_text_id``)
    go to ``extra``.

    Raises:
        DataFormatError: on a line that is not a JSON object, an ``item_id`` that is not an integer, an id listed
            twice, a field of the wrong type, an empty file, or a table that describes none of the items.
    """
    path = Path(path)

    def build(item: int, obj: dict, lineno: int, source_id: str) -> ItemText:
        record = empty_record(item, source_id)
        record.update(_standard_fields(path, lineno, obj))
        record["extra"] = {k: v for k, v in obj.items() if k != "item_id" and k not in _STANDARD_FIELDS}
        return record

    return _read_keyed(path, item_tokens, "item_id", build, key_type=int)


def read_yelp_business(path: str | Path, item_tokens: list[str | None]) -> list[ItemText | None]:
    """Read the Yelp Open Dataset ``business.json`` for the businesses of a dataset read from ``review.json``.

    ``name`` becomes the title; ``categories`` (one comma-separated string, or ``null``) is split on ``,``;
    ``city``, ``state`` and ``stars`` go to ``extra`` (docs/method.md#datasets-and-preprocessing). Yelp has no brand,
    price or description.

    Raises:
        DataFormatError: on a line that is not a JSON object, a field of the wrong type, a business listed twice,
            an empty file, or a file that describes none of the businesses.
    """
    path = Path(path)

    def build(item: int, obj: dict, lineno: int, source_id: str) -> ItemText:
        record = empty_record(item, source_id)
        categories = obj.get("categories")
        if isinstance(categories, str):
            categories = categories.split(",")
        stars = obj.get("stars")
        if stars is not None and (isinstance(stars, bool) or not isinstance(stars, int | float) or not _finite(stars)):
            raise DataFormatError(path, f"field 'stars': expected a number or null, got {stars!r}", line=lineno)
        record.update(title=_string(path, lineno, obj, "title", key="name"),
                      categories=_flatten(path, lineno, categories))
        record["extra"] = {"city": _string(path, lineno, obj, "city"), "state": _string(path, lineno, obj, "state"),
                           "stars": None if stars is None else float(stars)}
        return record

    return _read_keyed(path, item_tokens, "business_id", build)


#: RecBole ``.item`` fields that fill the standard columns, first match wins (a later match goes to ``extra``).
RECBOLE_ITEM_FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title", "movie_title", "item_title", "name", "item_name", "book_title"),
    "brand": ("brand",),
    "categories": ("categories", "category", "class", "genre", "genres"),
    "price": ("price",),
    "description": ("description",),
}


def _unquote(value: str) -> str:
    """A value as pandas' reader (RecBole's) returns it: ``"a ""b"" c"`` -> ``a "b" c``."""
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return value[1:-1].replace('""', '"')
    return value


def _recbole_value(path: Path, lineno: int, name: str, kind: str, raw: str | None, number: float | None) -> Any:
    """One field of a ``.item`` row as RecBole holds it: token -> str, token_seq -> list[str] (split on spaces),
    float -> float, float_seq -> list[float]; missing (and NaN, inf) -> None, or ``[]`` for sequences."""
    if kind == "float":
        return number if number is not None and math.isfinite(number) else None
    text = None if raw is None else _unquote(raw.strip()).strip()
    if kind == "token":
        return text or None
    parts = (text or "").split()
    if kind == "token_seq":
        return parts
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise DataFormatError(path, f"field {name!r} is typed float_seq: expected numbers, got {raw!r}",
                              line=lineno) from None
    return [x if math.isfinite(x) else None for x in numbers]


def _recbole_categories(path: Path, lineno: int, kind: str, raw: str | None) -> list[str]:
    """Categories from a token (one category) or a token_seq: split on commas when there are any (multi-word
    categories such as ``'Skin Care', 'Face'``, quotes dropped), else on spaces as RecBole splits it."""
    text = _unquote((raw or "").strip())
    if kind == "token":
        parts = [text]
    elif "," in text:
        parts = [part.strip().strip("'\"") for part in text.split(",")]
    else:
        parts = text.split()
    return _flatten(path, lineno, parts)


def read_recbole_item(path: str | Path, item_tokens: list[str | None], *,
                      item_field: str = "item_id") -> list[ItemText | None]:
    """Read a RecBole atomic ``.item`` file (tab-separated, ``name:type`` header) for the items of its ``.inter``.

    It is read as :func:`~sracl_lightning.datasets.interaction_logs.read_recbole_inter` reads the ``.inter`` file, with
    the same checks on the item id token. Fields map to the table by name (:data:`RECBOLE_ITEM_FIELDS`):

    * ``title``, ``movie_title``, ... -> title; a ``token_seq`` title (MovieLens) is joined back with spaces;
    * ``categories``, ``class``, ``genre``, ... -> categories: a ``token_seq`` splits on spaces as RecBole splits it
      (MovieLens' ``class``: ``Animation Children's Comedy``), or on commas when the value has any (multi-word
      Amazon categories); a ``token`` is one category;
    * ``brand`` -> brand; ``price`` -> price (a ``float``, or a ``token`` such as ``$12.99``); ``description``;
    * ``sales_type`` with ``sales_rank`` (RecBole's Amazon files) -> ``extra["salesRank"] = {sales_type: rank}``,
      as :func:`read_amazon_meta` stores ``salesRank``;
    * every other field -> ``extra`` under its own name (``release_year``: ``"1995"``), as RecBole types it.

    A double-quoted text value loses its quotes, as pandas (RecBole's reader) unquotes it.

    Raises:
        DataFormatError: on a malformed header, no ``item_id`` token field, a bad item id token, a non-number in a
            ``float`` field, a wanted item listed twice, text that is not UTF-8, a file without rows, or a file that
            describes none of the items.
    """
    path = Path(path)
    wanted = _wanted(item_tokens)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    fields = read_recbole_header(path)
    types = dict(fields)
    if types.get(item_field) != "token":
        found = [f"{n}:{t}" for n, t in fields]
        raise DataFormatError(path, f"header has no token field {item_field!r} (found {found})", line=1)
    frame = read_recbole_frame(path, fields)
    if frame.height == 0:
        raise DataFormatError(path, "no item rows after the header")
    check_recbole_tokens(path, frame, fields, {item_field: "an item id"})
    parsed = parse_recbole_floats(path, frame, fields)
    ids = pl.Series("item", list(wanted.values()), dtype=pl.Int64)
    keys = pl.Series("key", list(wanted.keys()), dtype=pl.String)
    rows = frame.with_columns(parsed.select(pl.col(n).alias(f"_num_{n}") for n, k in fields if k == "float")).join(
        pl.DataFrame([keys, ids]), left_on=item_field, right_on="key", how="inner", maintain_order="left")
    if rows.height == 0:
        raise DataFormatError(path, f"none of the {len(wanted):,} items has a row here (matched by {item_field!r}); "
                                    "is this the .item file of the same dataset?")
    repeated = rows.filter(pl.col("item").is_duplicated())
    if repeated.height:
        first, again = repeated.filter(pl.col("item") == repeated["item"][0])["_line"].head(2).to_list()
        raise DataFormatError(path, f"{item_field} {repeated[item_field][0]!r} appears again (first on line {first}); "
                                    "expected one row per item", line=again)

    chosen = {target: next((n for n in names if n in types and n != item_field), None)
              for target, names in RECBOLE_ITEM_FIELDS.items()}
    sales = "sales_type" in types and "sales_rank" in types
    others = [n for n, _ in fields if n != item_field and n not in chosen.values()
              and not (sales and n in ("sales_type", "sales_rank"))]
    records: list[ItemText | None] = [None] * len(item_tokens)
    for row in rows.iter_rows(named=True):
        item, lineno = row["item"], row["_line"]

        def value(name: str, row: dict = row) -> Any:
            return _recbole_value(path, row["_line"], name, types[name], row[name], row.get(f"_num_{name}"))

        def text(name: str | None) -> str | None:
            got = None if name is None else value(name)
            return (" ".join(got) or None) if isinstance(got, list) else got

        record = empty_record(item, str(item_tokens[item]))
        record["title"] = text(chosen["title"])
        record["brand"] = text(chosen["brand"])
        record["description"] = text(chosen["description"])
        if chosen["categories"] is not None:
            record["categories"] = _recbole_categories(path, lineno, types[chosen["categories"]],
                                                       row[chosen["categories"]])
        if chosen["price"] is not None:
            price = chosen["price"]
            number = row.get(f"_num_{price}")
            record["price"] = _price(path, lineno, number if types[price] == "float" else text(price))
        extra: dict[str, Any] = {}
        if sales:
            sales_type, sales_rank = value("sales_type"), value("sales_rank")
            if sales_type is not None and sales_rank is not None:
                extra["salesRank"] = {" ".join(sales_type) if isinstance(sales_type, list) else sales_type:
                                      sales_rank}
        for name in others:
            extra[name] = value(name)
        record["extra"] = extra
        records[item] = record
    for item in range(1, len(records)):
        if records[item] is None:
            records[item] = empty_record(item, str(item_tokens[item]))
    return records


TEXT_READERS: dict[str, Callable[[Path, list[str | None]], list[ItemText | None]]] = {
    "amazon_meta": read_amazon_meta,
    "items_jsonl": read_items_jsonl,
    "yelp_business": read_yelp_business,
    "recbole_item": read_recbole_item,
}


def read_item_text(source: ItemTextSource, item_tokens: list[str | None]) -> list[ItemText | None]:
    """Read ``source`` with the reader of its kind."""
    return TEXT_READERS[source.kind](source.path, item_tokens)


# ------------------------------------------------------------------------------------------------ on disk


def _check_record(path: Path, lineno: int, record: Any, item: int) -> ItemText:
    """Validate one stored record: the right item id, every field present with its type."""
    if not isinstance(record, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(record).__name__}", line=lineno)
    if record.get("item") != item:
        raise DataFormatError(path, f"field 'item': expected {item} (items 1..N in order), got {record.get('item')!r}",
                              line=lineno)
    expected = {"source_id": (str,), "title": (str, type(None)), "brand": (str, type(None)), "categories": (list,),
                "price": (float, int, type(None)), "description": (str, type(None)), "extra": (dict,)}
    for field, kinds in expected.items():
        if field not in record:
            raise DataFormatError(path, f"item {item} has no field {field!r}", line=lineno)
        value = record[field]
        if not isinstance(value, kinds) or isinstance(value, bool):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise DataFormatError(path, f"field {field!r}: expected {names}, got {value!r}", line=lineno)
    if not all(isinstance(c, str) for c in record["categories"]):
        raise DataFormatError(path, "field 'categories': expected a list of strings", line=lineno)
    return record  # type: ignore[return-value]


def write_item_text(directory: str | Path, records: list[ItemText | None]) -> Path:
    """Write ``records`` (index 0 ``None``, then items 1..N) to ``<directory>/item_text.jsonl``, atomically."""
    path = Path(directory) / ITEM_TEXT_FILE
    if not records or records[0] is not None:
        raise ValueError("records must start with None (index 0 is the padding item)")
    for item in range(1, len(records)):
        _check_record(path, item, records[item], item)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records[1:]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    atomic_write(path, write)
    return path


def load_item_text(directory: str | Path, num_items: int | None = None) -> list[ItemText | None]:
    """Load ``<directory>/item_text.jsonl`` as a list indexed by item id (index 0 ``None``).

    Args:
        directory: A processed dataset folder.
        num_items: Expected N; by default ``num_items`` from the folder's ``stats.json`` when there is one.

    Raises:
        FileNotFoundError: when the dataset was converted without item text.
        DataFormatError: on a malformed line, an item out of order, or a count that differs from N.
    """
    directory = Path(directory)
    path = directory / ITEM_TEXT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory.name!r} was converted without item text (its source "
                                "has none, or none was given); see `python data/prepare.py --help`")
    if num_items is None and (directory / "stats.json").is_file():
        num_items = int(json.loads((directory / "stats.json").read_text(encoding="utf-8"))["num_items"])
    records: list[ItemText | None] = [None]
    with path.open("r", encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, f"expected one JSON object per line: {err.msg}", line=lineno) from None
            records.append(_check_record(path, lineno, record, lineno))
    if num_items is not None and len(records) - 1 != num_items:
        raise DataFormatError(path, f"holds {len(records) - 1:,} items, expected {num_items:,} (the dataset's N); "
                                    "convert the dataset again")
    return records


# ------------------------------------------------------------------------------------------------ statistics


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str | list) and not value)


def has_text(record: ItemText) -> bool:
    """True when the item has a title, a brand, a category or a description."""
    return not all(_missing(record[field]) for field in TEXT_FIELDS)


def item_text_stats(records: list[ItemText | None]) -> dict[str, int]:
    """Counts of items missing each field, and of items with no text at all (:data:`TEXT_FIELDS` all missing).

    A ``None`` record (other than index 0) counts as missing everything.
    """
    items = [r if r is not None else empty_record(i, "") for i, r in enumerate(records) if i > 0]
    stats = {"num_items": len(items)}
    for field in _STANDARD_FIELDS:
        stats[f"missing_{field}"] = sum(1 for r in items if _missing(r[field]))
    stats["no_text"] = sum(1 for r in items if not has_text(r))
    return stats


def format_item_text_stats(stats: dict[str, int]) -> str:
    """One line, e.g. ``item text: 12,101 items; missing title 7, brand 4,646, ...; no text 0``."""
    missing = ", ".join(f"{field} {stats[f'missing_{field}']:,}" for field in _STANDARD_FIELDS)
    return f"item text: {stats['num_items']:,} items; missing {missing}; no text {stats['no_text']:,}"
