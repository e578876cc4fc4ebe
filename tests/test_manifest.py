"""Artefact manifests: complete-or-absent writes, key checks, and hashes that tell inputs apart."""

from __future__ import annotations

import numpy as np
import pytest

from sracl_lightning.datasets.manifest import (
    array_hash,
    is_fresh,
    load_array,
    manifest_path,
    read_manifest,
    save_array,
    stable_hash,
    texts_hash,
)

pytestmark = pytest.mark.unit


def test_round_trip_and_key_check(tmp_path):
    path = tmp_path / "a" / "table.npy"
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    manifest = save_array(path, array, kind="test", key="k1", params={"k": 4}, info={"rows": 3})
    assert manifest_path(path).name == "table.manifest.json"
    assert read_manifest(path) == manifest and manifest["shape"] == [3, 4] and manifest["dtype"] == "int32"
    assert is_fresh(path, "k1") and not is_fresh(path, "k2")
    assert np.array_equal(load_array(path, "k1"), array)
    with pytest.raises(ValueError, match="stale"):
        load_array(path, "k2")


def test_missing_or_damaged_manifest_means_rebuild(tmp_path):
    path = tmp_path / "table.npy"
    np.save(path, np.zeros(3))  # an array without a manifest: an interrupted write
    assert read_manifest(path) is None and not is_fresh(path, "k")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_array(path)
    save_array(path, np.zeros(3), kind="test", key="k")
    manifest_path(path).write_text("{ truncated")
    assert read_manifest(path) is None


def test_array_swapped_behind_the_manifest_is_refused(tmp_path):
    path = tmp_path / "table.npy"
    save_array(path, np.zeros((4, 2)), kind="test", key="k")
    np.save(path, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="shape"):
        load_array(path, "k")


def test_hashes_separate_what_differs():
    assert texts_hash(["ab"]) != texts_hash(["a", "b"])
    assert texts_hash(["a", "b"]) != texts_hash(["b", "a"])
    assert stable_hash({"x": 1, "y": 2}) == stable_hash({"y": 2, "x": 1})
    a = np.arange(6, dtype=np.int32)
    assert array_hash(a) != array_hash(a.astype(np.int64)) and array_hash(a) != array_hash(a.reshape(2, 3))
