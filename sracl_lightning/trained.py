"""A finished run, loaded back: the trained model and the data it was trained on, both from one checkpoint."""

from __future__ import annotations

from pathlib import Path

from sracl_lightning.datamodule import SeqRecDataModule
from sracl_lightning.module import SRACLModule, load_trained


def load_run(ckpt_path: str | Path, *, source_root: str | None = None, data_root: str | None = None,
             eval_batch_size: int | None = None, **model_overrides: object) -> tuple[SRACLModule, SeqRecDataModule]:
    """Model and DataModule from a checkpoint written by ``train.py``.

    Args:
        ckpt_path: The checkpoint.
        source_root: Override the data's source root stored in the checkpoint (e.g. on another machine).
        data_root: Override where converted datasets are kept.
        eval_batch_size: Override the evaluation batch size (metrics do not depend on it).
        model_overrides: Constructor arguments of the module to override, e.g. ``mask_seen_items``.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data_overrides = {key: value for key, value in {"source_root": source_root, "data_root": data_root,
                                                    "eval_batch_size": eval_batch_size}.items()
                      if value is not None}
    return load_trained(path, **model_overrides), SeqRecDataModule.load_from_checkpoint(path, **data_overrides)
