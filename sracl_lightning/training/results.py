"""Result files: a metrics JSON and a Markdown table row, always with the protocol that produced them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_save_npy, atomic_write_text

log = logging.getLogger(__name__)


#: Columns of the Markdown row: the paper's tables report HR/NDCG at 10 and 20; MRR@10 selects checkpoints.
TABLE_COLUMNS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@10")


def split_metrics(metrics: Mapping[str, float], split: str) -> dict[str, float]:
    """``{"test/hr@10": x, ...}`` -> ``{"hr@10": x, ...}`` for one split."""
    prefix = f"{split}/"
    return {key[len(prefix):]: float(value) for key, value in metrics.items() if key.startswith(prefix)}


def markdown_row(label: str, metrics: Mapping[str, float], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    cells = " | ".join(f"{metrics[c]:.4f}" if c in metrics else "n/a" for c in columns)
    return f"| {label} | {cells} |"


def markdown_header(columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    return f"| run | {' | '.join(c.upper() for c in columns)} |\n|---|{'---|' * len(columns)}"


def write_results(
    out_dir: str | Path,
    split: str,
    metrics: Mapping[str, float],
    protocol: Mapping[str, object],
    **meta: object,
) -> tuple[Path, Path]:
    """Write ``<split>_metrics.json`` and ``<split>_results.md`` into ``out_dir``, print the row, return the paths."""
    out_dir = Path(out_dir)
    values = split_metrics(metrics, split)
    label = str(meta.get("dataset") or out_dir.name)
    json_path = out_dir / f"{split}_metrics.json"
    md_path = out_dir / f"{split}_results.md"
    payload = {"split": split, "metrics": values, "protocol": dict(protocol), **meta}
    atomic_write_text(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    protocol_line = "; ".join(f"{k}={v}" for k, v in protocol.items())
    table = f"{markdown_header()}\n{markdown_row(label, values)}\n"
    atomic_write_text(md_path, f"<!-- protocol: {protocol_line} -->\n{table}")
    log.info(f"\n{split} results ({protocol_line})\n{table}wrote {json_path} and {md_path}")
    return json_path, md_path


def write_ranks(out_dir: str | Path, split: str, user_ranks: tuple | None) -> Path | None:
    """Write ``<split>_ranks.npy``, a (U, 2) int64 array of (user row, 1-based rank of the target), sorted by user:
    what per-user statistics (bootstrap intervals, paired tests by user) are computed from. ``None``: nothing."""
    if user_ranks is None:
        return None
    users, ranks = (np.asarray(values, dtype=np.int64) for values in user_ranks)
    path = Path(out_dir) / f"{split}_ranks.npy"
    atomic_save_npy(path, np.stack([users, ranks], axis=1))
    return path
