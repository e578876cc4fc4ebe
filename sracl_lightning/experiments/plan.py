"""The plan of a table: every (dataset, row, seed) run, its folder and key, and its state on disk."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sracl_lightning.experiments.keys import run_key
from sracl_lightning.experiments.specs import TableSpec, slug

_CHECKOUT = Path(__file__).resolve().parents[2]
#: Where runs start and config paths are relative to: the checkout the package lives in, or (an installed package)
#: the current directory; a config path found in neither names a shipped config (sracl_lightning.resources).
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "configs" / "default.yaml").is_file() else Path.cwd()
#: The released code's seed is 2024 (configs/default.yaml; the paper gives none); further seeds follow it.
DEFAULT_SEEDS = (2024, 2025, 2026, 2027, 2028)
RunState = Literal["done", "partial", "changed", "new"]


@dataclass(frozen=True)
class PlannedRun:
    dataset: str
    row: str
    seed: int
    args: tuple[str, ...]  # train.py arguments, the run folder excluded
    directory: Path
    key: str

    @property
    def command_line(self) -> str:
        return " ".join(["python train.py", *self.args, "--trainer.default_root_dir", str(self.directory)])


def plan(spec: TableSpec, *, datasets: Sequence[str] | None = None, seeds: Sequence[int] = DEFAULT_SEEDS,
         out_root: str | Path = "runs/tables", extra_args: Sequence[str] = (), root: Path = REPO_ROOT,
         rows: Sequence[str] | None = None) -> list[PlannedRun]:
    """Every (dataset, row, seed) run of ``spec`` (only the named ``rows`` when given, in their order; else in the
    spec's), rows outside their ``only`` datasets left out. Seed-major: every row of a seed before the next seed, so
    a table stopped part-way holds complete seeds, which is what the paired t-test against the baseline row needs.
    The table lists its rows in the spec's order either way."""
    if not seeds:
        raise ValueError("no seeds given")
    names = [r.name for r in spec.rows]
    unknown = sorted(set(rows or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; {spec.name} has {names}")
    runs = []
    for dataset in datasets or spec.datasets:
        chosen = [row for row in spec.rows if (rows is None or row.name in rows)
                  and (row.only is None or dataset in row.only) and row.not_run is None]
        if rows is not None:
            chosen.sort(key=lambda row: list(rows).index(row.name))
        for seed in seeds:
            for row in chosen:
                configs = [a for c in row.configs for a in ("--config", c.format(dataset=dataset))]
                args = (*configs, *row.args, *extra_args, "--seed_everything", str(seed))
                directory = Path(out_root) / spec.name / dataset / slug(row.name) / f"seed{seed}"
                runs.append(PlannedRun(dataset, row.name, int(seed), args, directory, run_key(args, root)))
    return runs


def code_version() -> str | None:
    """The repository's commit (with ``-dirty`` when it has uncommitted changes), for provenance only: a code change
    does not invalidate finished runs."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def metrics_file(directory: Path) -> Path | None:
    """The newest ``test_metrics.json`` under a run folder (a resumed run writes into a new version folder)."""
    found = sorted(directory.rglob("test_metrics.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def state(run: PlannedRun) -> RunState:
    record = run.directory / "run.json"
    if not record.is_file():
        return "new"
    if json.loads(record.read_text(encoding="utf-8")).get("key") != run.key:
        return "changed"
    return "done" if metrics_file(run.directory) is not None else "partial"


def resume_checkpoint(run: PlannedRun) -> Path | None:
    found = sorted(run.directory.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
