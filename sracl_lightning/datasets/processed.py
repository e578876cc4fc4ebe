"""The processed on-disk layout: a source file is converted once and reused until it changes.

A conversion lives in ``<data_root>/<folder>/``, where the folder is the dataset's name plus a short fingerprint
of the source's resolved path and format (:func:`folder_name`, e.g. ``beauty-3f2a1c9e``): two sources that share
a name (``Beauty/Beauty.txt`` and ``sracl/Beauty.txt``, any two ``ratings.inter``) never share a folder. It holds

* ``items.npy``: ``(T,)`` int32, all interactions, user after user, item ids 1..N;
* ``offsets.npy``: ``(U + 1,)`` int64, user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``;
* ``id_map.json``: ``{"users": [...], "items": [null, ...]}``, the source id of every user row and item id;
* ``item_text.jsonl`` (when the dataset has item text): one record per item 1..N, see
:mod:`sracl_lightning.datasets.item_text`;
* ``stats.json``: the statistics, the fingerprint of the source it was made from, the sha256, dtype, length and
  value range of each array and the sha256 of the id map (``files``) and, with item text, the fingerprint of the
  text source (``item_text_source``) and its missing-field counts (``item_text_stats``).

``stats.json`` is written last and removed first, so it marks a complete conversion. Every file is written to a
temporary name and renamed into place, so an interrupted conversion never leaves a half-written file. Every
reuse checks the files against ``stats.json`` (:func:`verify`, one pass over small arrays): a damaged, edited or
unreadable file means "convert again", and the message says so. :func:`data_identity` is what a checkpoint
records of its data, so that a model is never evaluated on other data.

NOTE: item text was added without bumping :data:`LAYOUT_VERSION`: the arrays are unchanged, and a version-1 folder
without the ``item_text_source`` key simply has no item text; asking for text there builds only the text.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_save_npy, atomic_write_text, exclusive_lock
from sracl_lightning.datasets.catalog import READERS
from sracl_lightning.datasets.item_text import (
    ITEM_TEXT_FILE,
    ItemTextSource,
    item_text_stats,
    read_item_text,
    write_item_text,
)
from sracl_lightning.datasets.manifest import array_hash
from sracl_lightning.datasets.sequences import Sequences

log = logging.getLogger(__name__)

#: Bump when the layout changes; older conversions are then redone. Version 2 records the files' hashes.
LAYOUT_VERSION = 2

#: The statistics that :func:`verify` recomputes from the arrays and the id map.
_RECOMPUTED = ("num_users", "num_items", "num_interactions", "avg_length", "min_length", "max_length", "density",
               "num_train_samples", "num_prefixes")


class DamagedConversionError(ValueError):
    """A processed folder whose files are unreadable or disagree with its ``stats.json``."""


def folder_name(name: str, source: str | Path, fmt: str) -> str:
    """The processed folder of dataset ``name`` read from ``source`` as ``fmt``: name plus 8 hex digits of a
    sha256 over the format and the source's resolved path."""
    key = f"{fmt}\0{Path(source).resolve()}".encode()
    return f"{name}-{hashlib.sha256(key).hexdigest()[:8]}"


def dataset_directory(data_root: str | Path, name: str, source: str | Path, fmt: str) -> Path:
    """Where the conversion of ``source`` (read as ``fmt``) lives under ``data_root``."""
    return Path(data_root) / folder_name(name, source, fmt)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(source: Path, fmt: str) -> dict:
    st = source.stat()
    return {"path": str(source), "format": fmt, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _same_content(recorded: dict, path: Path) -> bool:
    """True when ``path`` still holds the content ``recorded`` (size + mtime, else the sha256) describes."""
    st = path.stat()
    if recorded.get("size") == st.st_size and recorded.get("mtime_ns") == st.st_mtime_ns:
        return True
    # Touched or copied: only the content counts.
    return recorded.get("sha256") == file_sha256(path)


def _is_current(stats: dict, source: Path, fmt: str) -> bool:
    """True when ``stats`` was made from this exact source content in the current layout."""
    recorded = stats.get("source", {})
    if stats.get("layout_version") != LAYOUT_VERSION or recorded.get("format") != fmt:
        return False
    return _same_content(recorded, source)


def _text_fingerprint(text: ItemTextSource) -> dict:
    st = text.path.stat()
    return {"path": str(text.path), "kind": text.kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(text.path)}


def _text_is_current(stats: dict, directory: Path, text: ItemTextSource) -> bool:
    """True when ``item_text.jsonl`` exists and was made from this exact text source content, read as this kind."""
    recorded = stats.get("item_text_source") or {}
    if recorded.get("kind") != text.kind or not (directory / ITEM_TEXT_FILE).is_file():
        return False
    return _same_content(recorded, text.path)


def read_stats(directory: Path) -> dict | None:
    """``stats.json`` of a conversion, or ``None`` when there is none.

    Raises:
        DamagedConversionError: The file exists but is not a JSON object.
    """
    path = Path(directory) / "stats.json"
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedConversionError(f"{path} is unreadable ({error})") from None
    if not isinstance(stats, dict):
        raise DamagedConversionError(f"{path} is not a JSON object")
    return stats


def _array_record(array: np.ndarray) -> dict:
    return {"sha256": array_hash(array), "dtype": array.dtype.str, "length": int(len(array)),
            "min": int(array.min()) if len(array) else None, "max": int(array.max()) if len(array) else None}


def _id_map_text(sequences: Sequences) -> str:
    return json.dumps({"users": sequences.user_tokens, "items": sequences.item_tokens})


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DamagedConversionError(f"{path} is unreadable ({type(error).__name__}: {error})") from None


def verify(directory: Path, stats: dict) -> Sequences:
    """Load a conversion and check every file against ``stats``: hashes, dtypes, lengths, value ranges and the
    statistics recomputed from the arrays and the id map.

    Returns:
        The sequences (arrays only, as :func:`load`).

    Raises:
        DamagedConversionError: A file is missing, unreadable or disagrees with ``stats.json``; the message names it.
    """
    directory = Path(directory)
    files = stats.get("files")
    if not isinstance(files, dict) or stats.get("layout_version") != LAYOUT_VERSION:
        raise DamagedConversionError(f"{directory / 'stats.json'} is of another layout version "
                                     f"({stats.get('layout_version')}, expected {LAYOUT_VERSION})")
    arrays = {}
    for name, dtype in (("items", np.int32), ("offsets", np.int64)):
        path = directory / f"{name}.npy"
        array = _load_npy(path)
        recorded = files.get(name) or {}
        if array.ndim != 1 or array.dtype != dtype:
            raise DamagedConversionError(f"{path} holds {array.dtype} of shape {array.shape}, expected 1-d "
                                         f"{np.dtype(dtype)}")
        if _array_record(array) != recorded:
            raise DamagedConversionError(f"{path} differs from what {directory / 'stats.json'} records "
                                         "(content hash, length or value range)")
        arrays[name] = array
    id_map_path = directory / "id_map.json"
    try:
        id_map_bytes = id_map_path.read_bytes()
    except OSError as error:
        raise DamagedConversionError(f"{id_map_path} is unreadable ({error})") from None
    if hashlib.sha256(id_map_bytes).hexdigest() != (files.get("id_map") or {}).get("sha256"):
        raise DamagedConversionError(f"{id_map_path} differs from what {directory / 'stats.json'} records")
    id_map = json.loads(id_map_bytes)
    items, offsets = arrays["items"], arrays["offsets"]
    sequences = Sequences(items=items, offsets=offsets, user_tokens=id_map["users"], item_tokens=id_map["items"])
    if offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0) or (
            len(items) and (items.min() < 1 or items.max() > sequences.num_items)):
        raise DamagedConversionError(f"{directory}: offsets.npy, items.npy and id_map.json are inconsistent")
    recomputed = sequences.stats()
    for key in _RECOMPUTED:
        if stats.get(key) != recomputed[key]:
            raise DamagedConversionError(f"{directory / 'stats.json'} records {key} = {stats.get(key)!r}, but the "
                                         f"files give {recomputed[key]!r}")
    return sequences


def data_identity(stats: dict) -> dict:
    """What a checkpoint records of its data: the dataset, its source's content and the converted files' hashes.

    Two conversions have equal identities exactly when they hold the same sequences under the same id map, read
    from the same source content. The source's path is left out, so a moved copy of the data is still the data.
    """
    files = stats["files"]
    return {
        "dataset": stats["name"],
        "source_format": stats["source"]["format"],
        "source_sha256": stats["source"]["sha256"],
        "num_users": stats["num_users"],
        "num_items": stats["num_items"],
        "num_interactions": stats["num_interactions"],
        "items_sha256": files["items"]["sha256"],
        "offsets_sha256": files["offsets"]["sha256"],
        "id_map_sha256": files["id_map"]["sha256"],
    }


def describe_identity(identity: dict) -> str:
    """One readable fingerprint: ``beauty (source sha256 3f2a1c9e4b7d, 22,363 users, 12,101 items, id map 9c...)``."""
    return (f"{identity.get('dataset')} (source sha256 {str(identity.get('source_sha256'))[:12]}, "
            f"{identity.get('num_users', 0):,} users, {identity.get('num_items', 0):,} items, "
            f"id map {str(identity.get('id_map_sha256'))[:12]})")


def source_matches(source: Path, sha256: str, stats: dict | None = None) -> bool:
    """True when ``source`` holds the content with this sha256 (size and mtime recorded in ``stats`` for it spare
    the hash)."""
    recorded = (stats or {}).get("source") or {}
    if recorded.get("sha256") == sha256:
        return _same_content(recorded, source)
    return file_sha256(source) == sha256


def prepare(
    name: str,
    source: Path,
    fmt: str,
    data_root: Path,
    *,
    force: bool = False,
    item_text: ItemTextSource | tuple[str | Path, str] | None = None,
) -> tuple[Path, dict, bool]:
    """Convert ``source`` (and its item text) into ``data_root/name`` unless an up-to-date conversion exists.

    Args:
        name: The dataset's name; the folder under ``data_root`` is :func:`folder_name` of it.
        source: The interaction file.
        fmt: Its format, a key of :data:`~sracl_lightning.datasets.catalog.READERS`.
        data_root: Where converted datasets live.
        force: Convert even when an up-to-date conversion exists.
        item_text: The item-text source, as an :class:`ItemTextSource` or ``(path, kind)``; see
            :func:`sracl_lightning.datasets.catalog.resolve_source`. When given, ``item_text.jsonl`` is (re)built if it
            is missing or its source changed; a changed text source alone rebuilds only the text. When ``None``, an
            existing conversion is reused as it is (with whatever text it has); a new conversion has no text.

    Returns:
        ``(directory, stats, converted)``, where ``converted`` tells whether any source was (re)read.
    """
    source = Path(source)
    directory = dataset_directory(data_root, name, source, fmt)
    # One conversion of a folder at a time across processes: two runner jobs on a fresh data root would otherwise
    # both convert, and one could load the folder while the other rewrites it (stats.json briefly missing).
    with exclusive_lock(directory):
        return _prepare(name, source, fmt, directory, force=force, item_text=item_text)


def _prepare(name: str, source: Path, fmt: str, directory: Path, *, force: bool,
             item_text: ItemTextSource | tuple[str | Path, str] | None) -> tuple[Path, dict, bool]:
    """:func:`prepare` under its lock."""
    if item_text is not None and not isinstance(item_text, ItemTextSource):
        item_text = ItemTextSource(*item_text)
    if not source.is_file():
        raise FileNotFoundError(f"source file of dataset {name!r} not found: {source}")
    if item_text is not None and not item_text.path.is_file():
        raise FileNotFoundError(f"item text file of dataset {name!r} not found: {item_text.path}")
    try:
        stats = read_stats(directory)
        if stats is not None and not force and _is_current(stats, source, fmt):
            verify(directory, stats)
    except DamagedConversionError as error:
        log.warning(f"[data] {error}; converting {source} again")
        stats, force = None, True
    if stats is not None and not force and _is_current(stats, source, fmt):
        if item_text is None or _text_is_current(stats, directory, item_text):
            return directory, stats, False
        # Only the item text is new or stale: the arrays and id map stay as they are.
        records = read_item_text(item_text, load_id_map(directory)["items"])
        (directory / "stats.json").unlink()
        write_item_text(directory, records)
        stats = {**stats, "item_text_source": _text_fingerprint(item_text), "item_text_stats": item_text_stats(records)}
        atomic_write_text(directory / "stats.json", json.dumps(stats, indent=2) + "\n")
        return directory, stats, True

    # Read everything before touching the folder, so bad input leaves the previous conversion intact.
    sequences = READERS[fmt](source)
    records = read_item_text(item_text, sequences.item_tokens) if item_text is not None else None
    id_map_text = _id_map_text(sequences)
    stats = {
        **sequences.stats(),
        "name": name,
        "layout_version": LAYOUT_VERSION,
        "source": {**_fingerprint(source, fmt), "sha256": file_sha256(source)},
        "files": {"items": _array_record(sequences.items), "offsets": _array_record(sequences.offsets),
                  "id_map": {"sha256": hashlib.sha256(id_map_text.encode("utf-8")).hexdigest()}},
        "item_text_source": None if item_text is None else _text_fingerprint(item_text),
        "item_text_stats": None if records is None else item_text_stats(records),
    }
    (directory / "stats.json").unlink(missing_ok=True)
    # A text table of an older conversion may use other item ids.
    (directory / ITEM_TEXT_FILE).unlink(missing_ok=True)
    atomic_save_npy(directory / "items.npy", sequences.items)
    atomic_save_npy(directory / "offsets.npy", sequences.offsets)
    atomic_write_text(directory / "id_map.json", id_map_text)
    if records is not None:
        write_item_text(directory, records)
    atomic_write_text(directory / "stats.json", json.dumps(stats, indent=2) + "\n")
    return directory, stats, True


def load(directory: Path) -> Sequences:
    """Load a converted dataset, checked against its ``stats.json`` (:func:`verify`).

    Raises:
        FileNotFoundError: The folder holds no complete conversion.
        DamagedConversionError: A file is damaged; the next run's :func:`prepare` converts the source again.
    """
    directory = Path(directory)
    stats = read_stats(directory)
    if stats is None:
        raise FileNotFoundError(f"{directory} holds no complete conversion (stats.json missing)")
    try:
        return verify(directory, stats)
    except DamagedConversionError as error:
        raise DamagedConversionError(f"{error}; run again (or python data/prepare.py) to convert the source "
                                     "again") from None


def load_id_map(directory: Path) -> dict[str, list]:
    path = Path(directory) / "id_map.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the conversion is incomplete; run again to convert the "
                                "source again") from None
