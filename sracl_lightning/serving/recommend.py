"""Top-K recommendations from a trained checkpoint, for one history or a batch of histories.

    python -m sracl_lightning.serving.recommend CKPT --history B00279CF8S,B007CXZ350 --k 10
    python -m sracl_lightning.serving.recommend CKPT --user A0006ZZUKF4N0Y        # a known user's whole history
    python -m sracl_lightning.serving.recommend CKPT --histories histories.jsonl  # one JSON list of item ids per line

Histories name items by their source ids (ASINs, business ids, the S3-Rec integers as strings), the ids of the
dataset the checkpoint was trained on; ``int`` values in the Python API are the model's internal ids 1..N. Output:
one JSON object per history with its ranked items, each with its source id, score and, where the data has item
text, its title. Already-seen items are excluded by default (``--exclude_seen false`` keeps them, as the paper's
evaluation protocol does). Inference uses the backbone alone, in fp32.

The command line writes only results to stdout; logs (the ``[data]`` lines) go to stderr. A bad argument or input is
one ``error: ...`` line on stderr, exit code 2 for an argument (an unknown item or user on the command line, a bad
``--k``), 1 for a file (a missing, empty or malformed ``--histories`` file, which is named with its line; an unknown
item there; an unreadable checkpoint). ``SRACL_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import numbers
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from sracl_lightning.datasets.item_text import item_name, load_item_text
from sracl_lightning.datasets.processed import load_id_map
from sracl_lightning.datasets.samples import right_aligned_windows
from sracl_lightning.datasets.sequences import DataFormatError
from sracl_lightning.errors import InvalidArgumentError, UsageError
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.training.cli_errors import OneLineArgumentParser, run_cli
from sracl_lightning.training.datamodule import SeqRecDataModule
from sracl_lightning.training.trained import load_run

ItemKey = str | int


@dataclass(frozen=True)
class Recommendation:
    """One recommended item.

    Attributes:
        item: Internal id, 1..N.
        source_id: The item's id in the source data.
        score: The model's score ``h_u · e_item``.
        title: The item's title, or ``None`` where the data has no text for it.
    """

    item: int
    source_id: str
    score: float
    title: str | None


class Recommender:
    """Ranks all items for histories with a trained model's backbone.

    Args:
        model: A trained module (any :class:`SRACLModule` subclass); only its encoder is used.
        data: The DataModule of the dataset it was trained on (for the id map, titles and known users).
        exclude_seen: Never recommend an item the history already contains.
        batch_size: Histories scored per forward pass.
        device: Where the model runs.
    """

    def __init__(self, model: SRACLModule, data: SeqRecDataModule, *, exclude_seen: bool = True,
                 batch_size: int = 1024, device: str | torch.device = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.data = data
        self.exclude_seen = exclude_seen
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.num_items, self.max_len = model.num_items, model.max_len
        id_map = load_id_map(data.directory)
        self.source_ids: list[str | None] = id_map["items"]  # index = internal id; index 0 is padding
        if len(self.source_ids) != self.num_items + 1:
            raise ValueError(f"{data.directory / 'id_map.json'} lists {len(self.source_ids) - 1} items but the model "
                             f"was trained on {self.num_items}: a checkpoint of another dataset or conversion?")
        self.item_index = {str(s): i for i, s in enumerate(self.source_ids) if s is not None}
        self.user_index = {str(u): i for i, u in enumerate(id_map["users"])}
        self.titles = self.load_titles()

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path, *, source_root: str | None = None, data_root: str | None = None,
                        **kwargs) -> Recommender:
        """Rebuild the model and its data from a checkpoint written by ``train.py``; ``kwargs`` as the constructor."""
        model, data = load_run(ckpt_path, source_root=source_root, data_root=data_root)
        data.prepare_data()
        return cls(model, data, **kwargs)

    def load_titles(self) -> list[str | None]:
        """Titles indexed by internal id; all ``None`` when the dataset was converted without item text."""
        try:
            records = load_item_text(self.data.directory, self.num_items)
        except FileNotFoundError:
            return [None] * (self.num_items + 1)
        return [item_name(record) for record in records]

    # ------------------------------------------------------------------------------------------------ inputs
    def internal_ids(self, history: Sequence[ItemKey], where: str = "history") -> list[int]:
        """Map a history's items to internal ids; ``str`` are source ids, ``int`` internal ids."""
        if isinstance(history, str | bytes):
            raise TypeError(f"{where}: expected a sequence of item ids, got the string {history!r}")
        if len(history) == 0:
            raise ValueError(f"{where}: a history needs at least one item")
        ids = []
        for position, key in enumerate(history):
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise TypeError(f"{where}[{position}]: item ids are str (source id) or int (internal id), "
                                f"got {type(key).__name__}")
            if isinstance(key, int):
                if not 1 <= key <= self.num_items:
                    raise ValueError(f"{where}[{position}]: internal id {key} is outside 1..{self.num_items}")
                ids.append(key)
            elif key in self.item_index:
                ids.append(self.item_index[key])
            else:
                raise KeyError(f"{where}[{position}]: unknown item {key!r} (not among the {self.num_items:,} items "
                               f"of dataset {self.data.name!r})")
        return ids

    def user_history(self, user: str) -> list[int]:
        """The whole chronological history of a known user (source user id), as internal ids."""
        if user not in self.user_index:
            raise KeyError(f"unknown user {user!r} (not among the {len(self.user_index):,} users of dataset "
                           f"{self.data.name!r})")
        return self.data.sequences.sequence(self.user_index[user]).tolist()

    def windows(self, histories: Sequence[list[int]], length: int | None = None) -> Tensor:
        """The last ``length`` (default ``max_len``) items of each history, left-padded with 0 as in training:
        (B, L) int64, gathered by :func:`~sracl_lightning.datasets.samples.right_aligned_windows`."""
        lengths = torch.tensor([len(ids) for ids in histories], dtype=torch.long)  # (B,)
        ends = lengths.cumsum(0)  # (B,) one past each history in the flat array
        flat = torch.tensor([i for ids in histories for i in ids], dtype=torch.long)  # (T,)
        return right_aligned_windows(flat, ends, ends - lengths, self.max_len if length is None else length)

    # -------------------------------------------------------------------------------------------------- ranking
    @torch.no_grad()
    def scores(self, histories: Sequence[list[int]]) -> Tensor:
        """Scores of items 1..N for each history (B, N), seen items at -inf when ``exclude_seen``."""
        window = self.windows(histories).to(self.device)  # (B, L)
        exclude = None
        if self.exclude_seen:  # (B, H) every item of each history, as columns; padding 0 -> -1 = none
            exclude = self.windows(histories, max(map(len, histories), default=0)).to(self.device) - 1
        return self.model.item_scores(self.model(window), exclude)  # (B, N), column j = item j + 1

    def check_k(self, k: object) -> int:
        """``k`` as an ``int``; :class:`InvalidArgumentError` (a ``ValueError``) unless it is an int in 1..N."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.num_items:
            raise InvalidArgumentError("k", k, f"an int in 1..{self.num_items}")
        return int(k)

    def recommend(self, histories: Sequence[Sequence[ItemKey]], k: int = 10) -> list[list[Recommendation]]:
        """The top-``k`` items for each history, best first (fewer when fewer unseen items remain).

        Raises:
            InvalidArgumentError: ``k`` is not an int in 1..N.
            KeyError: An unknown source item id.
            ValueError, TypeError: An empty history, an internal id outside 1..N, an id of another type.
        """
        k = self.check_k(k)
        ids = [self.internal_ids(history, where=f"histories[{i}]") for i, history in enumerate(histories)]
        return [ranked for chunk in self._chunks(ids) for ranked in self._top_k(chunk, k)]

    def recommend_one(self, history: Sequence[ItemKey], k: int = 10) -> list[Recommendation]:
        """The top-``k`` items for one history."""
        return self.recommend([history], k)[0]

    def recommend_users(self, users: Sequence[str], k: int = 10) -> list[list[Recommendation]]:
        """The top-``k`` next items for known users, from their whole histories (validation and test items
        included: this is serving, not evaluation)."""
        return self.recommend([self.user_history(user) for user in users], k)

    def _chunks(self, histories: list[list[int]]) -> Iterator[list[list[int]]]:
        for start in range(0, len(histories), self.batch_size):
            yield histories[start:start + self.batch_size]

    def _top_k(self, histories: list[list[int]], k: int) -> list[list[Recommendation]]:
        values, columns = self.scores(histories).topk(k, dim=1)  # (B, k) each
        out = []
        for row_values, row_columns in zip(values.tolist(), columns.tolist(), strict=True):
            out.append([Recommendation(item=c + 1, source_id=str(self.source_ids[c + 1]), score=v,
                                       title=self.titles[c + 1])
                        for v, c in zip(row_values, row_columns, strict=True) if v != float("-inf")])
        return out


def read_histories(path: str | Path) -> list[list[str]]:
    """One JSON list of source item ids per line; blank lines are skipped.

    Raises:
        FileNotFoundError: No such file.
        DataFormatError: A line that is not a JSON list of item ids (named ``file:line``), or no history at all.
    """
    return [history for _, history in read_history_lines(path)]


def read_history_lines(path: str | Path) -> list[tuple[int, list[str]]]:
    """:func:`read_histories` with the (1-based) line number of each history."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"histories file not found: {path}")
    histories = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                history = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, f"expected a JSON list of item ids: {err.msg}", line=lineno) from None
            if not isinstance(history, list):
                raise DataFormatError(path, f"expected a JSON list of item ids, got {type(history).__name__}",
                                      line=lineno)
            for position, item in enumerate(history):
                if isinstance(item, bool) or not isinstance(item, str | int):
                    raise DataFormatError(path, f"history[{position}] is {json.dumps(item)}; item ids are strings "
                                                "(the dataset's source ids)", line=lineno)
            histories.append((lineno, [str(item) for item in history]))
    if not histories:
        raise DataFormatError(path, "no histories found (an empty file?): expected one JSON list of item ids per line")
    return histories


def main(
    ckpt_path: str,
    history: str | None = None,
    user: str | None = None,
    histories: str | None = None,
    k: int = 10,
    exclude_seen: bool = True,
    source_root: str | None = None,
    data_root: str | None = None,
    device: str = "cpu",
) -> None:
    """Print the top-``k`` recommendations as JSON lines, one per history; anything else goes to stderr.

    Args:
        ckpt_path: A checkpoint written by ``train.py``.
        history: One history: comma-separated source item ids, oldest first (``--history A,B,C``).
        user: Comma-separated known users (source ids) whose whole histories are used.
        histories: A file with one JSON list of source item ids per line.
        k: Items per history.
        exclude_seen: Never recommend an item the history already contains.
        source_root: Override the data's source root stored in the checkpoint.
        data_root: Override where converted datasets are kept.
        device: ``cpu``, ``cuda``, ...

    Raises:
        UsageError: Nothing to recommend for, a bad ``k``, an unknown item in ``--history`` or user in ``--user``.
        DataFormatError: A malformed or empty ``--histories`` file, an unknown item in it (named ``file:line``), an
            unreadable checkpoint.
        FileNotFoundError: No such checkpoint or histories file.
    """
    if not (history or user or histories):
        raise UsageError("nothing to recommend for: give --history, --user or --histories")
    results = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # whatever loading prints is a log: stdout carries only results
        lines = read_history_lines(histories) if histories else []  # before the model: a bad file fails fast
        recommender = Recommender.from_checkpoint(ckpt_path, source_root=source_root, data_root=data_root,
                                                  exclude_seen=exclude_seen, device=device)
        k = recommender.check_k(k)
        queries: list[tuple[dict, list[int]]] = []
        if history:
            items = [item.strip() for item in history.split(",") if item.strip()]
            queries.append(({"history": items}, _ids(recommender, items, "--history")))
        for name in [u.strip() for u in (user or "").split(",") if u.strip()]:
            try:
                queries.append(({"user": name}, recommender.user_history(name)))
            except KeyError as err:
                raise UsageError(f"--user: {err.args[0]}") from None
        for lineno, items in lines:
            queries.append(({"history": items}, _ids(recommender, items, "history", (histories, lineno))))
        ranked = recommender.recommend([ids for _, ids in queries], k)
    for (key, _), items in zip(queries, ranked, strict=True):
        results.write(json.dumps({**key, "recommendations": [asdict(item) for item in items]}) + "\n")


def _ids(recommender: Recommender, items: list[str], where: str, line: tuple[str, int] | None = None) -> list[int]:
    """Internal ids of a command-line history (:class:`UsageError`) or a file's (:class:`DataFormatError`)."""
    try:
        return recommender.internal_ids(items, where=where)
    except (KeyError, ValueError, TypeError) as err:
        message = str(err.args[0]) if err.args else str(err)
        if line is None:
            raise UsageError(message) from None
        raise DataFormatError(line[0], message, line=line[1]) from None


def logs_to_stderr() -> None:
    """Send Lightning's log records (the DataModule's ``[data]`` lines) to stderr, whatever the root logger does."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.propagate = False


if __name__ == "__main__":
    from jsonargparse import auto_cli

    logs_to_stderr()
    run_cli(lambda: auto_cli(main, as_positional=True, parser_class=OneLineArgumentParser))
