"""Tests of atomic writes, above all the sweep of temporary files left by processes killed mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sracl_lightning import atomic
from sracl_lightning.atomic import atomic_write, atomic_write_text, pid_alive, sweep_stale_temp_files, temp_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sweep needs POSIX signals and flock")

STALE_BYTES = 1 << 20

# Starts an atomic write whose callback writes 1 MiB, says so, and then hangs until it is killed.
KILLED_WRITER = """
import sys, time
from pathlib import Path
from sracl_lightning.atomic import atomic_write

def write(tmp):
    with open(tmp, "wb") as f:
        f.write(b"x" * int(sys.argv[2]))
        f.flush()
        print("writing", flush=True)
        time.sleep(120)

atomic_write(Path(sys.argv[1]), write)
"""

# Holds a flock on a file, as atomic_write does on its temporary file, until it is killed.
LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.unit
def test_write_replaces_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "one")
    atomic_write(target, lambda tmp: tmp.write_bytes(b"two"))
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


@pytest.mark.unit
def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.integration
def test_sigkill_mid_write_leaves_temp_that_next_write_sweeps(tmp_path: Path) -> None:
    target = tmp_path / "embeddings.npy"
    proc = spawn(KILLED_WRITER, str(target), str(STALE_BYTES))
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        kill(proc)
    stale = temp_path(target, proc.pid)
    # What a kill -9 leaves: a full-size hidden temporary file, and no target.
    assert stale.stat().st_size == STALE_BYTES and not target.exists()
    atomic_write_text(target, "fresh")
    assert target.read_text() == "fresh"
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.npy"]


@pytest.mark.integration
def test_temp_files_of_live_processes_are_left_alone(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    target = tmp_path / "out.json"
    live = temp_path(target, sleeper.pid)
    live.write_bytes(b"in progress")
    init = temp_path(target, 1)  # pid 1 always exists; another user's process counts as alive
    init.write_bytes(b"in progress")
    atomic_write_text(target, "x")
    assert live.read_bytes() == b"in progress" and init.read_bytes() == b"in progress"
    assert target.read_text() == "x"


@pytest.mark.integration
def test_locked_temp_file_is_left_alone_even_if_its_pid_looks_dead(tmp_path: Path) -> None:
    # A writer in another pid namespace (another container on a shared folder): its pid means nothing here,
    # but its flock does.
    target = tmp_path / "out.json"
    foreign = temp_path(target, dead_pid())
    foreign.write_bytes(b"written elsewhere")
    holder = spawn(LOCK_HOLDER, str(foreign))
    try:
        assert holder.stdout.readline().strip() == "locked"
        atomic_write_text(target, "x")
        assert foreign.exists()
    finally:
        kill(holder)
    atomic_write_text(target, "y")
    assert not foreign.exists()


@pytest.mark.unit
def test_running_write_holds_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    seen: list[bool] = []
    atomic_write(target, lambda tmp: (tmp.write_text("x"), seen.append(atomic._locked(tmp))))
    assert seen == [True]


@pytest.mark.integration
def test_sweep_touches_only_the_targets_exact_pattern(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    pid = dead_pid()
    stale = temp_path(target, pid)
    keep = [
        tmp_path / f".t.json.{pid}.tmp.bak",  # other suffix
        tmp_path / f".other.json.{pid}.tmp",  # another target's
        tmp_path / f".t.json.5.{pid}.tmp",  # the temporary file of target "t.json.5"
        tmp_path / f".t.json.x{pid}.tmp",  # not a pid
        tmp_path / ".t.json..tmp",  # no pid
        tmp_path / f"t.json.{pid}.tmp",  # no leading dot
        tmp_path / f".T.json.{pid}.tmp",  # another name on a case-sensitive filesystem
    ]
    for path in [stale, *keep]:
        path.write_bytes(b"x")
    folder = temp_path(tmp_path / "d", pid)
    folder.mkdir()  # a folder with the right name is not a temporary file
    (tmp_path / f".d.{pid + 1}.tmp").symlink_to(tmp_path / "t.json")  # nor is a symlink
    assert sweep_stale_temp_files(target) == [stale]
    assert sweep_stale_temp_files(tmp_path / "d") == []
    assert all(path.exists() for path in keep) and folder.is_dir()
    assert not stale.exists()


@pytest.mark.integration
def test_pid_alive(sleeper: subprocess.Popen, monkeypatch) -> None:
    assert pid_alive(os.getpid()) and pid_alive(sleeper.pid)
    assert not pid_alive(dead_pid())
    assert pid_alive(0) and pid_alive(2**80)  # not pids atomic_write writes: never judged dead

    def no_permission(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", no_permission)
    assert pid_alive(12345)


@pytest.mark.integration
def test_sweep_never_fails_the_write(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.json"
    stale = temp_path(target, dead_pid())
    stale.write_bytes(b"x")

    original = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self == stale:
            raise PermissionError(13, "Permission denied")
        original(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    atomic_write_text(target, "x")
    assert target.read_text() == "x" and stale.exists()
