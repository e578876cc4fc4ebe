"""Readers for the two plain-text sequence formats of the shared data (see ``../shared/data/README.md``).

* S3-Rec / ICLRec format (``<Name>/<Name>.txt``): one line per user, ``user i1 i2 ... in``, oldest first.
* SRA-CL release format (``sracl/<Name>.txt``): one ``user item`` pair per line; each user's lines are
  contiguous and chronological.

Both use positive integer ids written with the ASCII digits ``0-9`` only (leading zeros allowed: ``01`` is ``1``)
and below ``2**63``: a sign, an underscore (``1_0``, which ``int`` reads as 10), other Unicode digits (``١``) or
non-ASCII whitespace between fields are errors. The files must be UTF-8 (in practice ASCII). Items are renumbered by
ascending source id, which is the identity when the source ids are already ``1..N`` (true for every shared file), so
item text keyed by source ids stays aligned. Users keep file order. Every error names the file and the 1-based line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sracl_lightning.datasets.interaction_logs import decode_error
from sracl_lightning.datasets.sequences import DataFormatError, Sequences

#: Ids are stored as int64; ``2**63`` and above cannot be.
ID_LIMIT = 2**63


def _parse_id(token: str, path: Path, line: int, field: str) -> int:
    """One id: ASCII digits only (``int`` alone would also take ``+1``, ``1_0`` and ``١``), ``1 <= id < 2**63``."""
    if not (token.isascii() and token.isdigit()):
        raise DataFormatError(path, f"{field} must be a positive integer, got {token!r}", line=line)
    value = int(token)
    if value < 1:
        raise DataFormatError(path, f"{field} must be a positive integer (0 is padding), got {value}", line=line)
    if value >= ID_LIMIT:
        raise DataFormatError(path, f"{field} must be a positive integer below 2**63, got {token}", line=line)
    return value


def _parse_ids(tokens: list[str], path: Path, line: int, field: str) -> list[int]:
    """All ids of one line; a single C-level check per line in the common case, the precise per-token one else."""
    joined = "".join(tokens)
    if joined.isascii() and joined.isdigit():
        values = list(map(int, tokens))
        if min(values) >= 1 and max(values) < ID_LIMIT:
            return values
    return [_parse_id(t, path, line, field) for t in tokens]


def _open_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(1-based line, whitespace-separated fields)`` of the non-blank lines of a UTF-8 file."""
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise decode_error(path, data, err, offset=0) from None
    if "\r" in text:  # the line ends text mode accepts: \r\n and a lone \r
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.isascii():
            column, char = next((i, c) for i, c in enumerate(raw, start=1) if not c.isascii())
            if char.isspace():
                raise DataFormatError(path, f"non-ASCII whitespace U+{ord(char):04X} at column {column}: fields "
                                            "must be separated by spaces or tabs", line=lineno)
        tokens = raw.split()
        if tokens:  # blank lines (e.g. a trailing one) carry nothing
            yield lineno, tokens


def _renumber(
    raw_items: list[int], user_tokens: list[str], lengths: list[int], first_line: list[int]
) -> Sequences:
    """Map source item ids to 1..N by ascending source id and pack the arrays."""
    source_ids = np.asarray(raw_items, dtype=np.int64)
    distinct, items = np.unique(source_ids, return_inverse=True)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Sequences(
        items=(items + 1).astype(np.int32),
        offsets=offsets,
        user_tokens=user_tokens,
        item_tokens=[None, *(str(i) for i in distinct.tolist())],
        first_line=np.asarray(first_line, dtype=np.int64),
    )


def read_s3rec(path: str | Path) -> Sequences:
    """Read an S3-Rec/ICLRec file: one ``user i1 i2 ...`` line per user.

    Raises:
        DataFormatError: on an id that is not ASCII digits or not in ``1 .. 2**63 - 1``, a user listed twice, a user
            with fewer than 3 items, text that is not UTF-8, or an empty file.
    """
    path = Path(path)
    raw_items: list[int] = []
    user_tokens: list[str] = []
    lengths: list[int] = []
    first_line: list[int] = []
    seen_users: dict[str, int] = {}
    for lineno, tokens in _open_lines(path):
        user = str(_parse_id(tokens[0], path, lineno, "user id"))  # canonical: "01" and "1" are one user
        if user in seen_users:
            raise DataFormatError(
                path, f"user {user} appears again (first on line {seen_users[user]}); expected one line per user",
                line=lineno,
            )
        seen_users[user] = lineno
        raw_items.extend(_parse_ids(tokens[1:], path, lineno, "item id"))
        user_tokens.append(user)
        lengths.append(len(tokens) - 1)
        first_line.append(lineno)
    if not user_tokens:
        raise DataFormatError(path, "empty file: expected lines of the form 'user item1 item2 ...'")
    sequences = _renumber(raw_items, user_tokens, lengths, first_line)
    sequences.validate(path)
    return sequences


def read_sracl(path: str | Path) -> Sequences:
    """Read an SRA-CL release file: one ``user item`` pair per line, each user's lines contiguous.

    Raises:
        DataFormatError: on a line without exactly two fields, an id that is not ASCII digits or not in
            ``1 .. 2**63 - 1``, a user whose lines are not contiguous, a user with fewer than 3 items, text that is not
            UTF-8, or an empty file.
    """
    path = Path(path)
    raw_items: list[int] = []
    user_tokens: list[str] = []
    lengths: list[int] = []
    first_line: list[int] = []
    finished: dict[str, int] = {}  # users whose block has ended -> their first line
    current: str | None = None
    for lineno, tokens in _open_lines(path):
        if len(tokens) != 2:
            raise DataFormatError(path, f"expected 2 fields 'user item', got {len(tokens)}: {' '.join(tokens)!r}",
                                  line=lineno)
        user, item = str(_parse_id(tokens[0], path, lineno, "user id")), tokens[1]
        if user != current:
            if user in finished:
                raise DataFormatError(
                    path,
                    f"user {user} reappears after other users (its lines start on line {finished[user]}); "
                    "each user's interactions must be contiguous",
                    line=lineno,
                )
            if current is not None:
                finished[current] = first_line[-1]
            current = user
            user_tokens.append(user)
            lengths.append(0)
            first_line.append(lineno)
        raw_items.append(_parse_id(item, path, lineno, "item id"))
        lengths[-1] += 1
    if not user_tokens:
        raise DataFormatError(path, "empty file: expected lines of the form 'user item'")
    sequences = _renumber(raw_items, user_tokens, lengths, first_line)
    sequences.validate(path)
    return sequences
