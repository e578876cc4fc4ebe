"""The table runner: planning, resume and skip, refusing changed configurations, parallel jobs, the table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sracl_lightning.experiments import (
    Runner,
    load_table_spec,
    match_records,
    plan,
    read_records,
    slug,
    state,
    write_table,
)
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

# A stand-in for train.py: writes test_metrics.json where train.py would, from the seed and the row's configs (real
# train.py configs: the weight of their model.init_args.base_objective is a bonus on every metric), appends its
# arguments to calls.jsonl, and fails when a config sets trainer.max_steps to 3. It also writes the (user, rank) pairs
# of 200 users, as train.py does.
FAKE_TRAIN = """\
import json, sys, time
from pathlib import Path
import numpy as np
import yaml
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1] if flag in args else None
configs = [yaml.safe_load(Path(args[i + 1]).read_text()) or {} for i, a in enumerate(args) if a == "--config"]
with open(Path(__file__).with_name("calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
time.sleep(0.3)
if any(c.get("trainer", {}).get("max_steps") == 3 for c in configs):
    sys.exit(3)
seed = int(value("--seed_everything"))
bonus = sum(((c.get("model", {}).get("init_args", {}).get("base_objective") or {}).get("init_args") or {})
            .get("weight", 0.0) for c in configs)
out = Path(value("--trainer.default_root_dir")) / "fake" / "version_0"
out.mkdir(parents=True, exist_ok=True)
(out / "checkpoints").mkdir(exist_ok=True)
(out / "checkpoints" / "last.ckpt").write_text("x")
metrics = {m: 0.1 + bonus + 0.001 * (seed % 7) for m in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")}
(out / "test_metrics.json").write_text(json.dumps({"metrics": metrics, "protocol": {"max_len": 20},
                                                  "fit": {"seconds": 1800.0, "epochs": 3}}))
np.save(out / "test_ranks.npy", np.array([[user, 1 + user * (seed + 3) % 40] for user in range(200)]))
"""


def _weight(value: float, comment: str = "") -> str:
    """A train.py config setting a base objective's weight (the fake trainer's bonus)."""
    return (f"{comment}model:\n  init_args:\n    base_objective:\n      class_path: sracl_lightning.DuoRecContrast\n"
            f"      init_args:\n        weight: {value}\n")


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "train_fake.py").write_text(FAKE_TRAIN)
    (tmp_path / "base_{}.yaml".format("toy")).write_text(_weight(0.0))
    (tmp_path / "cl.yaml").write_text(_weight(0.01))
    (tmp_path / "table.yaml").write_text(
        "title: Toy table\ndatasets: [toy]\nbaseline: w/o CL\nrows:\n"
        "  - name: w/o CL\n    configs: ['base_{dataset}.yaml']\n"
        "  - name: SRA-CL\n    configs: ['base_{dataset}.yaml', cl.yaml]\n"
        "    paper: {toy: {hr@20: 0.1}}\n")
    return tmp_path


def calls(project: Path) -> list[list[str]]:
    path = project / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runner(project: Path, **kwargs) -> Runner:
    return Runner([sys.executable, str(project / "train_fake.py")], root=project, **kwargs)


def test_runs_every_seed_once_then_skips_finished_runs(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1, 2, 3], out_root=project / "out", root=project)
    # Seed-major: a table stopped part-way holds complete seeds.
    assert [(r.row, r.seed) for r in runs] == [("w/o CL", 1), ("SRA-CL", 1), ("w/o CL", 2),
                                              ("SRA-CL", 2), ("w/o CL", 3), ("SRA-CL", 3)]
    assert runs[1].directory == project / "out" / "table" / "toy" / "sra_cl" / "seed1"
    assert runner(project).run(runs) == []
    assert len(calls(project)) == 6 and all(state(r) == "done" for r in runs)
    assert runner(project).run(runs) == []
    assert len(calls(project)) == 6, "finished runs were trained again"
    record = json.loads((runs[0].directory / "run.json").read_text())
    assert record["returncode"] == 0 and record["wall_seconds"] > 0 and record["key"] == runs[0].key

    md, csv_path, _ = write_table(spec, runs, project / "tables" / "toy",
                                 command="python -m sracl_lightning.runner x")
    text = md.read_text()
    assert text.startswith("# Toy table\n\nCommand: `python -m sracl_lightning.runner x`\n")
    assert "| SRA-CL | 3 | " in text and "0.1120 ± 0.0010 (paper 0.1000, +12.0%)" in text and "p=" in text
    assert "6 of 6 planned runs finished" in text
    assert csv_path.read_text().count("\n") == 1 + 2 * 4


def test_an_unfinished_run_resumes_from_its_last_checkpoint(project):
    spec = load_table_spec(project / "table.yaml")
    run = plan(spec, seeds=[1], out_root=project / "out", root=project)[0]
    runner(project).run([run])
    next(run.directory.rglob("test_metrics.json")).unlink()  # as if killed after a checkpoint
    assert state(run) == "partial"
    runner(project).run([run])
    resumed = calls(project)[-1]
    assert resumed[resumed.index("--ckpt_path") + 1].endswith("last.ckpt")
    assert state(run) == "done"


def test_a_changed_configuration_is_never_reused_silently(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    runner(project).run(runs)
    (project / "cl.yaml").write_text(_weight(0.02))  # the SRA-CL row's config changes
    changed = plan(spec, seeds=[1], out_root=project / "out", root=project)
    assert [state(r) for r in changed] == ["done", "changed"]
    with pytest.raises(RuntimeError, match=r"(?s)another configuration.*sra_cl/seed1"):
        runner(project).run(changed)
    assert len(calls(project)) == 2

    runner(project, rerun_changed=True).run(changed)
    assert len(calls(project)) == 3 and state(changed[1]) == "done"
    stale = list(changed[1].directory.parent.glob("seed1.stale-*"))
    assert len(stale) == 1 and next(stale[0].rglob("test_metrics.json")).is_file(), "old results were lost"
    md, *_ = write_table(spec, changed, project / "t")
    text = md.read_text()
    assert "0.1110" not in text and "0.1210" in text, "the table must use the rerun, not the stale run"


def test_run_records_bring_runs_made_elsewhere_into_the_table(project):
    spec = load_table_spec(project / "table.yaml")
    # "Another machine": seed 1 runs there and its table's run records are all that comes back.
    elsewhere = plan(spec, seeds=[1], out_root=project / "elsewhere", root=project)
    runner(project).run(elsewhere)
    *_, jsonl = write_table(spec, elsewhere, project / "shipped")
    assert jsonl.name == "shipped.runs.jsonl" and len(jsonl.read_text().splitlines()) == 2
    here = plan(spec, seeds=[1, 2], out_root=project / "here", root=project)
    recorded = match_records(here, read_records([jsonl]))
    assert sorted((r.row, r.seed) for r in recorded) == [("SRA-CL", 1), ("w/o CL", 1)]
    runner(project).run(here, recorded)
    assert [c[c.index("--seed_everything") + 1] for c in calls(project)[2:]] == ["2", "2"], \
        "only the seed without records may be trained"

    md, csv_path, merged = write_table(spec, here, project / "table", records=recorded)
    text = md.read_text()
    assert "| SRA-CL | 2 | 0.1115 ± 0.0007 p=0 |" in text and "0.1115 ± 0.0007 (paper 0.1000, +11.5%) p=0" in text
    assert "4 of 4 planned runs finished" in text
    assert "2 of them from run records" in text and "toy/w/o CL/seed 1" in text
    lines = [json.loads(line) for line in merged.read_text().splitlines()]
    assert sorted((r["row"], r["seed"]) for r in lines) == [("SRA-CL", 1), ("SRA-CL", 2), ("w/o CL", 1),
                                                            ("w/o CL", 2)]
    assert all(r["key"] == next(p.key for p in here if (p.row, p.seed) == (r["row"], r["seed"])) for r in lines)
    # The merged file may be read together with the one it came from: the same runs, the same records.
    assert len(read_records([jsonl, merged])) == 4


def test_run_records_keep_the_bootstrap_intervals_of_single_seed_cells(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    runner(project).run(runs)
    here, _, jsonl = write_table(spec, runs, project / "here")
    shipped = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [sum(r["test_rank_counts"]) for r in shipped] == [200, 200]
    assert [r["fit_seconds"] for r in shipped] == [1800.0, 1800.0] and "total training time 1.00 h" in here.read_text()
    # Elsewhere, with the records only (no run folders, no ranks files): the same cells and intervals.
    elsewhere = plan(spec, seeds=[1], out_root=project / "empty", root=project)
    there, *_ = write_table(spec, elsewhere, project / "there",
                            records=match_records(elsewhere, read_records([jsonl])))
    cells = [line for line in here.read_text().splitlines() if line.startswith("| SRA-CL") or "w/o CL | 1" in line]
    assert len(cells) == 2 and all("[" in line for line in cells), "single-seed cells show their interval"
    assert cells == [line for line in there.read_text().splitlines() if line in cells]


def test_a_row_of_the_same_configuration_as_a_recorded_run_reuses_it(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    runner(project).run(runs)
    *_, jsonl = write_table(spec, runs, project / "shipped")
    # A sweep whose default point is the main table's SRA-CL run (the same configs and seed, another row name).
    (project / "sweep.yaml").write_text(
        "title: Sweep\ndatasets: [toy]\nrows:\n"
        "  - name: weight 0.01\n    configs: ['base_{dataset}.yaml', cl.yaml]\n"
        "  - name: weight 0.02\n    configs: ['base_{dataset}.yaml', w2.yaml]\n")
    (project / "w2.yaml").write_text(_weight(0.02))
    sweep = load_table_spec(project / "sweep.yaml")
    planned = plan(sweep, seeds=[1], out_root=project / "sweep", root=project)
    recorded = match_records(planned, read_records([jsonl]))
    assert [(r.row, recorded[r].result.row) for r in recorded] == [("weight 0.01", "weight 0.01")]
    assert recorded[planned[0]].note == ("the run of row 'SRA-CL' (shipped.runs.jsonl:2), the same configuration "
                                         "and seed"), "the note names the records file, not this machine's path"
    runner(project).run(planned, recorded)
    assert len(calls(project)) == 3 and "w2.yaml" in " ".join(calls(project)[2]), "only the new point is trained"
    md, *_ = write_table(sweep, planned, project / "sweep_table", records=recorded)
    assert "| weight 0.01 | 1 | 0.1110 [" in md.read_text()
    # A row named like a recorded run of another configuration takes the run of its own configuration.
    (project / "renamed.yaml").write_text("title: R\ndatasets: [toy]\nrows:\n"
                                          "  - name: w/o CL\n    configs: ['base_{dataset}.yaml', cl.yaml]\n")
    renamed = plan(load_table_spec(project / "renamed.yaml"), seeds=[1], out_root=project / "r", root=project)
    (record,) = match_records(renamed, read_records([jsonl])).values()
    assert record.result.metrics["hr@20"] == pytest.approx(0.111) and "the run of row 'SRA-CL'" in record.note


def test_a_record_made_with_another_configuration_is_refused(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    runner(project).run(runs)
    *_, jsonl = write_table(spec, runs, project / "shipped")
    (project / "cl.yaml").write_text(_weight(0.02))
    changed = plan(spec, seeds=[1], out_root=project / "fresh", root=project)
    with pytest.raises(ValueError, match=r"shipped\.runs\.jsonl:2: the record of toy/SRA-CL/seed 1 was made with "
                                         r"another configuration"):
        match_records(changed, read_records([jsonl]))


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ('{"dataset": "toy", "row": "w/o CL", "seed": 1}', r"bad\.jsonl:2: a run record needs \['key', 'metrics'\]"),
    ('{"dataset": "toy", "row": "w/o CL", "seed": 1, "key": "k", "metrics": {"hr@10": "high"}}',
     r"bad\.jsonl:2: 'metrics' must map metric names to numbers"),
    ('{"dataset": "toy", "row": "w/o CL", "seed": 1, "key": "k", "metrics": {}, "test_rank_counts": [3, -1]}',
     r"bad\.jsonl:2: 'test_rank_counts' must list how many users ranked their target 1st"),
])
def test_bad_run_records_name_the_file_and_line(tmp_path, line, message):
    good = '{"dataset": "toy", "row": "w/o CL", "seed": 2, "key": "k", "metrics": {"hr@10": 0.1}}'
    (tmp_path / "bad.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_records([tmp_path / "bad.jsonl"])
    with pytest.raises(FileNotFoundError, match="records file not found"):
        read_records([tmp_path / "missing.jsonl"])


def test_two_different_records_of_one_run_are_refused(tmp_path):
    first = '{"dataset": "toy", "row": "w/o CL", "seed": 1, "key": "k", "metrics": {"hr@10": 0.1}}\n'
    (tmp_path / "a.jsonl").write_text(first)
    (tmp_path / "b.jsonl").write_text(first.replace("0.1", "0.2").replace("w/o CL", "SASRec"))
    assert len(read_records([tmp_path / "a.jsonl", tmp_path / "a.jsonl"])) == 1
    with pytest.raises(ValueError, match=r"b\.jsonl:1: toy/SASRec/seed 1 \(key k\) has other metrics at "
                                         r".*a\.jsonl:1: one run, two results"):
        read_records([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])


def test_tables_may_each_have_a_row_of_one_name_and_another_configuration(project):
    """Row names belong to a table: Table 1's "SASRec" (BCE) and Fig. 3's "SASRec" (the main table's backbone run)
    are two runs, and a plan reading both tables' records takes the one of its own configuration."""
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    runner(project).run(runs)
    *_, jsonl = write_table(spec, runs, project / "main")
    other = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record in other:  # another table's rows of the same names, made with other configurations
        record["key"], record["metrics"] = record["key"] + "x", {"hr@20": 0.5}
    (project / "other.runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in other))
    records = read_records([jsonl, project / "other.runs.jsonl"])
    assert len(records) == 4
    recorded = match_records(runs, records)
    assert sorted(r.result.metrics["hr@20"] for r in recorded.values()) == pytest.approx([0.101, 0.111])
    assert all(r.note is None for r in recorded.values())


def test_a_rebuilt_table_keeps_its_provenance_comment(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    assert runner(project).run(runs) == []
    md, *_ = write_table(spec, runs, project / "toy")
    table = md.read_text()
    assert not table.startswith("<!--")
    comment = "<!-- Made on a 2-core CPU,\ntwo 1-thread jobs. -->\n"
    md.write_text(comment + table)
    write_table(spec, runs, project / "toy")
    assert md.read_text() == comment + table, "the rebuild dropped or doubled the comment, or changed the table"


def test_rows_can_be_selected(project):
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1, 2], out_root=project / "out", root=project, rows=["SRA-CL"])
    assert [(r.row, r.seed) for r in runs] == [("SRA-CL", 1), ("SRA-CL", 2)]
    with pytest.raises(ValueError, match=r"unknown rows \['nope'\]"):
        plan(spec, seeds=[1], out_root=project / "out", root=project, rows=["nope"])
    # Selected rows run in the order given, seed by seed; the table keeps the spec's order.
    runs = plan(spec, seeds=[1, 2], out_root=project / "out", root=project, rows=["SRA-CL", "w/o CL"])
    assert [(r.row, r.seed) for r in runs] == [("SRA-CL", 1), ("w/o CL", 1), ("SRA-CL", 2), ("w/o CL", 2)]
    assert runner(project).run(runs) == [] and [call[-3] for call in calls(project)] == ["1", "1", "2", "2"]
    assert calls(project)[0].count("--config") == 2, "SRA-CL (two configs) ran first"
    md, csv_path, jsonl = write_table(spec, runs, project / "t")
    assert [line.split(" | ")[0] for line in md.read_text().splitlines() if line.startswith("| ")][1:] == [
        "| w/o CL", "| SRA-CL"]
    assert [json.loads(line)["row"] for line in jsonl.read_text().splitlines()] == ["w/o CL", "SRA-CL"] * 2


def test_extra_arguments_are_part_of_the_key(project):
    spec = load_table_spec(project / "table.yaml")
    plain = plan(spec, seeds=[1], out_root=project / "out", root=project)
    bf16 = plan(spec, seeds=[1], out_root=project / "out", root=project,
                extra_args=["--trainer.precision", "bf16-mixed"])
    assert plain[0].key != bf16[0].key and "--trainer.precision" in bf16[0].args


# A train.py that only says it started and waits, and a driver running the runner over two of it (for signals).
SLOW_TRAIN = """\
import os, sys, time
from pathlib import Path
args = sys.argv[1:]
Path(args[args.index("--trainer.default_root_dir") + 1], "pid").write_text(str(os.getpid()))
time.sleep(300)
"""
DRIVER = """\
import sys
from pathlib import Path
from sracl_lightning.experiments import Runner, load_table_spec, plan
project = Path(sys.argv[1])
runs = plan(load_table_spec(project / "table.yaml"), seeds=[1], out_root=project / "out", root=project)
Runner([sys.executable, str(project / "train_slow.py")], root=project, jobs=2).run(runs)
"""


def test_a_terminated_runner_stops_its_runs_and_records_them(project):
    (project / "train_slow.py").write_text(SLOW_TRAIN)
    (project / "driver.py").write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(project / "driver.py"), str(project)], cwd=REPO_ROOT,
                              stderr=subprocess.PIPE, text=True)
    folders = [project / "out" / "table" / "toy" / row / "seed1" for row in ("wo_cl", "sra_cl")]
    deadline = time.monotonic() + 120
    while not all((f / "pid").exists() for f in folders):
        assert driver.poll() is None and time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.2)
    pids = [int((f / "pid").read_text()) for f in folders]
    driver.send_signal(signal.SIGTERM)  # as `kill` or a scheduler's time limit
    _, stderr = driver.communicate(timeout=90)
    assert driver.returncode != 0 and "KeyboardInterrupt" in stderr
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # the runs ended with the runner, none left training unwatched
            os.kill(pid, 0)
    for folder in folders:
        record = json.loads((folder / "run.json").read_text())
        assert record["returncode"] == -signal.SIGTERM and record["wall_seconds"] >= 0  # may round to 0.0


class _SignalledWhileStarting(Runner):
    """A runner that receives SIGTERM after a run's process started and before the run joins the running ones."""

    def start(self, run):
        handle = super().start(run)
        self.started_pid = handle.process.pid
        os.kill(os.getpid(), signal.SIGTERM)
        return handle


def test_a_signal_while_a_run_starts_still_stops_that_run(project):
    (project / "train_slow.py").write_text(SLOW_TRAIN)
    runs = plan(load_table_spec(project / "table.yaml"), seeds=[1], out_root=project / "out", root=project)
    runner = _SignalledWhileStarting([sys.executable, str(project / "train_slow.py")], root=project, jobs=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(runs[:1])
        with pytest.raises(ProcessLookupError):  # the run started in the signal's way was stopped with the runner
            os.kill(runner.started_pid, 0)
        assert json.loads((runs[0].directory / "run.json").read_text())["returncode"] == -signal.SIGTERM
    finally:
        try:
            os.kill(runner.started_pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError):
            pass


def test_parallel_jobs_and_failures_are_reported(project):
    (project / "broken.yaml").write_text("trainer:\n  max_steps: 3\n")
    (project / "table.yaml").write_text((project / "table.yaml").read_text()
                                        + "  - name: Broken\n    configs: [broken.yaml]\n")
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1, 2], out_root=project / "out", root=project)
    failed = runner(project, jobs=3).run(runs)
    assert [(r.row, r.seed) for r in failed] == [("Broken", 1), ("Broken", 2)]
    assert all(state(r) == "done" for r in runs if r.row != "Broken")
    assert json.loads((failed[0].directory / "run.json").read_text())["returncode"] == 3
    md, *_ = write_table(spec, runs, project / "t")
    assert "Not finished: toy/Broken/seed 1, toy/Broken/seed 2." in md.read_text()


@pytest.mark.parametrize(("spec", "message"), [
    ("rows:\n  - name: a\n", r"bad.yaml: rows\[0\] has no 'configs'"),
    ("baseline: nope\nrows:\n  - {name: a, configs: []}\n", "baseline 'nope' is not one of the rows"),
    ("rows:\n  - {name: a, configs: [], colour: red}\n", r"rows\[0\] has unknown fields \['colour'\]"),
    ("rows:\n  - {name: a, configs: [], note: 3}\n", r"rows\[0\].note must be text"),
    ("rows:\n  - {name: a, configs: [], note: {office: 3}}\n", r"rows\[0\].note must be text"),
    ("far_from_paper: 3\nrows:\n  - {name: a, configs: []}\n", "far_from_paper must be a fraction between 0 and 1"),
    ("far_from_papr: 0.03\nrows:\n  - {name: a, configs: []}\n", r"unknown fields \['far_from_papr'\]"),
    ("rows:\n  - {name: a, configs: [], versus: b}\n", r"rows\[0\].versus 'b' must name another row, one of \['a'\]"),
], ids=["no-configs", "baseline", "row-field", "note", "note-per-dataset", "far-from-paper", "table-field", "versus"])
def test_a_bad_table_spec_is_refused_naming_the_file_and_field(tmp_path, spec, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\ndatasets: [toy]\n" + spec)
    with pytest.raises(ValueError, match=message):
        load_table_spec(bad)


def test_table_specs_are_checked_and_every_shipped_one_plans(project):
    bad = project / "bad.yaml"
    bad.write_text("title: x\ndatasets: [toy]\nrows:\n  - {name: a, configs: [], note: 'Masked  ranking.'}\n")
    assert load_table_spec(bad).rows[0].note == "Masked ranking."
    assert slug("w/o L_CS") == "wo_l_cs" and slug("DuoRec + SRA-CL") == "duorec_sra_cl"
    for path in sorted((REPO_ROOT / "configs" / "tables").glob("*.yaml")):
        spec = load_table_spec(path)
        # Every config file a row names exists for every dataset of the spec ...
        missing = [(row.name, dataset, config) for row in spec.rows for dataset in row.only or spec.datasets
                   for config in row.configs if not (REPO_ROOT / config.format(dataset=dataset)).is_file()]
        assert not missing, (path.name, missing)
        # ... and every row resolves to a configuration train.py accepts (a key), one run folder per run. Planning
        # parses each configuration (about 0.3 s), so one dataset per spec is planned.
        runs = plan(spec, datasets=spec.datasets[:1], seeds=[2024], out_root=project / "plans")
        assert runs and len({r.directory for r in runs}) == len(runs), path.name


def test_the_tables_share_the_main_tables_runs_they_say_they_share(project):
    """Run keys, not row names, let a table reuse the main table's runs: Table 2's and the gap study's w/o CL and
    SRA-CL, Fig. 3's SASRec rows and each Fig. 4 sweep's default point must be the main table's configurations."""
    def keys(table: str, dataset: str) -> dict[str, str]:
        spec = load_table_spec(REPO_ROOT / "configs" / "tables" / table)
        return {r.row: r.key for r in plan(spec, datasets=[dataset], seeds=[2024], out_root=project / "plans")}

    main = keys("main.yaml", "beauty")
    shared = {"ablations.yaml": {"w/o CL": "w/o CL", "SRA-CL": "SRA-CL"},
              "gap_beauty.yaml": {"w/o CL": "w/o CL", "SRA-CL": "SRA-CL"},
              "plug_and_play.yaml": {"SASRec": "w/o CL", "SASRec + SRA-CL": "SRA-CL"},
              "sensitivity_alpha.yaml": {"α = 0.1": "SRA-CL"}, "sensitivity_beta.yaml": {"β = 0.1": "SRA-CL"},
              "sensitivity_k.yaml": {"k = 10": "SRA-CL"}}
    for table, rows in shared.items():
        planned = keys(table, "beauty")
        assert {row: planned[row] for row in rows} == {row: main[name] for row, name in rows.items()}, table


def test_real_train_py_runs_and_tabulates(tmp_path, synthetic_reviews):
    (tmp_path / "table.yaml").write_text(
        "title: Debug\ndatasets: [synthetic]\nrows:\n"
        f"  - name: w/o CL\n    configs: ['{REPO_ROOT}/configs/debug.yaml']\n")
    spec = load_table_spec(tmp_path / "table.yaml")
    extra = ["--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
             "--data.data_root", str(tmp_path / "processed"), "--trainer.accelerator", "cpu",
             "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]
    runs = plan(spec, seeds=[0, 1], out_root=tmp_path / "out", extra_args=extra)
    # Two seeds at once, one thread each, as long runs are made (--jobs 2).
    assert Runner(jobs=2, env={"OMP_NUM_THREADS": "1"}).run(runs) == []
    md, *_ = write_table(spec, runs, tmp_path / "debug")
    row = next(line for line in md.read_text().splitlines() if line.startswith("| w/o CL"))
    assert "| 2 |" in row and "mask_seen_items=False" in md.read_text()
    first, second = (json.loads(next(r.directory.rglob("test_metrics.json")).read_text()) for r in runs)
    assert first["metrics"] != second["metrics"], "the two seeds trained the same model"


def test_run_key_is_the_resolved_configuration_not_the_file_bytes(project) -> None:
    """A comment, a reformatting or a move of a value into another file keeps the key; a changed value does not."""
    spec = load_table_spec(project / "table.yaml")
    key = plan(spec, seeds=[1], root=project)[1].key
    (project / "cl.yaml").write_text(_weight(0.01, comment="# Table 2, SRA-CL row; a comment fix\n"))
    assert plan(spec, seeds=[1], root=project)[1].key == key
    (project / "cl.yaml").write_text(_weight(0.01))
    assert plan(spec, seeds=[1], root=project)[1].key == key
    # The same value now comes from base_toy.yaml; cl.yaml restates a value default.yaml already sets.
    (project / "cl.yaml").write_text("trainer:\n  max_epochs: 100\n")
    (project / "base_toy.yaml").write_text(_weight(0.01))
    assert plan(spec, seeds=[1], root=project)[1].key == key
    (project / "cl.yaml").write_text(_weight(0.02))
    assert plan(spec, seeds=[1], root=project)[1].key != key


def test_a_row_that_cannot_run_here_is_shown_as_not_run_with_its_reason(project) -> None:
    """A ``not_run`` row is never planned, and the table shows the paper's numbers and the reason, not another
    row's numbers."""
    (project / "table.yaml").write_text((project / "table.yaml").read_text() + (
        "  - name: w/o LLM\n    not_run: needs an LLM\n      profile\n    paper: {toy: {hr@20: 0.09}}\n"))
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], root=project, out_root=project / "out")
    assert [r.row for r in runs] == ["w/o CL", "SRA-CL"]
    runner(project).run(runs)
    text = write_table(spec, runs, project / "t")[0].read_text()
    assert "| w/o LLM | 0 | not run | not run | not run (paper 0.0900) | not run |" in text
    assert "w/o LLM: not run: needs an LLM profile." in text
    (project / "bad.yaml").write_text("title: x\ndatasets: [toy]\nrows:\n"
                                      "  - {name: a, configs: [cl.yaml], not_run: because}\n")
    with pytest.raises(ValueError, match="both configs and not_run"):
        load_table_spec(project / "bad.yaml")


def test_runs_handed_to_submitit_finish_and_tabulate_like_local_ones(project):
    pytest.importorskip("submitit")  # in the dev extra; the cluster extra for users
    spec = load_table_spec(project / "table.yaml")
    runs = plan(spec, seeds=[1], out_root=project / "out", root=project)
    sub = runner(project, jobs=2, submitit={"cluster": "local", "timeout_min": 5},
                 submitit_folder=project / "submitit")
    assert sub.run(runs) == []
    assert all(state(r) == "done" for r in runs) and len(calls(project)) == 2
    record = json.loads((runs[0].directory / "run.json").read_text())
    assert record["returncode"] == 0 and record["wall_seconds"] > 0
    assert any((project / "submitit").iterdir())  # submitit's own job files
    md, *_ = write_table(spec, runs, project / "tables" / "toy")
    assert "| SRA-CL | 1 | " in md.read_text()
    # A failing run is reported as failed, as with local processes.
    (project / "cl.yaml").write_text("trainer:\n  max_steps: 3\n" + _weight(0.01))
    failing = plan(spec, seeds=[2], out_root=project / "out", root=project)
    assert [r.row for r in sub.run(failing)] == ["SRA-CL"]
    assert json.loads((failing[1].directory / "run.json").read_text())["returncode"] == 3
    with pytest.raises(ValueError, match="--submitit"):
        runner(project, submitit={"cluster": "local", "colour": "red"})
