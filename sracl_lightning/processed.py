"""The processed on-disk layout: a source file is converted once and reused until it changes.

``<data_root>/<name>/`` holds

* ``items.npy``: ``(T,)`` int32, all interactions, user after user, item ids 1..N;
* ``offsets.npy``: ``(U + 1,)`` int64, user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``;
* ``id_map.json``: ``{"users": [...], "items": [null, ...]}``, the source id of every user row and item id;
* ``item_text.jsonl`` (when the dataset has item text): one record per item 1..N, see :mod:`sracl_lightning.item_text`;
* ``stats.json``: the statistics, the fingerprint of the source it was made from and, with item text, the
  fingerprint of the text source (``item_text_source``) and its missing-field counts (``item_text_stats``).

``stats.json`` is written last and removed first, so it marks a complete conversion. Every file is written to a
temporary name and renamed into place, so an interrupted conversion never leaves a half-written file.

NOTE: item text was added without bumping :data:`LAYOUT_VERSION`: the arrays are unchanged, and a version-1 folder
without the ``item_text_source`` key simply has no item text; asking for text there builds only the text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_write, atomic_write_text
from sracl_lightning.catalog import READERS
from sracl_lightning.item_text import ITEM_TEXT_FILE, ItemTextSource, item_text_stats, read_item_text, write_item_text
from sracl_lightning.sequences import Sequences

#: Bump when the layout changes; older conversions are then redone.
LAYOUT_VERSION = 1


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, array)

    atomic_write(path, write)


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
    path = directory / "stats.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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
        name: Folder name under ``data_root``.
        source: The interaction file.
        fmt: Its format, a key of :data:`~sracl_lightning.catalog.READERS`.
        data_root: Where converted datasets live.
        force: Convert even when an up-to-date conversion exists.
        item_text: The item-text source, as an :class:`ItemTextSource` or ``(path, kind)``; see
            :func:`sracl_lightning.catalog.resolve_source`. When given, ``item_text.jsonl`` is (re)built if it is
            missing or its source changed; a changed text source alone rebuilds only the text. When ``None``, an
            existing conversion is reused as it is (with whatever text it has); a new conversion has no text.

    Returns:
        ``(directory, stats, converted)``, where ``converted`` tells whether any source was (re)read.
    """
    source = Path(source)
    directory = Path(data_root) / name
    if item_text is not None and not isinstance(item_text, ItemTextSource):
        item_text = ItemTextSource(*item_text)
    if not source.is_file():
        raise FileNotFoundError(f"source file of dataset {name!r} not found: {source}")
    if item_text is not None and not item_text.path.is_file():
        raise FileNotFoundError(f"item text file of dataset {name!r} not found: {item_text.path}")
    stats = read_stats(directory)
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
    stats = {
        **sequences.stats(),
        "name": name,
        "layout_version": LAYOUT_VERSION,
        "source": {**_fingerprint(source, fmt), "sha256": file_sha256(source)},
        "item_text_source": None if item_text is None else _text_fingerprint(item_text),
        "item_text_stats": None if records is None else item_text_stats(records),
    }
    (directory / "stats.json").unlink(missing_ok=True)
    # A text table of an older conversion may use other item ids.
    (directory / ITEM_TEXT_FILE).unlink(missing_ok=True)
    _save_npy(directory / "items.npy", sequences.items)
    _save_npy(directory / "offsets.npy", sequences.offsets)
    atomic_write_text(directory / "id_map.json",
                      json.dumps({"users": sequences.user_tokens, "items": sequences.item_tokens}))
    if records is not None:
        write_item_text(directory, records)
    atomic_write_text(directory / "stats.json", json.dumps(stats, indent=2) + "\n")
    return directory, stats, True


def load(directory: Path) -> Sequences:
    """Load a converted dataset (arrays only; the id map is read on demand with :func:`load_id_map`)."""
    directory = Path(directory)
    stats = read_stats(directory)
    if stats is None:
        raise FileNotFoundError(f"{directory} holds no complete conversion (stats.json missing)")
    items = np.load(directory / "items.npy")
    offsets = np.load(directory / "offsets.npy")
    if len(items) != stats["num_interactions"] or len(offsets) != stats["num_users"] + 1:
        raise ValueError(f"{directory}: arrays do not match stats.json; delete the folder to convert again")
    num_items = int(stats["num_items"])
    return Sequences(items=items, offsets=offsets, user_tokens=[], item_tokens=[None] * (num_items + 1))


def load_id_map(directory: Path) -> dict[str, list]:
    return json.loads((Path(directory) / "id_map.json").read_text(encoding="utf-8"))
