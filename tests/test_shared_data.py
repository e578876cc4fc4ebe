"""Checks against the real datasets in ``../shared/data`` (read-only); skipped when that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sracl_lightning.datasets import catalog, processed
from sracl_lightning.datasets.samples import SequenceSamples
from sracl_lightning.datasets.sequence_files import read_s3rec, read_sracl

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")]

# ../shared/data/README.md and the paper's Table 3: (users, items, interactions); training samples:
# docs/method.md#samples-and-windows.
EXPECTED = {
    "beauty": (22_363, 12_101, 198_502, 131_413),
    "sports": (35_598, 18_357, 296_337, 189_543),
    "office": (4_905, 2_420, 53_258, 38_543),
    "yelp": (19_936, 14_587, 207_952, 148_144),
    "toys": (19_412, 11_924, 167_597, None),  # not in the paper; its sample count follows from the formula
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processed")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_statistics(name: str, data_root: Path) -> None:
    """Converting each catalog dataset gives the published user/item/interaction and training-sample counts."""
    users, items, interactions, train = EXPECTED[name]
    _, source, fmt = catalog.resolve(name, SHARED_DATA)
    directory, stats, converted = processed.prepare(name, source, fmt, data_root)
    assert converted
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (users, items, interactions)
    assert stats["num_train_samples"] == interactions - 3 * users
    if train is not None:
        assert stats["num_train_samples"] == train
    assert stats["min_length"] >= 3
    sequences = processed.load(directory)
    # Every item id 1..N occurs, so N is the true item count.
    assert np.array_equal(np.unique(sequences.items), np.arange(1, items + 1))
    assert len(SequenceSamples(sequences, "train", max_len=50)) == stats["num_train_samples"]
    assert len(SequenceSamples(sequences, "test", max_len=50)) == users


@pytest.mark.parametrize(("s3rec_name", "sracl_name"), [("beauty", "beauty_sracl"), ("sports", "sports_sracl")])
def test_sracl_release_matches_s3rec_through_the_id_map(s3rec_name: str, sracl_name: str) -> None:
    """Mapped through ``<Name>_sracl_to_coserec_item_id.tsv`` the SRA-CL file holds the S3-Rec sequences.

    The two files list users in different orders (user ids do not correspond), so the sequences are compared as
    multisets: sorted lists of tuples.
    """
    _, s3rec_path, s3rec_fmt = catalog.resolve(s3rec_name, SHARED_DATA)
    _, sracl_path, sracl_fmt = catalog.resolve(sracl_name, SHARED_DATA)
    assert (s3rec_fmt, sracl_fmt) == ("s3rec", "sracl")
    s3rec, sracl = read_s3rec(s3rec_path), read_sracl(sracl_path)
    # Both files already use ids 1..N, so the readers keep them: the map applies to the arrays directly.
    n = s3rec.num_items
    assert s3rec.item_tokens[1:] == sracl.item_tokens[1:] == [str(i) for i in range(1, n + 1)]

    map_path = sracl_path.with_name(f"{sracl_path.stem}_sracl_to_coserec_item_id.tsv")
    with map_path.open(encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split("\t") == ["sracl_item_id", "coserec_item_id"]
        pairs = np.loadtxt(f, dtype=np.int64, delimiter="\t", ndmin=2)
    # A bijection of 1..N onto 1..N.
    assert len(pairs) == n
    assert np.array_equal(np.sort(pairs[:, 0]), np.arange(1, n + 1))
    assert np.array_equal(np.sort(pairs[:, 1]), np.arange(1, n + 1))
    to_coserec = np.zeros(n + 1, dtype=np.int64)
    to_coserec[pairs[:, 0]] = pairs[:, 1]

    assert s3rec.num_users == sracl.num_users
    mapped = to_coserec[sracl.items]
    left = sorted(tuple(s3rec.sequence(u).tolist()) for u in range(s3rec.num_users))
    right = sorted(tuple(mapped[sracl.offsets[u] : sracl.offsets[u + 1]].tolist()) for u in range(sracl.num_users))
    assert left == right
