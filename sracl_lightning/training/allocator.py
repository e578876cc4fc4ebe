"""Keep freed memory in the process: glibc's ``malloc`` set so that a training step reuses its buffers.

A training step allocates and frees the same tensors every step (activations, their gradients, the logits over all
items). glibc serves blocks above its mmap threshold (128 KiB at start, raised as such blocks are freed) with fresh
``mmap`` pages and gives freed heap memory back to the kernel once more than the trim threshold is free at its top.
Either way the next step's tensors land on pages the kernel has to fault in and zero again: SRA-CL training on
Beauty spent 10 % of its CPU seconds in the kernel.

:func:`keep_freed_memory` fixes both thresholds (mmap above 32 MiB only, glibc's upper bound for it; trim above
1 GiB), so freed blocks stay in the heap for the next step. Measured with ``bench/allocator.py`` (two 1-thread
``train.py`` runs at once, bf16, Beauty): SRA-CL's epoch 0.93x, w/o CL's 0.97x; the kernel's share of SRA-CL's CPU
seconds 5 %. Peak RSS moved by under 50 MB: the same blocks are live at the peak, they are only kept between
steps. The numbers a run computes do not change.

``train.py`` calls it first. It does nothing where it cannot apply or was not wanted: off glibc
(macOS, Windows, musl), when ``SRACL_ALLOCATOR=system`` asks for the allocator's own defaults, or when the
environment already sets glibc's malloc options (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES``), which are the user's to choose.
"""

from __future__ import annotations

import ctypes
import os
import platform

from sracl_lightning.errors import InvalidArgumentError

#: ``mallopt`` parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks above this still get their own ``mmap`` (glibc caps the threshold at 32 MiB on 64-bit systems).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the heap's top is handed back to the kernel only above this.
TRIM_THRESHOLD = 2**30
#: The environment variable that turns the tuning off (``system``) or on (``tuned``, the default).
SWITCH = "SRACL_ALLOCATOR"
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module's docstring).

    Returns:
        Whether they were set: False off glibc, with ``SRACL_ALLOCATOR=system``, or when the environment already
        sets glibc's malloc options.

    Raises:
        InvalidArgumentError: ``SRACL_ALLOCATOR`` is neither ``tuned`` nor ``system``.
    """
    choice = os.environ.get(SWITCH, "tuned")
    if choice not in ("tuned", "system"):
        raise InvalidArgumentError(f"the environment variable {SWITCH}", choice, "'tuned' (the default) or 'system'")
    if choice == "system" or any(name in os.environ for name in _USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, since setting either one stops glibc's adjustment.
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
