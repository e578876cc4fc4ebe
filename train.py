"""Train a sequential recommender, then test the best checkpoint (installed: ``sracl-train``).

    python train.py                                   # embedded synthetic default (configs/default.yaml)
    python train.py --config configs/beauty.yaml      # a paper dataset
    python train.py --config configs/beauty.yaml --trainer.devices 2 --trainer.strategy ddp \
        --trainer.precision bf16-mixed
    python train.py --config configs/beauty.yaml --ckpt_path runs/beauty/version_0/checkpoints/last.ckpt

``--help`` lists every argument; configs/default.yaml is always loaded first. A bad argument or bad data is
reported as one ``error: ...`` line (exit code 2 for an argument, 1 for data); ``SRACL_DEBUG=1`` shows the traceback.
The code is :mod:`sracl_lightning.training.train`; this file only runs it.
"""

from __future__ import annotations

from sracl_lightning.training.cli_errors import run_cli
from sracl_lightning.training.train import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
