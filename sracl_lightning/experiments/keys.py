"""Run keys: the hash of a run's resolved configuration, as ``train.py``'s own parser resolves it."""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path

from sracl_lightning.resources import default_config, packaged_config


@functools.cache
def _train_parser():
    """``train.py``'s argument parser, without ``configs/default.yaml`` as an implicit default (the key names it)."""
    from sracl_lightning.training.cli import SRACLCLI

    class ParserBuilt(Exception):
        def __init__(self, parser) -> None:
            self.parser = parser

    class ParserOnly(SRACLCLI):
        def parse_arguments(self, parser, args) -> None:
            raise ParserBuilt(parser)

    try:
        ParserOnly(args=[], parser_kwargs={"default_config_files": []})
    except ParserBuilt as built:
        return built.parser
    raise RuntimeError("SRACLCLI built no parser")


#: Keys of the resolved configuration that say where a run is, not what it is.
_NOT_CONFIGURATION = ("config", "ckpt_path", "trainer.default_root_dir")


def resolved_config(args: Sequence[str], root: Path) -> dict:
    """The configuration ``train.py`` runs with these arguments: ``configs/default.yaml`` and every ``--config``
    merged and every argument applied by ``train.py``'s own parser, with the values that equal a constructor's default
    left out (so a new argument with a default changes nothing), and without the run folder.

    Args:
        args: ``train.py`` arguments; config paths are relative to ``root``.
        root: The working directory of the runs.
    """
    absolute = list(args)
    for index in range(len(absolute) - 1):
        if absolute[index] == "--config":
            path = Path(absolute[index + 1])
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                path = Path(packaged_config(absolute[index + 1]))
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {root / absolute[index + 1]}")
            absolute[index + 1] = str(path)
    parser = _train_parser()
    namespace = parser.parse_args(["--config", str(default_config()), *absolute])
    for key in _NOT_CONFIGURATION:
        if key in namespace:
            del namespace[key]
    return _drop_signature_defaults(json.loads(parser.dump(namespace, skip_default=True, format="json")))


def _drop_signature_defaults(node: object) -> object:
    """Remove, under every ``class_path``, the ``init_args`` equal to that class's signature default (jsonargparse
    keeps them for nested classes), so that a library adding an argument with a default changes no key."""
    if isinstance(node, list):
        return [_drop_signature_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _drop_signature_defaults(value) for key, value in node.items()}
    if isinstance(node.get("class_path"), str) and isinstance(node.get("init_args"), dict):
        module, _, name = node["class_path"].rpartition(".")
        try:
            parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        except (ImportError, AttributeError, TypeError, ValueError):
            return node
        kept = {}
        for key, value in node["init_args"].items():
            default = parameters[key].default if key in parameters else inspect.Parameter.empty
            try:
                same = default is not inspect.Parameter.empty and json.loads(json.dumps(default)) == value
            except TypeError:
                same = False
            if not same:
                kept[key] = value
        node = {**node, "init_args": kept} if kept else {k: v for k, v in node.items() if k != "init_args"}
    return node


def run_key(args: Sequence[str], root: Path) -> str:
    """Hash of the resolved configuration of a run (:func:`resolved_config`): a comment or a file move in a config
    changes nothing, a changed value or class changes the key."""
    payload = json.dumps(resolved_config(args, root), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
