"""A finished run, loaded back: the trained model and the data it was trained on, both from one checkpoint."""

from __future__ import annotations

import importlib
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from sracl_lightning.datasets.sequences import DataFormatError
from sracl_lightning.errors import DataMismatchError
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.training.datamodule import SeqRecDataModule

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents (CPU tensors, ``weights_only``).

    Raises:
        FileNotFoundError: No such file.
        DataFormatError: The file is empty, truncated or not a checkpoint written by ``train.py``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        reason = "empty file" if path.stat().st_size == 0 else f"{type(error).__name__}: {str(error).splitlines()[0]}"
        raise DataFormatError(path, f"not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise DataFormatError(path, "not a checkpoint written by train.py (no state_dict or hyper_parameters)")
    return checkpoint


def load_trained(path: str | Path, map_location: str | torch.device = "cpu", **overrides: object) -> SRACLModule:
    """Load a checkpoint written by ``train.py`` as the :class:`SRACLModule` class it names.

    The class named in the checkpoint (``_class_path``) is imported first when it belongs to this package, old
    module paths included (``sracl_lightning.MOVED_MODULES``); a subclass of your own must be imported before calling
    this. Checkpoints without a class name load as :class:`SRACLModule`.

    Raises:
        FileNotFoundError, DataFormatError: as :func:`read_checkpoint`.
        DataFormatError: The checkpoint names a class that is not an :class:`SRACLModule`.
    """
    class_path = str(read_checkpoint(path)["hyper_parameters"].get("_class_path", ""))
    cls = SRACLModule
    if class_path.startswith("sracl_lightning."):
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, SRACLModule)):
            raise DataFormatError(Path(path), f"names model class {class_path}, which is not an SRACLModule")
    # Lightning's load_from_checkpoint builds the class it is called on, so call it on the checkpoint's class.
    return cls.load_from_checkpoint(path, map_location=map_location, **overrides)


def load_run(ckpt_path: str | Path, *, source_root: str | None = None, data_root: str | None = None,
             eval_batch_size: int | None = None, **model_overrides: object) -> tuple[SRACLModule, SeqRecDataModule]:
    """Model and DataModule from a checkpoint written by ``train.py``.

    The DataModule carries the checkpoint's data identity: preparing or setting it up refuses a source or a
    conversion that differs from the data the model was trained on (:class:`DataMismatchError`), before anything
    is converted.

    Args:
        ckpt_path: The checkpoint.
        source_root: Override the data's source root stored in the checkpoint (e.g. on another machine).
        data_root: Override where converted datasets are kept.
        eval_batch_size: Override the evaluation batch size (metrics do not depend on it).
        model_overrides: Constructor arguments of the module to override, e.g. ``mask_seen_items``.
    """
    path = Path(ckpt_path)
    data_overrides = {key: value for key, value in {"source_root": source_root, "data_root": data_root,
                                                    "eval_batch_size": eval_batch_size}.items()
                      if value is not None}
    model = load_trained(path, **model_overrides)  # reads and checks the checkpoint first
    data = SeqRecDataModule.load_from_checkpoint(path, **data_overrides)  # restores the data identity
    identity = data.expected_identity
    if identity is None:
        log.warning(f"{path} records no data identity (written before identities were recorded): the data it is "
                    "used with cannot be checked")
    elif identity.get("num_items") != model.num_items:
        raise DataMismatchError(f"{path}: the model scores {model.num_items:,} items but its data identity "
                                f"records {identity.get('num_items'):,}")
    return model, data
