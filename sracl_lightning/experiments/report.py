"""The table of a plan's finished runs: Markdown, CSV and the run records beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sracl_lightning.atomic import atomic_write_text
from sracl_lightning.experiments.plan import (
    PlannedRun,
    state,
)
from sracl_lightning.experiments.records import RunRecord, local_record
from sracl_lightning.experiments.specs import TableSpec
from sracl_lightning.experiments.tables import (
    NotRunRow,
    summarize,
    to_csv,
    to_markdown,
)


# ------------------------------------------------------------------------------------------------- the table
def write_table(spec: TableSpec, runs: Sequence[PlannedRun], output: str | Path, command: str | None = None,
                records: Mapping[PlannedRun, RunRecord] | None = None) -> tuple[Path, Path, Path] | None:
    """Write ``<output>.md``, ``<output>.csv`` and ``<output>.runs.jsonl`` from the finished runs: those done in
    their folders here, then those in ``records`` (see :func:`match_records`); ``None`` when none has finished.
    ``command``, when given, is stated under the title (the runner passes its own command line)."""
    records = records or {}
    # The table in the spec's row order, whatever order the rows ran in (``plan``'s ``rows``).
    first_dataset = {d: i for i, d in enumerate(dict.fromkeys(r.dataset for r in runs))}
    first_seed = {s: i for i, s in enumerate(dict.fromkeys(r.seed for r in runs))}
    position = {row.name: i for i, row in enumerate(spec.rows)}
    runs = sorted(runs, key=lambda r: (first_dataset[r.dataset], first_seed[r.seed], position[r.row]))
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
    cells = summarize(results, baseline=spec.baseline, paper=paper, metrics=spec.metrics,
                      versus={row.name: row.versus for row in spec.rows if row.versus is not None})
    datasets = dict.fromkeys(run.dataset for run in finished)
    not_run = [NotRunRow(dataset, row.name, row.not_run, row.paper.get(dataset, {})) for dataset in datasets
               for row in spec.rows if row.not_run is not None and (row.only is None or dataset in row.only)]
    markdown = to_markdown(cells, results, title=spec.title, baseline=spec.baseline, metrics=spec.metrics,
                           command=command, not_run=not_run,
                           notes={row.name: row.note for row in spec.rows if row.note},
                           far_from_paper=spec.far_from_paper)
    times = [record.seconds for record in finished.values() if record.seconds is not None]
    if not times:
        wall = "no time in their records"
    else:
        timed = "runs" if len(times) == len(finished) else f"the {len(times)} runs whose records have one"
        wall = (f"total training time {sum(times) / 3600:.2f} h (sum over {timed}; a resumed run counts its earlier "
                "parts where its result records them)")
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
    atomic_write_text(md, provenance_comment(md) + markdown + "\n" + "\n".join(footer) + "\n")
    atomic_write_text(csv_path, to_csv(cells))
    atomic_write_text(jsonl, "".join(record.to_json() + "\n" for record in finished.values()))
    return md, csv_path, jsonl


def provenance_comment(md: Path) -> str:
    """The ``<!-- ... -->`` block an existing table opens with (how its runs were made, written by hand: machine,
    worktrees, pauses), kept through a rebuild; "" when there is none."""
    if not md.is_file():
        return ""
    text = md.read_text(encoding="utf-8")
    end = text.find("-->")
    return text[:end + 3] + "\n" if text.startswith("<!--") and end >= 0 else ""
