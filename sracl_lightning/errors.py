"""The project's user-facing error types and argument checks (plain Python: the core imports them).

* :class:`UsageError`: a bad command-line argument or argument value; the entry points exit with 2;
* :class:`InvalidArgumentError`: a value outside what an argument allows, ``got <value>: <argument> must be ...``;
* :class:`DataMismatchError`: a model or cached artefact used with other data than it was built on (exit 1);
* :class:`~sracl_lightning.datasets.sequences.DataFormatError`: bad input data, with the file and line (exit 1).

:mod:`sracl_lightning.training.cli_errors` prints them as one line at the command line.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A bad command-line argument or argument value: the message names it and says what is allowed (exit 2)."""


class InvalidArgumentError(UsageError):
    """An argument's value is not allowed: ``got <value>: <argument> must be <allowed>``.

    Args:
        argument: The argument's full command-line key, e.g. ``data.num_neighbours``.
        value: The value given.
        allowed: What is allowed, e.g. ``>= 1``.
    """

    def __init__(self, argument: str, value: object, allowed: str) -> None:
        super().__init__(f"got {value!r}: {argument} must be {allowed}")
        self.argument = argument
        self.value = value
        self.allowed = allowed


class DataMismatchError(ValueError):
    """The data differs from the data a model or an artefact was built on; the message names both (exit 1)."""


def check_at_least(name: str, value: object, low: float, *, optional: bool = False) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a number ``>= low`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise InvalidArgumentError(name, value, f">= {low}" + (" (or null)" if optional else ""))


def check_in_range(name: str, value: object, low: float, high: float, *, high_inclusive: bool = True) -> None:
    """Raise :class:`InvalidArgumentError` unless ``low <= value <= high`` (``< high`` unless ``high_inclusive``)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and low <= value and (
        value <= high if high_inclusive else value < high)
    if not ok:
        raise InvalidArgumentError(name, value, f"in [{low}, {high}{']' if high_inclusive else ')'}")


