"""Train a sequential recommender, then test the best checkpoint.

    python train.py                                   # embedded synthetic default (configs/default.yaml)
    python train.py --config configs/beauty.yaml      # a paper dataset
    python train.py --config configs/beauty.yaml --trainer.devices 2 --trainer.strategy ddp \
        --trainer.precision bf16-mixed
    python train.py --config configs/beauty.yaml --ckpt_path runs/beauty/version_0/checkpoints/last.ckpt

``--help`` lists every argument; configs/default.yaml is always loaded first. A bad argument or bad data is
reported as one ``error: ...`` line (exit code 2 for an argument, 1 for data); ``SRACL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

from sracl_lightning.cli import SRACLCLI
from sracl_lightning.cli_errors import run_cli
from sracl_lightning.distributed import shutdown_process_group
from sracl_lightning.results import write_results


def main() -> None:
    cli = SRACLCLI()
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=data, ckpt_path=cli.config.ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # fast_dev_run and checkpointing-off runs have no best checkpoint: test the weights in memory.
    metrics = trainer.test(model, datamodule=data, ckpt_path=best or None)[0]
    # log_dir broadcasts from rank 0, so every rank asks; fast_dev_run has no loggers and no run folder.
    out_dir = trainer.log_dir or trainer.default_root_dir
    if trainer.is_global_zero:
        write_results(out_dir, "test", metrics, model.protocol(), checkpoint=best or None, dataset=data.name,
                      semantic_profile=data.semantic_profile)
    shutdown_process_group()


if __name__ == "__main__":
    run_cli(main)
