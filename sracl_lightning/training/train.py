"""Train a sequential recommender, then test the best checkpoint: ``sracl-train`` (``train.py`` in a checkout).

    sracl-train                                       # embedded synthetic default (configs/default.yaml)
    sracl-train --config configs/beauty.yaml          # a paper dataset
    sracl-train --config configs/beauty.yaml --trainer.devices 2 --trainer.strategy ddp \\
        --trainer.precision bf16-mixed
    sracl-train --config configs/beauty.yaml --ckpt_path runs/beauty/version_0/checkpoints/last.ckpt

``--help`` lists every argument; ``configs/default.yaml`` (shipped with the package) is always loaded first. A
``--config`` that is not a file names a shipped config: ``configs/sracl/beauty.yaml`` or ``sracl/beauty.yaml`` work
from any directory after an install (data paths in them stay relative to the working directory). A bad argument or
bad data is reported as one ``error: ...`` line (exit code 2 for an argument, 1 for data); ``SRACL_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import sys

from sracl_lightning.distributed import shutdown_process_group
from sracl_lightning.resources import with_packaged_configs
from sracl_lightning.training.allocator import keep_freed_memory
from sracl_lightning.training.callbacks import EpochTimer
from sracl_lightning.training.cli import SRACLCLI
from sracl_lightning.training.cli_errors import run_cli
from sracl_lightning.training.results import write_ranks, write_results
from sracl_lightning.training.trained import read_checkpoint


def main() -> None:
    """Parse ``sys.argv``, fit, test the best checkpoint and write ``test_metrics.json`` into the run folder."""
    keep_freed_memory()  # before the first tensor: a step's buffers are then reused, not faulted in again
    resolved = with_packaged_configs(sys.argv[1:])
    if resolved != sys.argv[1:]:  # in place: LightningCLI warns when given args beside a command line
        sys.argv[1:] = resolved
    cli = SRACLCLI()
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    if cli.config.ckpt_path:
        # The checkpoint's data identity first, so that other data is refused by name before Lightning restores the
        # weights (a model of another item count would fail there on the first mismatched tensor shape).
        data.load_state_dict(read_checkpoint(cli.config.ckpt_path).get(type(data).__qualname__, {}))
    trainer.fit(model, datamodule=data, ckpt_path=cli.config.ckpt_path)
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    fit = None if timer is None else timer.fit_summary()  # before testing: its epochs, resumed parts included
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # fast_dev_run and checkpointing-off runs have no best checkpoint: test the weights in memory.
    metrics = trainer.test(model, datamodule=data, ckpt_path=best or None)[0]
    # log_dir broadcasts from rank 0, so every rank asks; fast_dev_run has no loggers and no run folder.
    out_dir = trainer.log_dir or trainer.default_root_dir
    if trainer.is_global_zero:
        write_results(out_dir, "test", metrics, model.protocol(), checkpoint=best or None, dataset=data.name,
                      semantic_profile=data.semantic_profile, fit=fit)
        write_ranks(out_dir, "test", model.test_user_ranks)
    shutdown_process_group()


def cli() -> None:
    """The ``sracl-train`` console script: :func:`main` with one-line errors."""
    run_cli(main)


if __name__ == "__main__":
    cli()
