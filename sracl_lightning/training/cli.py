"""The command line: LightningCLI with the project's links, callbacks and loggers.

* ``data.num_items`` and ``data.semantic_dim`` (the semantic profile's width E) flow into the model once the
  DataModule exists; ``data.max_len`` into ``model.max_len`` at parse time. None is ever typed twice.
* Checkpointing and early stopping are first-class argument groups (``--checkpoint.*``, ``--early_stopping.*``)
  with the paper's protocol as defaults: monitor validation MRR@10, patience 10. ``last.ckpt`` is written at the end
  of every epoch, and the RNG states go into every checkpoint, so that resuming continues the run exactly.
* Without an explicit ``--trainer.logger``, runs log to TensorBoard and CSV under
  ``<trainer.default_root_dir or runs>/<dataset>/``.
* A rich progress bar is added unless ``--trainer.enable_progress_bar false`` or another bar is configured.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn

from sracl_lightning.datasets.catalog import resolve
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.kernels import native_bf16
from sracl_lightning.resources import default_config
from sracl_lightning.training.callbacks import EpochEndCheckpoint, RandomState
from sracl_lightning.training.cli_errors import CLI_OWNERS, SRACLArgumentParser, rejected_value
from sracl_lightning.training.datamodule import SeqRecDataModule

#: The metric that selects checkpoints and stops training (docs/method.md#evaluation: the released code uses MRR@10).
MONITOR = "val/mrr@10"


class SRACLCLI(LightningCLI):
    """LightningCLI for :class:`SRACLModule` (and subclasses, via ``model.class_path``) on sequence data.

    It parses and instantiates only (``run=False``); ``train.py`` then fits and tests, and ``--ckpt_path`` resumes.
    """

    def __init__(self, **kwargs) -> None:
        kwargs["run"] = False
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", SRACLArgumentParser)  # parse errors as one line (sracl_lightning.errors)
        if "parser_kwargs" not in kwargs:  # configs/default.yaml, shipped with the package (a missing one raises)
            kwargs["parser_kwargs"] = {"default_config_files": [str(default_config())]}
        try:
            super().__init__(SRACLModule, SeqRecDataModule, **kwargs)
        except ValueError as err:  # a value a constructor rejects: raise its error, not jsonargparse's wrapper
            error = rejected_value(err, CLI_OWNERS)
            if error is err:
                raise
            raise error from (err if error.__traceback__ is None else None)  # a new UsageError, or the root cause

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_items", "model.init_args.num_items", apply_on="instantiate")
        parser.link_arguments("data.max_len", "model.init_args.max_len")
        parser.link_arguments("data.semantic_dim", "model.init_args.semantic_dim", apply_on="instantiate")
        # last.ckpt is the end of the last finished epoch (Lightning's: the last improving one).
        parser.add_lightning_class_args(EpochEndCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": MONITOR,
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "epoch{epoch:03d}-mrr10-{val/mrr@10:.4f}",
            "checkpoint.auto_insert_metric_name": False,  # metric names contain '/'
        })
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": MONITOR, "early_stopping.mode": "max",
                             "early_stopping.patience": 10})
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Resume training from this checkpoint (e.g. .../checkpoints/last.ckpt).")

    def before_instantiate_classes(self) -> None:
        trainer = self.config.trainer
        warn_if_emulated_bf16(str(trainer.precision), str(trainer.accelerator))
        if trainer.logger is None:
            trainer.logger = default_loggers(self.config)
        callbacks = trainer.callbacks or []
        # Added here, not in default.yaml, so that a --trainer.callbacks list cannot drop it: resume needs it.
        rng_state = f"{RandomState.__module__}.{RandomState.__qualname__}"
        if not any(c.class_path == rng_state for c in callbacks):
            callbacks = trainer.callbacks = [*callbacks, Namespace(class_path=rng_state)]
        if trainer.enable_progress_bar is not False and not any("ProgressBar" in c.class_path for c in callbacks):
            trainer.callbacks = [*callbacks, Namespace(class_path="lightning.pytorch.callbacks.RichProgressBar")]


def warn_if_emulated_bf16(precision: str, accelerator: str) -> None:
    """One warning when bf16 is asked for on a CPU whose bf16 matmuls are emulated (slower than fp32, not faster)."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not native_bf16("cpu"):
        capability = torch.backends.cpu.get_cpu_capability()
        rank_zero_warn(f"--trainer.precision {precision} on a CPU without native bf16 ({capability}, no AVX512-BF16 "
                       "or AMX): its bf16 matmuls are emulated and several times slower than fp32 here; "
                       "--trainer.precision 32-true is faster on this machine")


def default_loggers(config: Namespace) -> list[Namespace]:
    """TensorBoard (whose version folder also holds checkpoints and config) plus CSV, both named by dataset."""
    root = config.trainer.default_root_dir or "runs"
    name, _, _ = resolve(config.data.dataset, config.data.source_root, config.data.source_format)
    return [
        Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                  init_args=Namespace(save_dir=root, name=name, default_hp_metric=False)),
        Namespace(class_path="lightning.pytorch.loggers.CSVLogger",
                  init_args=Namespace(save_dir=str(Path(root) / name), name="csv")),
    ]
