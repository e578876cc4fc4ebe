"""The body of a table run handed to submitit (:class:`sracl_lightning.experiments.execute.Runner`).

A module of its own, importing nothing of the package: a submitit job unpickles :func:`train_in_job` by importing
this module, and should not pay for importing Lightning before ``train.py`` does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence


def train_in_job(command: Sequence[str], cwd: str, env: Mapping[str, str], log_path: str) -> int:
    """The body of a submitit job: run ``command`` in ``cwd`` with ``env`` added, appending its output to
    ``log_path``; returns its exit status. Module-level, so that submitit can pickle it."""
    with open(log_path, "a", encoding="utf-8") as out:
        return subprocess.run(list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **env}).returncode
