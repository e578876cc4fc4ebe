"""Run records: finished runs without their folders (``<table>.runs.jsonl``), read back and matched to a plan."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sracl_lightning.experiments.plan import (
    PlannedRun,
    metrics_file,
)
from sracl_lightning.experiments.tables import (
    RunResult,
    read_run_result,
)


# --------------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class RunRecord:
    """A finished run without its folder: what the table needs, the key it was made with, and its provenance."""

    result: RunResult
    key: str
    code_version: str | None = None
    wall_seconds: float | None = None  # the runner's, from start to exit of the last attempt (a resume's part only)
    note: str | None = None  # free text, e.g. where a record was recovered from

    @property
    def seconds(self) -> float | None:
        """The run's time: its epochs' training and validation, resumed parts included, where its result has them
        (:attr:`RunResult.fit_seconds`); else the runner's wall time of its last attempt."""
        return self.result.fit_seconds if self.result.fit_seconds is not None else self.wall_seconds

    def to_json(self) -> str:
        r = self.result
        return json.dumps({"dataset": r.dataset, "row": r.row, "seed": r.seed, "key": self.key,
                           "metrics": dict(r.metrics), "protocol": dict(r.protocol),
                           "semantic_profile": r.semantic_profile,
                           "test_rank_counts": None if r.rank_counts is None else list(r.rank_counts),
                           "fit_seconds": r.fit_seconds,
                           "code_version": self.code_version,
                           "wall_seconds": self.wall_seconds, "note": self.note})


def local_record(run: PlannedRun) -> RunRecord:
    """The record of a run finished in its folder here."""
    info = json.loads((run.directory / "run.json").read_text(encoding="utf-8"))
    result = read_run_result(metrics_file(run.directory), dataset=run.dataset, row=run.row, seed=run.seed)
    return RunRecord(result, run.key, info.get("code_version"), info.get("wall_seconds"))


def iter_records(paths: Sequence[str | Path]) -> Iterator[tuple[RunRecord, str]]:
    """Every record of the files, in order, each with where it was read (``file:line``); a malformed line is
    refused with its file and line. Records of one run are not merged (see :func:`read_records`)."""
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
            counts = raw.get("test_rank_counts")
            if counts is not None and not (isinstance(counts, list) and len(counts) >= 2 and sum(counts) > 0
                                           and all(type(c) is int and c >= 0 for c in counts)):
                raise ValueError(f"{where}: 'test_rank_counts' must list how many users ranked their target 1st, "
                                 "2nd, ... (at least two counts >= 0, not all 0), as the runner writes them")
            fit_seconds = raw.get("fit_seconds")
            if fit_seconds is not None and not isinstance(fit_seconds, int | float):
                raise ValueError(f"{where}: 'fit_seconds' must be a number of seconds, as the runner writes it")
            result = RunResult(dataset=str(raw["dataset"]), row=str(raw["row"]), seed=int(raw["seed"]),
                               metrics=metrics, protocol=raw.get("protocol") or {},
                               semantic_profile=raw.get("semantic_profile"),
                               rank_counts=None if counts is None else tuple(counts), fit_seconds=fit_seconds)
            yield RunRecord(result, str(raw["key"]), raw.get("code_version"), raw.get("wall_seconds"),
                            raw.get("note")), where


def read_records(paths: Sequence[str | Path]) -> dict[tuple[str, str], tuple[RunRecord, str]]:
    """Records by (dataset, key), each with where it was read (``file:line``); errors name the file and line.

    A run is its dataset and key (its resolved configuration, seed included); row names belong to a table, so
    two tables' files may each hold a "SASRec" of another configuration. The same run may appear in several
    files, under any row name, only with the same metrics."""
    found: dict[tuple[str, str], tuple[RunRecord, str]] = {}
    for record, where in iter_records(paths):
        result = record.result
        ident = (result.dataset, record.key)
        if ident in found:
            earlier, earlier_where = found[ident]
            if dict(earlier.result.metrics) != dict(result.metrics):
                raise ValueError(f"{where}: {result.dataset}/{result.row}/seed {result.seed} (key {record.key}) "
                                 f"has other metrics at {earlier_where}: one run, two results")
            continue
        found[ident] = (record, where)
    return found


def match_records(runs: Sequence[PlannedRun], records: Mapping[tuple[str, str], tuple[RunRecord, str]]
                  ) -> dict[PlannedRun, RunRecord]:
    """The record of each planned run that has one: the record of its dataset and key, whatever row it was made
    for (a sweep's default point is the main table's run); one of another row is shown under the planned row's
    name with a note saying whose run it is. Where no record has the planned key but one of the planned row and
    seed has another, the runner stops, naming that record. Records of runs outside the plan are ignored."""
    by_name = {}
    for record, where in records.values():
        by_name.setdefault((record.result.dataset, record.result.row, record.result.seed), (record, where))
    matched = {}
    for run in runs:
        found = records.get((run.dataset, run.key))
        if found is not None:
            record, where = found
            if record.result.row != run.row:
                # The records file by name, not by where it was read on this machine: the note is committed.
                note = f"the run of row {record.result.row!r} ({Path(where).name}), the same configuration and seed"
                record = replace(record, result=replace(record.result, row=run.row), note=note)
            matched[run] = record
        elif (run.dataset, run.row, run.seed) in by_name:
            record, where = by_name[(run.dataset, run.row, run.seed)]
            raise ValueError(f"{where}: the record of {run.dataset}/{run.row}/seed {run.seed} was made with another "
                             f"configuration (key {record.key}; this plan's key is {run.key}): plan it with the same "
                             "configs and --train_args, or leave that file out of --records")
    return matched
