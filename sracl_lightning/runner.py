"""Run a paper table: every (dataset, row, seed) is one ``train.py`` run; resumable; then the results table.

    python -m sracl_lightning.runner configs/tables/main.yaml --datasets [beauty] --seeds [2024,2025,2026]
    python -m sracl_lightning.runner configs/tables/ablations.yaml --datasets [office] --jobs 2
    python -m sracl_lightning.runner configs/tables/main.yaml --dry_run true       # the plan and each run's state
    python -m sracl_lightning.runner configs/tables/main.yaml --table_only true    # rebuild the table from results

A table spec (``configs/tables/*.yaml``) lists rows; each row is a list of config files (``{dataset}`` is replaced
by the dataset's name), optional extra ``train.py`` arguments, optionally the datasets it applies to (``only``),
and the paper's numbers. Each run lives in ``<out_root>/<table>/<dataset>/<row>/seed<S>/`` with a ``run.json``
holding its arguments and a key: the hash of the run's resolved configuration (``configs/default.yaml``, every
config file and every argument, merged by ``train.py``'s own parser; values equal to a constructor's default left out),
so a comment or a moved file changes nothing; the code's commit is recorded beside it.

* A run whose ``run.json`` key matches and which holds a ``test_metrics.json`` is done and skipped.
* A run started with the same key but unfinished resumes from its newest ``last.ckpt`` (or starts over).
* A run whose key differs (a config file or an argument changed) is never reused silently: the runner stops and
  names it, unless ``--rerun_changed true``, which moves the old folder aside (``seed<S>.stale-<time>``) and runs
  again. Nothing is deleted.

Runs go one after another (``--jobs 1``) or in parallel processes; each writes ``train.log`` in its folder. With
``--jobs N`` on a CPU, give each process its share of the cores (``OMP_NUM_THREADS``) in ``--env``.

Beside the table the runner writes ``<output>.runs.jsonl``: one record per tabulated run (its key, metrics,
protocol, commit and wall time), small enough to commit. ``--records`` reads such files back, so runs made on another
machine or in another checkout (run folders are not portable; their records are) join the table and are not
trained again, but only where the record's key equals this plan's key for that (dataset, row, seed).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import yaml

from sracl_lightning.atomic import atomic_write_text
from sracl_lightning.resources import default_config, packaged_config
from sracl_lightning.tables import (
    TABLE_METRICS,
    NotRunRow,
    RunResult,
    read_run_result,
    summarize,
    to_csv,
    to_markdown,
)

_CHECKOUT = Path(__file__).resolve().parents[1]
#: Where runs start and config paths are relative to: the checkout the package lives in, or (an installed package)
#: the current directory; a config path found in neither names a shipped config (sracl_lightning.resources).
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "configs" / "default.yaml").is_file() else Path.cwd()
#: The released code's seed is 2024 (configs/default.yaml; the paper gives none); further seeds follow it.
DEFAULT_SEEDS = (2024, 2025, 2026, 2027, 2028)
RunState = Literal["done", "partial", "changed", "new"]


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


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[RowSpec, ...]
    datasets: tuple[str, ...]
    baseline: str | None = None
    metrics: tuple[str, ...] = TABLE_METRICS


def load_table_spec(path: str | Path) -> TableSpec:
    """Read and check a table spec; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'title', 'datasets' and 'rows'")

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
        unknown = set(row) - {"name", "configs", "args", "only", "paper", "not_run"}
        if unknown:
            raise ValueError(f"{path}: {where} has unknown fields {sorted(unknown)}")
        paper = row.get("paper") or {}
        for dataset, numbers in paper.items():
            if not isinstance(numbers, dict) or not all(isinstance(v, int | float) for v in numbers.values()):
                raise ValueError(f"{path}: {where}.paper.{dataset} must map metric names to numbers")
        not_run = row.get("not_run")
        if not_run is not None and (not isinstance(not_run, str) or not not_run.strip()):
            raise ValueError(f"{path}: {where}.not_run must be the reason the row is not run, as text")
        if not_run is not None and row.get("configs"):
            raise ValueError(f"{path}: {where} has both configs and not_run; a row is run or says why not")
        rows.append(RowSpec(name=str(need(row, "name", str, where)),
                            configs=tuple(need(row, "configs", list, where)) if not_run is None else (),
                            args=tuple(str(a) for a in row.get("args") or ()),
                            only=tuple(row["only"]) if row.get("only") is not None else None,
                            paper=paper, not_run=" ".join(not_run.split()) if not_run else None))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: row names must be unique, got {names}")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in names:
        raise ValueError(f"{path}: baseline {baseline!r} is not one of the rows {names}")
    return TableSpec(name=path.stem, title=str(need(raw, "title", str, "the table")), rows=tuple(rows),
                     datasets=tuple(need(raw, "datasets", list, "the table")), baseline=baseline,
                     metrics=tuple(raw.get("metrics") or TABLE_METRICS))


# -------------------------------------------------------------------------------------------------- the plan
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


def slug(name: str) -> str:
    """A folder name for a row: 'w/o L_CS' -> 'wo_l_cs'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("w/o", "wo")).strip("_")


@functools.cache
def _train_parser():
    """``train.py``'s argument parser, without ``configs/default.yaml`` as an implicit default (the key names it)."""
    from sracl_lightning.cli import SRACLCLI

    class ParserBuilt(Exception):
        def __init__(self, parser) -> None:
            self.parser = parser

    class ParserOnly(SRACLCLI):
        def parse_arguments(self, parser, args) -> None:
            raise ParserBuilt(parser)

    try:
        ParserOnly(args=[], parser_kwargs={"default_config_files": []})
    except ParserBuilt as built:
        return built.parser
    raise RuntimeError("SRACLCLI built no parser")


#: Keys of the resolved configuration that say where a run is, not what it is.
_NOT_CONFIGURATION = ("config", "ckpt_path", "trainer.default_root_dir")


def resolved_config(args: Sequence[str], root: Path) -> dict:
    """The configuration ``train.py`` runs with these arguments: ``configs/default.yaml`` and every ``--config``
    merged and every argument applied by ``train.py``'s own parser, with the values that equal a constructor's default
    left out (so a new argument with a default changes nothing), and without the run folder.

    Args:
        args: ``train.py`` arguments; config paths are relative to ``root``.
        root: The working directory of the runs.
    """
    absolute = list(args)
    for index in range(len(absolute) - 1):
        if absolute[index] == "--config":
            path = Path(absolute[index + 1])
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                path = Path(packaged_config(absolute[index + 1]))
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {root / absolute[index + 1]}")
            absolute[index + 1] = str(path)
    parser = _train_parser()
    namespace = parser.parse_args(["--config", str(default_config()), *absolute])
    for key in _NOT_CONFIGURATION:
        if key in namespace:
            del namespace[key]
    return _drop_signature_defaults(json.loads(parser.dump(namespace, skip_default=True, format="json")))


def _drop_signature_defaults(node: object) -> object:
    """Remove, under every ``class_path``, the ``init_args`` equal to that class's signature default (jsonargparse
    keeps them for nested classes), so that a library adding an argument with a default changes no key."""
    if isinstance(node, list):
        return [_drop_signature_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _drop_signature_defaults(value) for key, value in node.items()}
    if isinstance(node.get("class_path"), str) and isinstance(node.get("init_args"), dict):
        module, _, name = node["class_path"].rpartition(".")
        try:
            parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        except (ImportError, AttributeError, TypeError, ValueError):
            return node
        kept = {}
        for key, value in node["init_args"].items():
            default = parameters[key].default if key in parameters else inspect.Parameter.empty
            try:
                same = default is not inspect.Parameter.empty and json.loads(json.dumps(default)) == value
            except TypeError:
                same = False
            if not same:
                kept[key] = value
        node = {**node, "init_args": kept} if kept else {k: v for k, v in node.items() if k != "init_args"}
    return node


def run_key(args: Sequence[str], root: Path) -> str:
    """Hash of the resolved configuration of a run (:func:`resolved_config`): a comment or a file move in a config
    changes nothing, a changed value or class changes the key."""
    payload = json.dumps(resolved_config(args, root), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan(spec: TableSpec, *, datasets: Sequence[str] | None = None, seeds: Sequence[int] = DEFAULT_SEEDS,
         out_root: str | Path = "runs/tables", extra_args: Sequence[str] = (), root: Path = REPO_ROOT,
         rows: Sequence[str] | None = None) -> list[PlannedRun]:
    """Every (dataset, row, seed) run of ``spec`` (only the named ``rows`` when given), rows outside their
    ``only`` datasets left out. Seed-major: every row of a seed before the next seed, so a table stopped part-way
    holds complete seeds, which is what the paired t-test against the baseline row needs."""
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


# --------------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class RunRecord:
    """A finished run without its folder: what the table needs, the key it was made with, and its provenance."""

    result: RunResult
    key: str
    code_version: str | None = None
    wall_seconds: float | None = None
    note: str | None = None  # free text, e.g. where a record was recovered from

    def to_json(self) -> str:
        r = self.result
        return json.dumps({"dataset": r.dataset, "row": r.row, "seed": r.seed, "key": self.key,
                           "metrics": dict(r.metrics), "protocol": dict(r.protocol),
                           "semantic_profile": r.semantic_profile, "code_version": self.code_version,
                           "wall_seconds": self.wall_seconds, "note": self.note})


def local_record(run: PlannedRun) -> RunRecord:
    """The record of a run finished in its folder here."""
    info = json.loads((run.directory / "run.json").read_text(encoding="utf-8"))
    result = read_run_result(metrics_file(run.directory), dataset=run.dataset, row=run.row, seed=run.seed)
    return RunRecord(result, run.key, info.get("code_version"), info.get("wall_seconds"))


def read_records(paths: Sequence[str | Path]) -> dict[tuple[str, str, int], tuple[RunRecord, str]]:
    """Records by (dataset, row, seed), each with where it was read (``file:line``); errors name the file and line.
    The same run may appear in several files only with the same key and metrics."""
    found: dict[tuple[str, str, int], tuple[RunRecord, str]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"records file not found: {path}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            missing = [k for k in ("dataset", "row", "seed", "key", "metrics") if k not in raw]
            if missing:
                raise ValueError(f"{where}: a run record needs {missing}, as the runner writes them")
            metrics = raw["metrics"]
            if not isinstance(metrics, dict) or not all(isinstance(v, int | float) for v in metrics.values()):
                raise ValueError(f"{where}: 'metrics' must map metric names to numbers")
            result = RunResult(dataset=str(raw["dataset"]), row=str(raw["row"]), seed=int(raw["seed"]),
                               metrics=metrics, protocol=raw.get("protocol") or {},
                               semantic_profile=raw.get("semantic_profile"))
            record = RunRecord(result, str(raw["key"]), raw.get("code_version"), raw.get("wall_seconds"),
                               raw.get("note"))
            ident = (result.dataset, result.row, result.seed)
            if ident in found:
                earlier, earlier_where = found[ident]
                if (earlier.key, dict(earlier.result.metrics)) != (record.key, dict(metrics)):
                    raise ValueError(f"{where}: {'/'.join(map(str, ident))} has another record at {earlier_where} "
                                     "with a different key or metrics")
                continue
            found[ident] = (record, where)
    return found


def match_records(runs: Sequence[PlannedRun], records: Mapping[tuple[str, str, int], tuple[RunRecord, str]]
                  ) -> dict[PlannedRun, RunRecord]:
    """The record of each planned run that has one. A record made with another key is never used: it stops the
    runner, naming the record. Records of runs outside the plan are ignored."""
    matched = {}
    for run in runs:
        entry = records.get((run.dataset, run.row, run.seed))
        if entry is None:
            continue
        record, where = entry
        if record.key != run.key:
            raise ValueError(f"{where}: the record of {run.dataset}/{run.row}/seed {run.seed} was made with another "
                             f"configuration (key {record.key}; this plan's key is {run.key}): plan it with the same "
                             "configs and --train_args, or leave that file out of --records")
        matched[run] = record
    return matched


# --------------------------------------------------------------------------------------------------- running
@dataclass
class _Active:
    """A started run: its process, its open log file and its start time."""

    process: subprocess.Popen
    log: IO[str]
    started: float


class Runner:
    """Runs the planned runs that are not done, ``jobs`` at a time.

    Args:
        train_command: The command that trains (``[python, train.py]``); tests swap in a stand-in.
        jobs: Runs at the same time, each its own process.
        env: Extra environment variables of every run (e.g. ``OMP_NUM_THREADS``).
        rerun_changed: Move aside and rerun runs whose key changed, instead of stopping.
        root: Working directory of the runs (config paths are relative to it).
    """

    def __init__(self, train_command: Sequence[str] | None = None, *, jobs: int = 1,
                 env: Mapping[str, str] | None = None, rerun_changed: bool = False, root: Path = REPO_ROOT) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.train_command = list(train_command or [sys.executable, "-m", "sracl_lightning.train"])
        self.jobs = jobs
        self.env = dict(env or {})
        self.rerun_changed = rerun_changed
        self.root = root

    def check(self, runs: Sequence[PlannedRun]) -> None:
        """Stop before running anything if a run's configuration changed and reruns were not asked for."""
        changed = [r for r in runs if state(r) == "changed"]
        if changed and not self.rerun_changed:
            listing = "\n  ".join(str(r.directory) for r in changed)
            raise RuntimeError(f"{len(changed)} run(s) were made with another configuration (their run.json key "
                               f"differs):\n  {listing}\nrerun them with --rerun_changed true (the old folders "
                               "are moved aside, not deleted), or use another --out_root")

    def command(self, run: PlannedRun) -> list[str]:
        command = [*self.train_command, *run.args, "--trainer.default_root_dir", str(run.directory)]
        checkpoint = resume_checkpoint(run)
        return command + (["--ckpt_path", str(checkpoint)] if checkpoint is not None else [])

    def start(self, run: PlannedRun) -> _Active:
        current = state(run)
        if current == "changed":
            stale = run.directory.with_name(f"{run.directory.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.move(run.directory, stale)
            print(f"[runner] {run.directory}: configuration changed; the old run moved to {stale}", flush=True)
        run.directory.mkdir(parents=True, exist_ok=True)
        command = self.command(run)
        record = {"key": run.key, "dataset": run.dataset, "row": run.row, "seed": run.seed, "args": list(run.args),
                  "command": command, "code_version": code_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(run.directory / "run.json", json.dumps(record, indent=2) + "\n")
        log = (run.directory / "train.log").open("a", encoding="utf-8")
        process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.env})
        return _Active(process, log, time.monotonic())

    def finish(self, run: PlannedRun, active: _Active) -> bool:
        active.log.close()
        process = active.process
        seconds = time.monotonic() - active.started
        record = json.loads((run.directory / "run.json").read_text(encoding="utf-8"))
        record.update(returncode=process.returncode, wall_seconds=round(seconds, 1))
        atomic_write_text(run.directory / "run.json", json.dumps(record, indent=2) + "\n")
        ok = process.returncode == 0 and metrics_file(run.directory) is not None
        verdict = "done" if ok else f"FAILED (exit {process.returncode}; see {run.directory / 'train.log'})"
        print(f"[runner] {run.dataset} / {run.row} / seed {run.seed}: {verdict} in {seconds / 60:.1f} min",
              flush=True)
        return ok

    def run(self, runs: Sequence[PlannedRun], recorded: Collection[PlannedRun] = ()) -> list[PlannedRun]:
        """Run what is neither done here nor in ``recorded`` (runs with a matching record, see
        :func:`match_records`); returns the runs that failed."""
        todo = [r for r in runs if state(r) != "done" and r not in recorded]
        self.check(todo)
        print(f"[runner] {len(runs)} runs: {len(runs) - len(todo)} done, {len(todo)} to run, "
              f"{self.jobs} at a time", flush=True)
        failed, active = [], {}
        queue = list(todo)
        while queue or active:
            while queue and len(active) < self.jobs:
                run = queue.pop(0)
                print(f"[runner] start {run.dataset} / {run.row} / seed {run.seed}: {run.command_line}", flush=True)
                active[run] = self.start(run)
            time.sleep(0.2)
            for run, handle in list(active.items()):
                if handle.process.poll() is not None:
                    del active[run]
                    if not self.finish(run, handle):
                        failed.append(run)
        return failed


# ------------------------------------------------------------------------------------------------- the table
def write_table(spec: TableSpec, runs: Sequence[PlannedRun], output: str | Path, command: str | None = None,
                records: Mapping[PlannedRun, RunRecord] | None = None) -> tuple[Path, Path, Path] | None:
    """Write ``<output>.md``, ``<output>.csv`` and ``<output>.runs.jsonl`` from the finished runs: those done in
    their folders here, then those in ``records`` (see :func:`match_records`); ``None`` when none has finished.
    ``command``, when given, is stated under the title (the runner passes its own command line)."""
    records = records or {}
    finished: dict[PlannedRun, RunRecord] = {}
    imported = []  # finished by their records only
    for run in runs:
        if state(run) == "done":
            finished[run] = local_record(run)
        elif run in records:
            finished[run] = records[run]
            imported.append(run)
    if not finished:
        return None
    results = [record.result for record in finished.values()]
    paper = {row.name: row.paper for row in spec.rows}
    cells = summarize(results, baseline=spec.baseline, paper=paper, metrics=spec.metrics)
    datasets = dict.fromkeys(run.dataset for run in finished)
    not_run = [NotRunRow(dataset, row.name, row.not_run, row.paper.get(dataset, {})) for dataset in datasets
               for row in spec.rows if row.not_run is not None and (row.only is None or dataset in row.only)]
    markdown = to_markdown(cells, results, title=spec.title, baseline=spec.baseline, metrics=spec.metrics,
                           command=command, not_run=not_run)
    walls = [record.wall_seconds for record in finished.values() if record.wall_seconds is not None]
    if not walls:
        wall = "no wall time in their records"
    else:
        timed = "runs" if len(walls) == len(finished) else f"the {len(walls)} runs whose records have one"
        wall = f"total training wall time {sum(walls) / 3600:.2f} h (sum over {timed})"
    footer = [f"{len(finished)} of {len(runs)} planned runs finished; {wall}."]
    if imported:
        footer.append(f"{len(imported)} of them from run records, not run folders here: "
                      + ", ".join(f"{r.dataset}/{r.row}/seed {r.seed}" for r in imported) + ".")
    missing = [r for r in runs if r not in finished]
    if missing:
        footer.append("Not finished: " + ", ".join(f"{r.dataset}/{r.row}/seed {r.seed}" for r in missing) + ".")
    output = Path(output)
    md, csv_path = output.with_suffix(".md"), output.with_suffix(".csv")
    jsonl = output.with_suffix(".runs.jsonl")
    atomic_write_text(md, markdown + "\n" + "\n".join(footer) + "\n")
    atomic_write_text(csv_path, to_csv(cells))
    atomic_write_text(jsonl, "".join(record.to_json() + "\n" for record in finished.values()))
    return md, csv_path, jsonl


def main(
    table: str,
    datasets: list[str] | None = None,
    rows: list[str] | None = None,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    jobs: int = 1,
    out_root: str = "runs/tables",
    output: str | None = None,
    train_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    rerun_changed: bool = False,
    dry_run: bool = False,
    table_only: bool = False,
    records: list[str] | None = None,
) -> None:
    """Run every missing run of a table, then write its Markdown and CSV.

    Args:
        table: A table spec, e.g. ``configs/tables/main.yaml``.
        datasets: Datasets to run (default: the spec's).
        rows: Rows to run and tabulate (default: all), e.g. ``[w/o CL, SRA-CL]``.
        seeds: Seeds; each (dataset, row) is trained once per seed.
        jobs: Runs at the same time.
        out_root: Where run folders go.
        output: Table path without suffix (default ``<out_root>/<table>/results``).
        train_args: Extra ``train.py`` arguments for every run, e.g. ``[--trainer.precision, bf16-mixed]``; they
            are part of the run key.
        env: Extra environment variables for every run, e.g. ``{OMP_NUM_THREADS: '1'}``.
        rerun_changed: Rerun runs whose configuration changed (old folders are moved aside).
        dry_run: Only print the plan and each run's state.
        table_only: Only rebuild the table from finished runs.
        records: ``.runs.jsonl`` files of runs finished elsewhere (another machine or checkout); a planned run with
            a record of the same key counts as finished and is not trained.
    """
    spec = load_table_spec(table)
    runs = plan(spec, datasets=datasets, seeds=seeds, out_root=out_root, extra_args=train_args or (), rows=rows)
    recorded = match_records(runs, read_records(records or ()))
    if dry_run:
        for run in runs:
            current = state(run)
            label = "recorded" if current != "done" and run in recorded else current
            print(f"{label:8s} {run.command_line}")
        return
    failed = [] if table_only else Runner(jobs=jobs, env=env, rerun_changed=rerun_changed).run(runs, recorded)
    command = " ".join(["python -m sracl_lightning.runner", table,
                        *(["--datasets", f"[{','.join(datasets)}]"] if datasets else []),
                        *(["--rows", f"'[{', '.join(rows)}]'"] if rows else []),
                        "--seeds", f"[{','.join(map(str, seeds))}]",
                        *(["--train_args", f"'[{', '.join(train_args)}]'"] if train_args else []),
                        *(["--records", f"[{','.join(records)}]"] if records else [])])
    written = write_table(spec, runs, output or Path(out_root) / spec.name / "results", command=command,
                          records=recorded)
    if written:
        print(f"[runner] wrote {', '.join(map(str, written))}")
    if failed:
        raise SystemExit(f"[runner] {len(failed)} run(s) failed: "
                         + ", ".join(f"{r.dataset}/{r.row}/seed {r.seed}" for r in failed))


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main, as_positional=True)
