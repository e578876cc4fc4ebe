"""The table runner's command line (``python -m sracl_lightning.runner``, ``sracl-tables``)."""

from __future__ import annotations

from pathlib import Path

from sracl_lightning.experiments.execute import Runner
from sracl_lightning.experiments.plan import (
    DEFAULT_SEEDS,
    plan,
    state,
)
from sracl_lightning.experiments.records import match_records, read_records
from sracl_lightning.experiments.report import write_table
from sracl_lightning.experiments.specs import load_table_spec
from sracl_lightning.training.cli_errors import show_package_logs


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
    submitit: dict[str, str | int | float | bool] | None = None,
    submitit_folder: str | None = None,
) -> None:
    """Run every missing run of a table, then write its Markdown and CSV.

    Args:
        table: A table spec, e.g. ``configs/tables/main.yaml``.
        datasets: Datasets to run (default: the spec's).
        rows: Rows to run and tabulate (default: all), e.g. ``[w/o CL, SRA-CL]``; they run in this order, seed by
            seed (the table keeps the spec's order).
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
            a record of the same key (its own row's, or another row's of the same configuration and seed, such as a
            sweep's default point) counts as finished and is not trained.
        submitit: Hand each run to submitit instead of a local process, with these executor parameters, e.g.
            ``{cluster: slurm, slurm_partition: gpu, timeout_min: 240, gpus_per_node: 1}`` (``cluster: local``:
            this machine). ``--jobs`` is then the number of jobs in flight.
        submitit_folder: submitit's own logs and pickles (default ``runs/submitit``).
    """
    show_package_logs()
    spec = load_table_spec(table)
    runs = plan(spec, datasets=datasets, seeds=seeds, out_root=out_root, extra_args=train_args or (), rows=rows)
    recorded = match_records(runs, read_records(records or ()))
    if dry_run:
        for run in runs:
            current = state(run)
            label = "recorded" if current != "done" and run in recorded else current
            print(f"{label:8s} {run.command_line}")
        return
    try:
        failed = [] if table_only else Runner(jobs=jobs, env=env, rerun_changed=rerun_changed, submitit=submitit,
                                              submitit_folder=submitit_folder).run(runs, recorded)
    except KeyboardInterrupt:
        raise SystemExit("[runner] interrupted; the stopped runs resume from their last.ckpt when the same command "
                         "is run again") from None
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
