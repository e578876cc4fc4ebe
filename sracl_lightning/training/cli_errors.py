"""User-facing errors at the command line: one readable line on stderr instead of a traceback.

The command-line tools (``train.py``, ``evaluate.py``, ``python -m sracl_lightning.serving.recommend``) report the
project's own errors (:mod:`sracl_lightning.errors`) as ``error: <argument or file>: <what is wrong and what is
allowed>`` and exit with

* 2 for a bad argument: a parse error, or a :class:`~sracl_lightning.errors.UsageError`;
* 1 for bad input data: :class:`~sracl_lightning.datasets.sequences.DataFormatError`, a data mismatch, a missing file.

Any other exception is a bug and keeps its traceback. Set ``SRACL_DEBUG=1`` to get the full traceback of every
error, the ones above included.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import yaml
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser

from sracl_lightning.datasets.sequences import DataFormatError
from sracl_lightning.errors import DataMismatchError, UsageError

#: Set to 1 to re-raise user-facing errors with their full traceback.
DEBUG_ENV = "SRACL_DEBUG"

T = TypeVar("T")


#: The errors the command-line tools report as one line; everything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, DataFormatError, DataMismatchError,
                                                 FileNotFoundError)


def debug_requested() -> bool:
    """Whether ``SRACL_DEBUG`` asks for full tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (``KeyError`` without its quotes, ``OSError`` as ``path: reason``)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        message = f"{err.filename}: {err.strerror}"
    elif len(err.args) == 1:
        message = str(err.args[0])
    else:
        message = str(err) or type(err).__name__
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def exit_code(err: BaseException) -> int:
    """2 for a bad argument, 1 for bad input data."""
    return 2 if isinstance(err, UsageError) else 1


#: The one handler that shows this package's log records at the command line.
_CONSOLE = logging.StreamHandler()
_CONSOLE.setFormatter(logging.Formatter("%(message)s"))


def show_package_logs(level: int = logging.INFO) -> None:
    """Show the package's log records (``logging.getLogger("sracl_lightning.*")``) on stderr, one message per line.

    Library modules log, never print; every entry point calls this once. Calling it again changes nothing.
    """
    logger = logging.getLogger("sracl_lightning")
    if _CONSOLE not in logger.handlers:
        logger.addHandler(_CONSOLE)
    logger.setLevel(level)


def run_cli(main: Callable[[], T], errors: tuple[type[BaseException], ...] = USER_ERRORS) -> T:
    """Run a command-line entry point; report ``errors`` as one ``error: ...`` line on stderr and exit. The
    package's log records are shown on stderr (:func:`show_package_logs`).

    Args:
        main: The entry point, called without arguments.
        errors: The exception types that are the user's to fix (default :data:`USER_ERRORS`).
    """
    show_package_logs()
    try:
        return main()
    except errors as err:
        if debug_requested():
            raise
        sys.stderr.write(f"error: {one_line(err)}\n")
        sys.stderr.flush()
        raise SystemExit(exit_code(err)) from None


# ----------------------------------------------------------------------------------------- argument parsing
class OneLineErrors:
    """Parser mixin: a parse error is one ``error: <key>: <problem>`` line on stderr and exit code 2.

    jsonargparse prints the whole usage (dozens of lines) and a multi-line message; with ``SRACL_DEBUG=1`` (or
    jsonargparse's own ``JSONARGPARSE_DEBUG``) the :class:`ArgumentError` is raised instead.
    """

    _argv: list[str] | None = None

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_requested():
            raise ArgumentError(None, message) from ex
        if os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)
        self._logger.error(message)
        argv = sys.argv[1:] if self._argv is None else self._argv
        sys.stderr.write(f"error: {concise_parse_error(message, argv, self._known_keys())}\n")
        self.exit(2)

    def parse_args(self, args: Sequence[str] | None = None, *pos, **kwargs):
        self._argv = None if args is None else [str(arg) for arg in args]
        return super().parse_args(args, *pos, **kwargs)

    def _known_keys(self) -> list[str]:
        return [action.dest for action in getattr(self, "_actions", []) if isinstance(action.dest, str)]


class OneLineArgumentParser(OneLineErrors, ArgumentParser):
    """jsonargparse's parser with one-line errors (for ``auto_cli(..., parser_class=OneLineArgumentParser)``)."""


class SRACLArgumentParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser with one-line errors."""


_PARSER_KEY = re.compile(r'Parser key "([^"]+)":\s*')
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_GROUP_NOT_ACCEPTED = re.compile(r"Group '([^']+)' does not accept option '([^']+)'")
_CLASS = re.compile(r"<class '([\w.]+)'>")


def concise_parse_error(message: str, argv: Sequence[str] = (), known_keys: Iterable[str] = ()) -> str:
    """jsonargparse's multi-line parse error as ``<full key>: <problem>, <what is allowed>``.

    Args:
        message: The parser's message.
        argv: The command line, to qualify keys that jsonargparse reports without their group
            (``hidden_size`` for ``--model.init_args.encoder.init_args.hidden_size``) and to find a bad ``--config``.
        known_keys: The parser's keys, to suggest the closest one for a misspelt option.
    """
    if message.startswith("Problems parsing config"):
        return bad_yaml(argv) or f"config: {_collapse(message)}"
    if match := _GROUP_NOT_ACCEPTED.search(message):
        return _unknown(f"{match.group(1)}.{match.group(2)}", known_keys)
    if match := _NOT_ACCEPTED.search(message):
        return _unknown(full_key(match.group(1), argv), known_keys)
    if message.startswith("unrecognized arguments"):
        return f"{_collapse(message)} (--help lists the arguments)"
    if keys := list(_PARSER_KEY.finditer(message)):  # nested subclass arguments: the innermost key is the culprit
        return f"{full_key(keys[-1].group(1), argv)}: {_expected(message[keys[-1].end():])}"
    return _collapse(message)


def full_key(key: str, argv: Sequence[str]) -> str:
    """The command-line key that ends in ``key`` (``batch_size`` -> ``data.batch_size``)."""
    names = [arg[2:].split("=", 1)[0].removesuffix("+") for arg in argv if arg.startswith("--")]
    matches = [name for name in names if name == key or name.endswith(f".{key}")]
    return matches[-1] if matches else key


def bad_yaml(argv: Sequence[str]) -> str | None:
    """``<file>:<line>:<column>: invalid YAML: <problem>`` for the first ``--config`` file that does not parse."""
    paths = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
    paths += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    for path in paths:
        try:
            yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError:
            continue
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
            problem = getattr(err, "problem", None) or _collapse(str(err))
            context = getattr(err, "context", None)
            return f"--config {where}: invalid YAML: {problem}" + (f" ({context})" if context else "")
    return None


def _unknown(key: str, known_keys: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known_keys), n=1)
    hint = f"did you mean {close[0]}?" if close else "--help lists the arguments"
    return f"{key}: unknown argument ({hint})"


def _expected(body: str) -> str:
    """``expected <allowed>, got <value>`` from jsonargparse's description of a rejected value."""
    if path := re.search(r"dot import path string: (.*)", body):
        return f"expected a class path (e.g. package.module.Class) or a config file, got {path.group(1).strip()!r}"
    if simple := re.match(r"Expected a (.+?)\. Got value: (.*?)(?:\. Got value:|\n|$)", body):
        return f"expected {_type_name(simple.group(1))}, got {simple.group(2).strip()!r}"
    given = re.search(r"Given value: (.*)", body)
    value = f", got {given.group(1).strip()!r}" if given else ""
    if subtypes := re.search(r"Subtypes: \[(.*)\]\n", body):
        return f"expected {' or '.join(_type_name(t) for t in _split_top_level(subtypes.group(1)))}{value}"
    return _collapse(body)


def _type_name(text: str) -> str:
    text = text.strip()
    if literal := re.fullmatch(r"typing\.Literal\[(.*)\]", text):
        return "one of " + ", ".join(v.strip().strip("'\"") for v in _split_top_level(literal.group(1)))
    text = _CLASS.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("typing.", "")
    return "null" if text == "NoneType" else text


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "[(<" and 1 or (-1 if char in "])>" else 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _collapse(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


# ------------------------------------------------------------------------------------------ instantiation
def rejected_value(err: ValueError, owners: dict[type, str]) -> BaseException:
    """The user-facing error for a ``ValueError`` raised while the command line instantiates its classes.

    jsonargparse wraps a constructor's error in its own ``ValueError`` ("Does not validate against any of the Union
    subtypes", followed by the whole namespace); this returns the constructor's error instead. The project's own
    errors (:data:`USER_ERRORS`) are returned as they are; any other ``ValueError`` (e.g. ``torch.optim.Adam``'s
    "Invalid learning rate") becomes a :class:`UsageError` prefixed with the config key of the object that raised it.

    Args:
        err: The error ``instantiate_classes`` raised.
        owners: The config key of each class whose constructor may raise, e.g. ``{LightningModule: "model"}``.
    """
    root: BaseException = err
    while isinstance(root.__cause__, Exception):
        root = root.__cause__
    if isinstance(root, USER_ERRORS) or not isinstance(root, ValueError):
        return root
    prefix = _owner_prefix(root, owners)
    message = one_line(root)
    return UsageError(f"{prefix}: {message}" if prefix else message)


def _owner_prefix(err: BaseException, owners: dict[type, str]) -> str | None:
    """The config prefix of the innermost frame whose ``self`` is one of ``owners``' classes."""
    prefix = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        owner = frame.f_locals.get("self")
        for cls, key in owners.items():
            if isinstance(owner, cls):
                prefix = key
    return prefix


#: Where the command line's objects sit in its config, for :func:`rejected_value`.
CLI_OWNERS: dict[type, str] = {LightningDataModule: "data", LightningModule: "model"}
