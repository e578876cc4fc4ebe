"""Artefacts with manifests: every cached array records what produced it, and a stale one is rebuilt.

An artefact ``X.npy`` is complete only when ``X.manifest.json`` sits beside it. The manifest holds

* ``kind``: what the array is (``"item_embeddings"``, ``"user_neighbours"``, ...);
* ``key``: a hash of everything that determines the content (inputs' hashes and producer settings). A consumer
  computes the key it expects and reuses the artefact only if the recorded key is equal;
* ``params``: the producer settings in readable form (model, pooling, k, ...);
* ``inputs``: the names and hashes of the inputs;
* ``shape`` / ``dtype`` of the array, and free-form ``info`` (timings, recall, counts).

Writing removes the old manifest first, writes the array to a temporary file and renames it, then writes the new
manifest the same way: an interrupted write leaves no manifest, so the artefact is rebuilt, never half-read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sracl_lightning.atomic import atomic_save_npy, atomic_write_text


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-serialisable value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def texts_hash(texts: Iterable[str]) -> str:
    """sha256 over a sequence of strings; order matters, and ``["ab"]`` differs from ``["a", "b"]``."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def array_hash(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)
    return digest.hexdigest()


#: Small files of a model folder whose content fixes its output; all other files count by name and size only,
#: since hashing a 1.4 GB checkpoint on every run would cost more than it protects against.
MODEL_CONTENT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                       "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model",
                       "spiece.model", "tokenizer.model")


def model_folder_fingerprint(folder: Path) -> str:
    """sha256 over a local model folder: the content of its small defining files (:data:`MODEL_CONTENT_FILES`)
    and the relative name and size of every other file, so replaced weights or tokenizers change it."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if path.name in MODEL_CONTENT_FILES:
            digest.update(f"{name}:content\n".encode())
            digest.update(path.read_bytes())
        else:
            digest.update(f"{name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def sequences_key(items: np.ndarray, offsets: np.ndarray) -> str:
    """The data key of a dataset's sequences: every artefact derived from them records it as ``inputs.data``."""
    return stable_hash({"items": array_hash(items), "offsets": array_hash(offsets)})


def manifest_path(artefact: Path) -> Path:
    artefact = Path(artefact)
    return artefact.with_name(artefact.stem + ".manifest.json")


def read_manifest(artefact: Path) -> dict | None:
    """The manifest of ``artefact``, or None if the artefact or its manifest is missing."""
    path = manifest_path(artefact)
    if not (path.is_file() and Path(artefact).is_file()):
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a damaged manifest means "rebuild", never "trust"


def is_fresh(artefact: Path, key: str) -> bool:
    """True when ``artefact`` is complete and was produced for exactly ``key``."""
    manifest = read_manifest(artefact)
    return manifest is not None and manifest.get("key") == key


def load_array(artefact: Path, key: str | None = None, mmap: bool = False) -> np.ndarray:
    """Load a complete artefact; with ``key``, raise if it was produced for other inputs or settings."""
    manifest = read_manifest(artefact)
    if manifest is None:
        raise FileNotFoundError(f"{artefact}: missing or incomplete (no {manifest_path(artefact).name}); "
                                "build it first")
    if key is not None and manifest.get("key") != key:
        raise ValueError(f"{artefact} is stale: made for key {manifest.get('key', '?')[:12]}, expected {key[:12]}; "
                         "rebuild it")
    array = np.load(artefact, mmap_mode="r" if mmap else None)
    if list(array.shape) != manifest.get("shape"):
        raise ValueError(f"{artefact}: shape {list(array.shape)} differs from its manifest's {manifest.get('shape')}")
    return array


def save_array(artefact: Path, array: np.ndarray, *, kind: str, key: str, params: dict | None = None,
               inputs: dict | None = None, info: dict | None = None) -> dict:
    """Write ``array`` and its manifest atomically (manifest last); returns the manifest."""
    artefact = Path(artefact)
    artefact.parent.mkdir(parents=True, exist_ok=True)
    manifest_path(artefact).unlink(missing_ok=True)

    atomic_save_npy(artefact, array)
    manifest = {"kind": kind, "key": key, "params": params or {}, "inputs": inputs or {},
                "shape": list(array.shape), "dtype": str(array.dtype), "info": info or {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(manifest_path(artefact), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
