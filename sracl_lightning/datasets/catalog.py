"""Named datasets, the readers for each source format, and where each dataset's item text comes from.

Catalog paths are relative to a *source root*, by default ``../shared/data`` (see its README for provenance).
Any other file can be used by passing its path and format instead of a catalog name; its item text is then looked
for beside it (``reviews_X_5.json.gz`` -> ``meta_X.json[.gz]``, Yelp ``review.json`` -> ``business.json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sracl_lightning.datasets.interaction_logs import read_amazon_reviews, read_recbole_inter, read_yelp_reviews
from sracl_lightning.datasets.item_text import TEXT_READERS, ItemTextKind, ItemTextSource
from sracl_lightning.datasets.sequence_files import read_s3rec, read_sracl
from sracl_lightning.datasets.sequences import Sequences
from sracl_lightning.errors import UsageError

SourceFormat = Literal["s3rec", "sracl", "recbole", "amazon", "yelp"]

READERS: dict[str, Callable[[Path], Sequences]] = {
    "s3rec": read_s3rec,
    "sracl": read_sracl,
    "recbole": read_recbole_inter,
    "amazon": read_amazon_reviews,
    "yelp": read_yelp_reviews,
}

# The Yelp Open Dataset's names, as unpacked (``review.json``) or as distributed (``yelp_academic_dataset_...``).
_YELP_REVIEW = re.compile(r"(yelp_academic_dataset_)?review\.json(\.gz)?")
_YELP_BUSINESS = re.compile(r"(yelp_academic_dataset_)?business\.json(\.gz)?")
_AMAZON_REVIEWS = re.compile(r"reviews_(.+?)(_5)?")


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
    """Guess a file's format from its name; ``.txt`` is ambiguous and must be given explicitly.

    Only the Yelp dump's own names (``review.json``, ``yelp_academic_dataset_review.json``, optionally ``.gz``) mean
    Yelp; any other ``.json[.gz]`` is taken for an Amazon review file (``reviews_<Cat>_5.json.gz``). A renamed Yelp
    file needs ``--format yelp``; read as Amazon it fails on its first line ("review has no 'reviewerID'").
    """
    name = path.name
    if name.endswith(".inter"):
        return "recbole"
    if _YELP_REVIEW.fullmatch(name):
        return "yelp"
    if name.endswith((".json", ".json.gz")):
        return "amazon"
    raise UsageError(f"cannot tell the format of {path}: pass one of {sorted(READERS)} explicitly")


def infer_item_text_kind(path: Path) -> ItemTextKind:
    """Guess how to read an item-text file from its name (``meta_*``, ``*_items.jsonl``, ``business.json``, RecBole
    ``*.item``)."""
    name = Path(path).name
    if name.startswith("meta_") and name.endswith((".json", ".json.gz")):
        return "amazon_meta"
    if name.endswith("_items.jsonl"):
        return "items_jsonl"
    if _YELP_BUSINESS.fullmatch(name):
        return "yelp_business"
    if name.endswith(".item"):
        return "recbole_item"
    raise UsageError(f"cannot tell how to read the item text {path}: pass one of {sorted(TEXT_READERS)} explicitly")


def dataset_name(path: Path) -> str:
    """Name of a dataset given by path: the file name without extensions; ``reviews_Beauty_5`` -> ``beauty``.

    A Yelp ``review.json`` is named ``yelp_review``, so that it never lands in the folder of the catalog's ``yelp``
    (the SRA-CL release file, whose item ids differ).
    """
    if _YELP_REVIEW.fullmatch(path.name):
        return "yelp_review"
    stem = path.name.split(".")[0]
    match = _AMAZON_REVIEWS.fullmatch(stem)
    return match.group(1).lower() if match else stem


def sibling_item_text(path: Path, source_format: SourceFormat) -> ItemTextSource | None:
    """The item-text file beside a raw interaction file, if there is one.

    ``reviews_<Cat>[_5].json[.gz]`` -> ``meta_<Cat>.json.gz`` or ``meta_<Cat>.json``; Yelp ``[<prefix>]review.json``
    -> ``[<prefix>]business.json[.gz]``; RecBole ``<name>.inter`` -> ``<name>.item`` (the atomic file RecBole keeps
    item features in). Other formats carry no item text.
    """
    path = Path(path)
    if source_format == "amazon":
        match = _AMAZON_REVIEWS.fullmatch(path.name.split(".")[0])
        if match is None:
            return None
        names, kind = [f"meta_{match.group(1)}.json.gz", f"meta_{match.group(1)}.json"], "amazon_meta"
    elif source_format == "yelp":
        match = _YELP_REVIEW.fullmatch(path.name)
        prefix = (match.group(1) or "") if match else ""
        names, kind = [f"{prefix}business.json", f"{prefix}business.json.gz"], "yelp_business"
    elif source_format == "recbole":
        stem = path.name[: -len(".inter")] if path.name.endswith(".inter") else path.stem
        names, kind = [f"{stem}.item"], "recbole_item"
    else:
        return None
    for name in names:
        if (path.parent / name).is_file():
            return ItemTextSource(path.parent / name, kind)
    return None


@dataclass(frozen=True)
class ResolvedDataset:
    """A dataset's name, interaction source and item-text source (``None``: it has no item text)."""

    name: str
    path: Path
    format: SourceFormat
    item_text: ItemTextSource | None


def resolve_source(dataset: str, source_root: str | Path, source_format: SourceFormat | None = None
                   ) -> ResolvedDataset:
    """Resolve a catalog name or a file path to its interaction file, format and item-text source.

    A catalog dataset's item text is its ``item_text`` table (``items_jsonl``), kept only in the catalog's own
    format: the table is keyed by the ids that format produces. A file's item text is its sibling metadata file
    (:func:`sibling_item_text`) when it exists.
    """
    if dataset in CATALOG:
        spec = CATALOG[dataset]
        fmt = source_format or spec.format
        text = None
        if spec.item_text is not None and fmt == spec.format:
            text = ItemTextSource(Path(source_root) / spec.item_text, "items_jsonl")
        return ResolvedDataset(dataset, Path(source_root) / spec.path, fmt, text)
    path = Path(dataset)
    if path.suffix or path.exists():
        fmt = source_format or infer_format(path)
        return ResolvedDataset(dataset_name(path), path, fmt, sibling_item_text(path, fmt))
    raise UsageError(f"unknown dataset {dataset!r}: use a file path or one of {sorted(CATALOG)}")


def resolve(dataset: str, source_root: str | Path, source_format: SourceFormat | None = None
            ) -> tuple[str, Path, SourceFormat]:
    """Return ``(name, source file, format)`` for a catalog name or a file path (:func:`resolve_source` without
    the item text)."""
    resolved = resolve_source(dataset, source_root, source_format)
    return resolved.name, resolved.path, resolved.format
