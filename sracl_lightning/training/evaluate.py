"""Evaluate a saved checkpoint on the test or validation split and write a metrics JSON plus a Markdown row:
``sracl-evaluate`` (``evaluate.py`` in a checkout).

    sracl-evaluate runs/beauty/version_0/checkpoints/last.ckpt
    sracl-evaluate CKPT --split val --mask_seen_items true --output_dir results/
    sracl-evaluate CKPT --devices 2 --strategy ddp            # same numbers as one process

The model and the data are rebuilt from the hyperparameters stored in the checkpoint; the options below
override what may differ on another machine (paths) or in another protocol (seen-item masking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
from jsonargparse import auto_cli

from sracl_lightning.distributed import shutdown_process_group
from sracl_lightning.training.cli_errors import OneLineArgumentParser, run_cli
from sracl_lightning.training.results import write_ranks, write_results
from sracl_lightning.training.trained import load_run


def evaluate(
    ckpt_path: str,
    split: Literal["test", "val"] = "test",
    output_dir: str | None = None,
    source_root: str | None = None,
    data_root: str | None = None,
    eval_batch_size: int | None = None,
    mask_seen_items: bool | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "auto",
    precision: str = "32-true",
) -> dict[str, float]:
    """Evaluate ``ckpt_path`` and write ``<split>_metrics.json`` and ``<split>_results.md``.

    Args:
        ckpt_path: A checkpoint written by ``train.py``.
        split: ``test`` (target items[-1]) or ``val`` (target items[-2]).
        output_dir: Where to write the results; default: the run folder that holds the checkpoint.
        source_root: Override the data's source root stored in the checkpoint.
        data_root: Override where converted datasets are kept.
        eval_batch_size: Override the evaluation batch size (the metrics do not depend on it).
        mask_seen_items: Override whether already-seen items are excluded from the ranking.
        accelerator: Lightning accelerator.
        devices: Number of devices (processes under DDP).
        strategy: Lightning strategy, e.g. ``ddp``.
        precision: Lightning precision; item scores are computed in fp32 whatever this is.
    """
    path = Path(ckpt_path)
    model_overrides = {} if mask_seen_items is None else {"mask_seen_items": mask_seen_items}
    model, data = load_run(path, source_root=source_root, data_root=data_root, eval_batch_size=eval_batch_size,
                           **model_overrides)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    run = trainer.test if split == "test" else trainer.validate
    metrics = run(model, datamodule=data)[0]
    if trainer.is_global_zero:
        out_dir = Path(output_dir) if output_dir else (path.parent.parent if path.parent.name == "checkpoints"
                                                       else path.parent)
        write_results(out_dir, split, metrics, model.protocol(), checkpoint=str(path), dataset=data.name,
                      semantic_profile=data.semantic_profile)
        write_ranks(out_dir, split, model.test_user_ranks if split == "test" else None)
    return metrics


def cli() -> None:
    """The ``sracl-evaluate`` console script: :func:`evaluate` from the command line, with one-line errors."""
    # A missing or unreadable checkpoint, a bad argument or data that differs from the checkpoint's: one line.
    try:
        run_cli(lambda: auto_cli(evaluate, as_positional=True, parser_class=OneLineArgumentParser))
    finally:
        shutdown_process_group()


if __name__ == "__main__":
    cli()
