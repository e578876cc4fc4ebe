"""Keeping freed memory in the process (sracl_lightning/training/allocator.py): it takes effect on glibc, and it
stays off where the user said so."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.training.allocator import SWITCH, keep_freed_memory

pytestmark = pytest.mark.unit

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocate, write and free 24 blocks of 4 MiB through malloc itself (a step's activations, in small), then print what
# the heap holds free for the next step (glibc's mallinfo2).
_FREED = """
import ctypes
from sracl_lightning.training.allocator import keep_freed_memory
print(keep_freed_memory())

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
blocks = [libc.malloc(4 << 20) for _ in range(24)]
for block in blocks:
    ctypes.memset(block, 1, 4 << 20)
for block in blocks:
    libc.free(block)
print(libc.mallinfo2().fordblks >> 20)
"""


def _freed(env: dict[str, str]) -> tuple[str, int]:
    """Whether the thresholds were set, and the MiB the heap keeps free after the blocks are freed."""
    inherited = {k: v for k, v in os.environ.items() if k != SWITCH and not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run([sys.executable, "-c", _FREED], capture_output=True, text=True, check=True,
                         env={**inherited, **env})
    applied, free_mib = out.stdout.split()
    return applied, int(free_mib)


@pytest.mark.skipif(not GLIBC or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                    reason="the thresholds are glibc's; mallinfo2 is glibc 2.33's")
def test_freed_blocks_stay_in_the_heap_for_the_next_step():
    applied, kept = _freed({})
    assert (applied, kept >= 96) == ("True", True), kept
    # glibc's own thresholds hand the 96 MiB back to the kernel (unmapped or trimmed): the next step faults them in.
    applied, handed_back = _freed({SWITCH: "system"})
    assert (applied, handed_back < 48) == ("False", True), handed_back


@pytest.mark.parametrize("env", [{SWITCH: "system"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_off_when_the_user_chose_the_allocator_settings(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert keep_freed_memory() is False


def test_a_bad_switch_names_the_variable_and_its_values(monkeypatch):
    monkeypatch.setenv(SWITCH, "jemalloc")
    with pytest.raises(InvalidArgumentError, match=r"got 'jemalloc': the environment variable SRACL_ALLOCATOR must be "
                                                   r"'tuned' \(the default\) or 'system'"):
        keep_freed_memory()
