"""The console scripts of an install (``setup.cfg``, ``[options.entry_points]``); each works from any directory.

==================  ==========================================  =====================================
script              what                                        in a checkout
==================  ==========================================  =====================================
``sracl-train``     train, then test the best checkpoint        ``python train.py``
``sracl-evaluate``  evaluate a checkpoint                       ``python evaluate.py``
``sracl-semantic``  the semantic stage (neighbour pools)        ``python data/semantic.py``
``sracl-tables``    the table runner (seeds, resume, tables)    ``python -m sracl_lightning.runner``
``sracl-recommend`` top-k recommendations from a checkpoint     ``python -m sracl_lightning.serving.recommend``
==================  ==========================================  =====================================

Each imports only what its command needs.
"""

from __future__ import annotations


def train() -> None:
    from sracl_lightning.training.train import cli

    cli()


def evaluate() -> None:
    from sracl_lightning.training.evaluate import cli

    cli()


def semantic() -> None:
    from sracl_lightning.training.semantic_cli import cli

    cli()


def tables() -> None:
    """``python -m sracl_lightning.runner``."""
    from jsonargparse import auto_cli

    from sracl_lightning.experiments.cli import main

    auto_cli(main, as_positional=True)


def recommend() -> None:
    """``python -m sracl_lightning.serving.recommend``: results on stdout, logs on stderr, one-line errors."""
    from jsonargparse import auto_cli

    from sracl_lightning.serving.recommend import logs_to_stderr, main
    from sracl_lightning.training.cli_errors import OneLineArgumentParser, run_cli

    logs_to_stderr()
    run_cli(lambda: auto_cli(main, as_positional=True, parser_class=OneLineArgumentParser))
