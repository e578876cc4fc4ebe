"""The processed on-disk layout: a source file is converted once and reused until it changes.

``<data_root>/<name>/`` holds

* ``items.npy``: ``(T,)`` int32, all interactions, user after user, item ids 1..N;
* ``offsets.npy``: ``(U + 1,)`` int64, user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``;
* ``id_map.json``: ``{"users": [...], "items": [null, ...]}``, the source id of every user row and item id;
* ``stats.json``: the statistics, and the fingerprint of the source it was made from.

``stats.json`` is written last and removed first, so it marks a complete conversion. Every file is written to a
temporary name and renamed into place, so an interrupted conversion never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_write, atomic_write_text
from sracl_lightning.catalog import READERS
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


def _is_current(stats: dict, source: Path, fmt: str) -> bool:
    """True when ``stats`` was made from this exact source content in the current layout."""
    recorded = stats.get("source", {})
    if stats.get("layout_version") != LAYOUT_VERSION or recorded.get("format") != fmt:
        return False
    now = _fingerprint(source, fmt)
    if recorded.get("size") == now["size"] and recorded.get("mtime_ns") == now["mtime_ns"]:
        return True
    # Touched or copied: only the content counts.
    return recorded.get("sha256") == file_sha256(source)


def read_stats(directory: Path) -> dict | None:
    path = directory / "stats.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def prepare(name: str, source: Path, fmt: str, data_root: Path, *, force: bool = False) -> tuple[Path, dict, bool]:
    """Convert ``source`` into ``data_root/name`` unless an up-to-date conversion exists.

    Returns:
        ``(directory, stats, converted)``, where ``converted`` tells whether the source was (re)read.
    """
    source = Path(source)
    directory = Path(data_root) / name
    if not source.is_file():
        raise FileNotFoundError(f"source file of dataset {name!r} not found: {source}")
    stats = read_stats(directory)
    if stats is not None and not force and _is_current(stats, source, fmt):
        return directory, stats, False

    sequences = READERS[fmt](source)
    stats = {
        **sequences.stats(),
        "name": name,
        "layout_version": LAYOUT_VERSION,
        "source": {**_fingerprint(source, fmt), "sha256": file_sha256(source)},
    }
    (directory / "stats.json").unlink(missing_ok=True)
    _save_npy(directory / "items.npy", sequences.items)
    _save_npy(directory / "offsets.npy", sequences.offsets)
    atomic_write_text(directory / "id_map.json",
                      json.dumps({"users": sequences.user_tokens, "items": sequences.item_tokens}))
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
