"""Named datasets and the readers for each source format.

Catalog paths are relative to a *source root*, by default ``../shared/data`` (see its README for provenance).
Any other file can be used by passing its path and format instead of a catalog name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sracl_lightning.interaction_logs import read_amazon_reviews, read_recbole_inter
from sracl_lightning.sequence_files import read_s3rec, read_sracl
from sracl_lightning.sequences import Sequences

SourceFormat = Literal["s3rec", "sracl", "recbole", "amazon"]

READERS: dict[str, Callable[[Path], Sequences]] = {
    "s3rec": read_s3rec,
    "sracl": read_sracl,
    "recbole": read_recbole_inter,
    "amazon": read_amazon_reviews,
}


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset's interactions (and item text, if any) live under the source root."""

    path: str
    format: SourceFormat
    item_text: str | None = None
    note: str = ""


CATALOG: dict[str, DatasetSpec] = {
    # The paper's four datasets (Table 3). Beauty and Sports come from the S3-Rec files, whose ids key the
    # item text; Office and Yelp exist only in the SRA-CL release (and have no item text).
    "beauty": DatasetSpec("Beauty/Beauty.txt", "s3rec", "Beauty/Beauty_items.jsonl"),
    "sports": DatasetSpec("Sports_and_Outdoors/Sports_and_Outdoors.txt", "s3rec",
                          "Sports_and_Outdoors/Sports_and_Outdoors_items.jsonl", note="no item titles"),
    "office": DatasetSpec("sracl/Office.txt", "sracl", note="no item text"),
    "yelp": DatasetSpec("sracl/Yelp.txt", "sracl", note="the paper's 2019 Yelp; no item text"),
    # Not in the paper.
    "toys": DatasetSpec("Toys_and_Games/Toys_and_Games.txt", "s3rec", "Toys_and_Games/Toys_and_Games_items.jsonl"),
    "yelp_s3rec": DatasetSpec("Yelp/Yelp.txt", "s3rec", "Yelp/Yelp_items.jsonl",
                              note="the S3-Rec Yelp, not the paper's"),
    # The same sequences as beauty/sports under the SRA-CL release's item ids.
    "beauty_sracl": DatasetSpec("sracl/Beauty.txt", "sracl"),
    "sports_sracl": DatasetSpec("sracl/Sports_and_Outdoors.txt", "sracl"),
}


def infer_format(path: Path) -> SourceFormat:
    """Guess a file's format from its name; ``.txt`` is ambiguous and must be given explicitly."""
    name = path.name
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".json", ".json.gz")):
        return "amazon"
    raise ValueError(f"cannot tell the format of {path}: pass one of {sorted(READERS)} explicitly")


def dataset_name(path: Path) -> str:
    """Name of a dataset given by path: the file name without extensions; ``reviews_Beauty_5`` -> ``beauty``."""
    stem = path.name.split(".")[0]
    match = re.fullmatch(r"reviews_(.+?)(_5)?", stem)
    return match.group(1).lower() if match else stem


def resolve(dataset: str, source_root: str | Path, source_format: SourceFormat | None = None
            ) -> tuple[str, Path, SourceFormat]:
    """Return ``(name, source file, format)`` for a catalog name or a file path."""
    if dataset in CATALOG:
        spec = CATALOG[dataset]
        return dataset, Path(source_root) / spec.path, source_format or spec.format
    path = Path(dataset)
    if path.suffix or path.exists():
        fmt = source_format or infer_format(path)
        return dataset_name(path), path, fmt
    raise ValueError(f"unknown dataset {dataset!r}: use a file path or one of {sorted(CATALOG)}")
