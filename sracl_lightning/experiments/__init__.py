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

Modules: :mod:`.specs` (table specs), :mod:`.keys` (run keys), :mod:`.plan` (the runs and their state),
:mod:`.execute` (:class:`Runner`), :mod:`.records` (run records), :mod:`.report` (the table), :mod:`.tables`
(mean ± std, paper numbers, paired tests; Markdown and CSV), :mod:`.cli` (the command line).
"""

from sracl_lightning.experiments.cli import main
from sracl_lightning.experiments.execute import Runner
from sracl_lightning.experiments.keys import resolved_config, run_key
from sracl_lightning.experiments.plan import DEFAULT_SEEDS, REPO_ROOT, PlannedRun, plan, state
from sracl_lightning.experiments.records import RunRecord, match_records, read_records
from sracl_lightning.experiments.report import write_table
from sracl_lightning.experiments.specs import RowSpec, TableSpec, load_table_spec, slug

__all__ = ["DEFAULT_SEEDS", "REPO_ROOT", "PlannedRun", "RowSpec", "RunRecord", "Runner", "TableSpec",
           "load_table_spec", "main", "match_records", "plan", "read_records", "resolved_config", "run_key", "slug",
           "state", "write_table"]
