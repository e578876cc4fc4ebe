"""Atomic file writes: write to a temporary file beside the target, then rename it into place.

A crash or Ctrl-C mid-write leaves the previous file (or none), never a truncated one; readers never see a
half-written cache.

The temporary file is ``.<name>.<pid>.tmp`` in the target's folder. A process killed mid-write (``kill -9``, the
OOM killer, a lost node) cannot remove it, so every :func:`atomic_write` first sweeps the stale temporary files of
*its own target*: siblings named exactly ``.<name>.<digits>.tmp`` whose process is gone. A temporary file is left
alone while its pid is alive on this machine, or while any process holds the ``flock`` that :func:`atomic_write`
keeps on its temporary file during the write (which protects writers in another pid namespace, such as another
container sharing the folder). The sweep costs one listing of the target's folder per write.

:func:`exclusive_lock` serialises a longer rewrite of several files (a dataset conversion) across processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, and os.kill(pid, 0) there would terminate the process
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` tied to ``path`` (a file or folder, named by its resolved path) until the block
    ends: other processes entering the same block wait. The lock file lives in the system's temporary folder, so
    ``path``'s folder holds nothing but its own files. A no-op where ``fcntl`` does not exist."""
    if fcntl is None:
        yield
        return
    key = hashlib.sha256(str(Path(path).resolve()).encode("utf-8")).hexdigest()[:16]
    fd = os.open(Path(tempfile.gettempdir()) / f"sracl-{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def temp_path(path: Path, pid: int | None = None) -> Path:
    """The temporary file :func:`atomic_write` uses for ``path`` in process ``pid`` (default: this one)."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return True  # not a pid atomic_write writes (0 and negatives address process groups): never "dead"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to someone else
    except (OverflowError, OSError):
        return True  # not a valid pid here: not ours to judge
    return True


def _locked(path: Path) -> bool:
    """Whether some process holds a ``flock`` on ``path`` (i.e. a live writer, in any pid namespace)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return True  # vanished or unreadable: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the lock just taken
    return False


def sweep_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by dead processes; returns the removed paths.

    Only regular files named exactly ``.<path.name>.<digits>.tmp`` in ``path``'s folder are candidates; one is
    removed when its pid is not alive (``os.kill(pid, 0)`` raises ``ProcessLookupError``) and no process holds a
    ``flock`` on it. This process's own temporary file is never touched. Errors (a racing sweeper, a read-only
    folder) are ignored: the sweep is housekeeping and must never fail a write. Does nothing on Windows.
    """
    if fcntl is None:
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([0-9]+)\.tmp")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            if pid == os.getpid() or not entry.is_file(follow_symlinks=False) or pid_alive(pid):
                continue
            candidate = Path(entry.path)
            if _locked(candidate):
                continue
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path``.

    Stale temporary files of ``path`` left by killed processes are removed first (see
    :func:`sweep_stale_temp_files`). ``tmp_path`` exists (empty) when ``write`` is called and is ``flock``-ed
    for the duration, which marks it as in use; ``write`` should open it by path (``open(tmp, "wb")``,
    ``tmp.write_text``, ``savefig(tmp)``), not replace it with another file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temp_files(path)
    tmp = temp_path(path)
    lock_fd: int | None = None
    try:
        if fcntl is not None:
            lock_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o666)  # the umask applies, as for open()
            with contextlib.suppress(OSError):  # a filesystem without flock: the pid check still protects us
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write(tmp)
        os.replace(tmp, path)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_save_npy(path: Path, array) -> None:
    """``np.save`` of ``array`` to ``path``, atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, array)

    atomic_write(path, write)
