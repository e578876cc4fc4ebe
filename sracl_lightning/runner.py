"""``python -m sracl_lightning.runner``: the table runner, kept at the path its tables and docs cite.

The code lives in :mod:`sracl_lightning.experiments`; ``sracl-tables`` is the same command.
"""

from sracl_lightning.experiments import *  # noqa: F403
from sracl_lightning.experiments import __all__  # noqa: F401

if __name__ == "__main__":
    from jsonargparse import auto_cli

    from sracl_lightning.experiments.cli import main

    auto_cli(main, as_positional=True)
