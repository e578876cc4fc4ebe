"""The files that ship with the package: ``configs/`` (``default.yaml``, the dataset, method, ablation, semantic and
table configs, and the prompt templates ``prompts/*.yaml``).

There is one copy, the repository's top-level ``configs/`` folder. ``setup.cfg`` maps it onto the subpackage
``sracl_lightning.configs`` (``package_dir``; ``configs/__init__.py`` makes it a regular package) and ships every YAML
file in it as package data, so a wheel or a non-editable ``pip install .`` carries the same files, and an editable
install maps the folder itself. They are found with :mod:`importlib.resources`; a checkout used without any install
(``PYTHONPATH=.``) falls back to the ``configs/`` folder beside the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

#: The import name of the shipped ``configs/`` folder.
CONFIG_PACKAGE = "sracl_lightning.configs"
_CHECKOUT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_dir() -> Path:
    """The folder of the shipped configs: the installed package data, or the checkout's ``configs/``."""
    try:
        root = resources.files(CONFIG_PACKAGE)
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return _CHECKOUT_CONFIGS
    if isinstance(root, Path):
        return root
    # A namespace package (no __init__.py) is a MultiplexedPath; its children are real paths.
    return Path(str(root.joinpath("default.yaml"))).parent


def config_file(name: str | os.PathLike[str]) -> Path:
    """A shipped config by its name inside ``configs/``, e.g. ``default.yaml`` or ``sracl/beauty.yaml``.

    Raises:
        FileNotFoundError: No such shipped config.
    """
    path = config_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {str(name)!r} (looked in {config_dir()})")
    return path


def default_config() -> Path:
    """``configs/default.yaml``, which every training run loads first (``sracl-train``, ``train.py``)."""
    return config_file("default.yaml")


def prompt_template(name: str) -> Path:
    """A shipped prompt template, e.g. ``amazon.yaml`` or ``yelp.yaml`` (``configs/prompts/``)."""
    return config_file(Path("prompts") / name)


def packaged_config(value: str) -> str:
    """A ``--config`` value as a path: itself when it names a file, else the shipped config of that name.

    ``sracl-train --config sracl/beauty.yaml`` (or ``configs/sracl/beauty.yaml``, the repository path) thus works
    from any directory after an install. A value that is neither stays as it is, for the parser to report.
    """
    if not value or Path(value).exists():
        return value
    parts = Path(value).parts
    for name in (value, *([Path(*parts[1:])] if len(parts) > 1 and parts[0] == "configs" else [])):
        candidate = config_dir() / name
        if candidate.is_file():
            return str(candidate)
    return value


def with_packaged_configs(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config X`` / ``--config=X`` resolved by :func:`packaged_config`."""
    out = [str(arg) for arg in argv]
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + packaged_config(arg.split("=", 1)[1])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = packaged_config(out[i + 1])
    return out
