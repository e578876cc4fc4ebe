"""Table specs (``configs/tables/*.yaml``): rows, their configs and arguments, the paper's numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sracl_lightning.experiments.tables import (
    FAR_FROM_PAPER,
    TABLE_METRICS,
)


# ------------------------------------------------------------------------------------------------ table specs
@dataclass(frozen=True)
class RowSpec:
    """One row of a table: how to train it and what the paper reports for it."""

    name: str
    configs: tuple[str, ...]
    args: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    paper: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # paper[dataset][metric]
    not_run: str | None = None  # why this row cannot be trained here; shown in the table instead of numbers
    #: Why this row may differ from the paper's numbers (a protocol difference, say), for every dataset or per
    #: dataset (``{office: ...}``); printed under a dataset's table where one of the row's cells is further than the
    #: table's ``far_from_paper`` from the paper's number.
    note: str | Mapping[str, str] | None = None
    #: The row this row's paired t-test compares against, where it is not the table's baseline (Fig. 3: each
    #: backbone with SRA-CL against the same backbone without).
    versus: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[RowSpec, ...]
    datasets: tuple[str, ...]
    baseline: str | None = None
    metrics: tuple[str, ...] = TABLE_METRICS
    #: A cell further than this from the paper's number (relative, either way) gets its row's note under the table.
    far_from_paper: float = FAR_FROM_PAPER


def load_table_spec(path: str | Path) -> TableSpec:
    """Read and check a table spec; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'title', 'datasets' and 'rows'")

    unknown = set(raw) - {"title", "datasets", "baseline", "metrics", "rows", "far_from_paper"}
    if unknown:
        raise ValueError(f"{path}: unknown fields {sorted(unknown)} (a table has title, datasets, rows, and optionally "
                         "baseline, metrics and far_from_paper)")

    def need(obj: dict, key: str, kind: type, where: str):
        if key not in obj:
            raise ValueError(f"{path}: {where} has no '{key}'")
        if not isinstance(obj[key], kind):
            raise ValueError(f"{path}: {where}.{key} must be a {kind.__name__}, got {type(obj[key]).__name__}")
        return obj[key]

    rows = []
    for index, row in enumerate(need(raw, "rows", list, "the table")):
        where = f"rows[{index}]"
        if not isinstance(row, dict):
            raise ValueError(f"{path}: {where} must be a mapping")
        unknown = set(row) - {"name", "configs", "args", "only", "paper", "not_run", "note", "versus"}
        if unknown:
            raise ValueError(f"{path}: {where} has unknown fields {sorted(unknown)}")
        paper = row.get("paper") or {}
        for dataset, numbers in paper.items():
            if not isinstance(numbers, dict) or not all(isinstance(v, int | float) for v in numbers.values()):
                raise ValueError(f"{path}: {where}.paper.{dataset} must map metric names to numbers")
        not_run = row.get("not_run")
        if not_run is not None and (not isinstance(not_run, str) or not not_run.strip()):
            raise ValueError(f"{path}: {where}.not_run must be the reason the row is not run, as text")
        note = row.get("note")
        texts = note.values() if isinstance(note, dict) else [note]
        if note is not None and not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{path}: {where}.note must be text (why the row may differ from the paper), or map "
                             "datasets to such text")
        if isinstance(note, dict):
            note = {str(dataset): " ".join(text.split()) for dataset, text in note.items()}
        elif note is not None:
            note = " ".join(note.split())
        if not_run is not None and row.get("configs"):
            raise ValueError(f"{path}: {where} has both configs and not_run; a row is run or says why not")
        rows.append(RowSpec(name=str(need(row, "name", str, where)),
                            configs=tuple(need(row, "configs", list, where)) if not_run is None else (),
                            args=tuple(str(a) for a in row.get("args") or ()),
                            only=tuple(row["only"]) if row.get("only") is not None else None,
                            paper=paper, not_run=" ".join(not_run.split()) if not_run else None,
                            note=note,
                            versus=None if row.get("versus") is None else str(row["versus"])))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: row names must be unique, got {names}")
    for index, row in enumerate(rows):
        if row.versus is not None and (row.versus not in names or row.versus == row.name):
            raise ValueError(f"{path}: rows[{index}].versus {row.versus!r} must name another row, one of {names}")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in names:
        raise ValueError(f"{path}: baseline {baseline!r} is not one of the rows {names}")
    far = raw.get("far_from_paper", FAR_FROM_PAPER)
    if isinstance(far, bool) or not isinstance(far, int | float) or not 0 < far < 1:
        raise ValueError(f"{path}: far_from_paper must be a fraction between 0 and 1 (0.03: 3 %), got {far!r}")
    return TableSpec(name=path.stem, title=str(need(raw, "title", str, "the table")), rows=tuple(rows),
                     datasets=tuple(need(raw, "datasets", list, "the table")), baseline=baseline,
                     metrics=tuple(raw.get("metrics") or TABLE_METRICS), far_from_paper=float(far))


def slug(name: str) -> str:
    """A folder name for a row: 'w/o L_CS' -> 'wo_l_cs'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("w/o", "wo")).strip("_")
