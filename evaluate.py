"""Evaluate a saved checkpoint on the test or validation split and write a metrics JSON plus a Markdown row
(installed: ``sracl-evaluate``).

    python evaluate.py runs/beauty/version_0/checkpoints/last.ckpt
    python evaluate.py CKPT --split val --mask_seen_items true --output_dir results/
    python evaluate.py CKPT --devices 2 --strategy ddp            # same numbers as one process

The model and the data are rebuilt from the hyperparameters stored in the checkpoint; the options below
override what may differ on another machine (paths) or in another protocol (seen-item masking). The code is
:mod:`sracl_lightning.training.evaluate`; this file only runs it.
"""

from __future__ import annotations

from sracl_lightning.training.evaluate import cli, evaluate

__all__ = ["evaluate"]

if __name__ == "__main__":
    # run_cli(auto_cli(evaluate, ...)) with one-line errors (sracl_lightning.training.cli_errors), then the process
    # group shut down.
    cli()
