"""Runs the planned runs that are not done, as ``train.py`` processes, one or several at a time: local processes, or
jobs handed to ``submitit`` (SLURM on a cluster; its local executor here and in the tests).

Wherever a run trains, it writes into its run folder and the runner records its return code and wall time in its
``run.json``, so runs made anywhere join a table the same way (also through run records, ``--records``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sracl_lightning.atomic import atomic_write_text
from sracl_lightning.experiments.plan import (
    REPO_ROOT,
    PlannedRun,
    code_version,
    metrics_file,
    resume_checkpoint,
    state,
)
from sracl_lightning.jobs import train_in_job

# --------------------------------------------------------------------------------------------------- running
log = logging.getLogger(__name__)


@dataclass
class _Active:
    """A started run: its process (or submitit job), its open log file (local processes only) and its start time."""

    process: subprocess.Popen | _SubmititJob
    log: IO[str] | None
    started: float


class _SubmititJob:
    """A submitit job behind the members of ``subprocess.Popen`` the runner uses."""

    def __init__(self, job) -> None:
        self.job = job
        self.returncode: int | None = None

    def terminate(self) -> None:
        self.job.cancel(check=False)

    def wait(self, timeout: float | None = None) -> int:
        # A cancelled job ends when its scheduler says so; the runner does not wait for it.
        self.returncode = -signal.SIGTERM if self.returncode is None else self.returncode
        return self.returncode

    def kill(self) -> None:
        self.terminate()

    def poll(self) -> int | None:
        if self.returncode is None and self.job.done():
            try:
                self.returncode = int(self.job.result())
            except Exception as error:  # the job itself failed (killed, timed out, node lost): say so, count it
                log.info(f"[runner] submitit job {self.job.job_id} failed: {str(error).splitlines()[0][:300]}")
                self.returncode = -1
        return self.returncode


class Runner:
    """Runs the planned runs that are not done, ``jobs`` at a time.

    Args:
        train_command: The command that trains (``[python, train.py]``); tests swap in a stand-in.
        jobs: Runs at the same time, each its own process (or submitit job).
        env: Extra environment variables of every run (e.g. ``OMP_NUM_THREADS``).
        rerun_changed: Move aside and rerun runs whose key changed, instead of stopping.
        root: Working directory of the runs (config paths are relative to it).
        submitit: Hand each run to ``submitit.AutoExecutor`` instead of starting a local process: its parameters,
            e.g. ``{cluster: slurm, slurm_partition: gpu, timeout_min: 240, gpus_per_node: 1, cpus_per_task: 8}``
            (``cluster: local`` runs the jobs on this machine; without ``cluster`` submitit picks SLURM where it
            finds it). Its logs and pickles go to ``submitit_folder``; each run's output still goes to its
            ``train.log``.
        submitit_folder: submitit's job folder (default ``<root>/runs/submitit``).
    """

    def __init__(self, train_command: Sequence[str] | None = None, *, jobs: int = 1,
                 env: Mapping[str, str] | None = None, rerun_changed: bool = False, root: Path = REPO_ROOT,
                 submitit: Mapping[str, object] | None = None, submitit_folder: str | Path | None = None) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.train_command = list(train_command or [sys.executable, "-m", "sracl_lightning.training.train"])
        self.jobs = jobs
        self.env = dict(env or {})
        self.rerun_changed = rerun_changed
        self.root = root
        self.executor = None if submitit is None else self._submitit_executor(
            dict(submitit), Path(submitit_folder) if submitit_folder else root / "runs" / "submitit")

    @staticmethod
    def _submitit_executor(parameters: dict[str, object], folder: Path):
        try:
            import submitit
        except ImportError:
            raise ValueError("--submitit needs the submitit package: pip install 'sracl-lightning[cluster]' "
                             "(or pip install submitit)") from None
        cluster = parameters.pop("cluster", None)
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        try:
            executor.update_parameters(**parameters)
        except (ValueError, TypeError, NameError) as error:  # submitit names the parameter it does not know
            raise ValueError(f"--submitit: {error}") from None
        return executor

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
            log.info(f"[runner] {run.directory}: configuration changed; the old run moved to {stale}")
        run.directory.mkdir(parents=True, exist_ok=True)
        command = self.command(run)
        record = {"key": run.key, "dataset": run.dataset, "row": run.row, "seed": run.seed, "args": list(run.args),
                  "command": command, "code_version": code_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(run.directory / "run.json", json.dumps(record, indent=2) + "\n")
        if self.executor is not None:
            self.executor.update_parameters(name=f"{run.dataset}-{run.directory.parent.name}-{run.seed}")
            job = self.executor.submit(train_in_job, command, str(self.root), self.env,
                                       str(run.directory / "train.log"))
            log.info(f"[runner] submitted {run.dataset} / {run.row} / seed {run.seed} as submitit job {job.job_id}")
            return _Active(_SubmititJob(job), None, time.monotonic())
        train_log = (run.directory / "train.log").open("a", encoding="utf-8")
        process = subprocess.Popen(command, cwd=self.root, stdout=train_log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.env})
        return _Active(process, train_log, time.monotonic())

    def finish(self, run: PlannedRun, active: _Active, stopped: bool = False) -> bool:
        if active.log is not None:
            active.log.close()
        process = active.process
        seconds = time.monotonic() - active.started
        record = json.loads((run.directory / "run.json").read_text(encoding="utf-8"))
        record.update(returncode=process.returncode, wall_seconds=round(seconds, 1))
        atomic_write_text(run.directory / "run.json", json.dumps(record, indent=2) + "\n")
        ok = process.returncode == 0 and metrics_file(run.directory) is not None
        verdict = ("done" if ok else "stopped with the runner (the next call resumes it from its last.ckpt)" if stopped
                   else f"FAILED (exit {process.returncode}; see {run.directory / 'train.log'})")
        log.info(f"[runner] {run.dataset} / {run.row} / seed {run.seed}: {verdict} in {seconds / 60:.1f} min")
        return ok

    def stop(self, active: Mapping[PlannedRun, _Active], grace_seconds: float = 60.0) -> None:
        """Stop the running runs with the runner (SIGTERM, then SIGKILL after ``grace_seconds``), so that none goes
        on writing into its folder unwatched, where the next call would start it again; each resumes from its
        ``last.ckpt`` then. submitit jobs are cancelled."""
        for handle in active.values():
            if handle.process.poll() is None:
                handle.process.terminate()
        for run, handle in active.items():
            try:
                handle.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                handle.process.wait()
            self.finish(run, handle, stopped=True)

    def run(self, runs: Sequence[PlannedRun], recorded: Collection[PlannedRun] = ()) -> list[PlannedRun]:
        """Run what is neither done here nor in ``recorded`` (runs with a matching record, see
        :func:`match_records`); returns the runs that failed."""
        todo = [r for r in runs if state(r) != "done" and r not in recorded]
        self.check(todo)
        log.info(f"[runner] {len(runs)} runs: {len(runs) - len(todo)} done, {len(todo)} to run, "
                 f"{self.jobs} at a time")
        failed, active = [], {}
        queue = list(todo)
        with _Interrupts() as interrupts:
            try:
                while queue or active:
                    while queue and len(active) < self.jobs:
                        run = queue.pop(0)
                        log.info(f"[runner] start {run.dataset} / {run.row} / seed {run.seed}: {run.command_line}")
                        with interrupts.held():  # a run started is a run the stop below can reach
                            active[run] = self.start(run)
                    time.sleep(0.2)
                    for run, handle in list(active.items()):
                        if handle.process.poll() is not None:
                            del active[run]
                            if not self.finish(run, handle):
                                failed.append(run)
            except KeyboardInterrupt:
                log.info(f"[runner] interrupted: stopping {len(active)} running run(s)")
                self.stop(active)
                raise
        return failed


class _Interrupts:
    """SIGTERM (``kill``, a scheduler's time limit) and SIGINT (Ctrl-C) raise KeyboardInterrupt, so that the runner
    stops its runs before it exits. Within :meth:`held` (starting a run and entering it in the table of running ones)
    the signal waits until the block ends: one landing between the two would leave that run training unwatched.
    Only in the main thread, where Python delivers signals."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.holding = False
        self.pending: int | None = None
        self.previous: dict[int, object] = {}

    def _interrupt(self, signum, frame) -> None:
        if self.holding:
            self.pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    @contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.pending is not None:
                raise KeyboardInterrupt(f"signal {self.pending}")

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._interrupt) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
