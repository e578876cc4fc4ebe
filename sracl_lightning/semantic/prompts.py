"""LLM prompts of the semantic stage: user-preference prompts and item prompts
(docs/method.md#user-summaries, docs/method.md#item-summaries).

The wording lives in YAML template files (``configs/prompts/*.yaml``, format documented in ``amazon.yaml``);
this module fills them from item records and builds the chat messages ``[{"role": "system", ...},
{"role": "user", ...}]`` an LLM backend (:mod:`sracl_lightning.semantic.llm`) answers.

Item records are produced by :mod:`sracl_lightning.datasets.item_text`: a list indexed by item id (index 0 is padding,
``None``) of dicts ``{"item", "source_id", "title", "brand", "categories", "price", "description", "extra"}``.

Dimension letters: U users, T interactions, P training prefixes.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sracl_lightning.datasets.item_text import clean_text, item_text_id, item_title
from sracl_lightning.datasets.manifest import stable_hash
from sracl_lightning.datasets.samples import right_aligned_windows, training_positions
from sracl_lightning.resources import packaged_config

#: The value shown for an absent attribute, as in the released notebooks (``fillna('missing')``).
MISSING = "missing"
#: Context-sequence rendering (docs/method.md#item-summaries): titles joined by "->" inside brackets, sequences
#: separated by "#".
CONTEXT_ARROW = " -> "
CONTEXT_SEPARATOR = " # "
NO_CONTEXT = "[None]"

# Fields a record-level template ("user.record", "item.info") may use.
_RECORD_FIELDS = frozenset({"domain", "text", "title", "brand", "categories", "price", "description", "extra",
                            "source_id", "item"})
# Every template entry: the placeholders it may use and those it must use (or the prompt would silently lose data).
_ENTRIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "user.record": (_RECORD_FIELDS, frozenset()),
    "user.separator": (frozenset(), frozenset()),
    "user.system": (frozenset({"domain"}), frozenset()),
    "user.user": (frozenset({"domain", "history"}), frozenset({"history"})),
    "item.info": (_RECORD_FIELDS, frozenset()),
    "item.system": (frozenset({"domain"}), frozenset()),
    "item.user": (frozenset({"domain", "item_info", "context"}), frozenset({"item_info"})),
}
_TOP_LEVEL = frozenset({"domain", "description_chars", "user", "item"})


class PromptTemplateError(ValueError):
    """A template file is malformed; the message names the file and the offending key."""

    def __init__(self, path: str | Path, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path = str(path)
        self.key = key


@dataclass(frozen=True)
class PromptTemplate:
    """The texts of one template file; see ``configs/prompts/amazon.yaml`` for what each entry means.

    Attributes:
        domain: The word filled in for ``{domain}`` ("beauty", "sports_and_outdoors", "business", ...).
        description_chars: Item descriptions are cut to this many characters (code: 500, Office 1000).
        user_record: One history record of the user prompt.
        user_separator: Text between history records.
        user_system: System message of the user prompt.
        user_user: User message of the user prompt.
        item_info: The item's attribute sentence.
        item_system: System message of the item prompt.
        item_user: User message of the item prompt.
        source: The file it was read from (for error messages).
    """

    domain: str
    description_chars: int
    user_record: str
    user_separator: str
    user_system: str
    user_user: str
    item_info: str
    item_system: str
    item_user: str
    source: str = "<memory>"

    def identity(self) -> dict[str, str]:
        """What the prompts' content is, for cache keys and manifests: the file name and a hash of the texts."""
        texts = {k: v for k, v in asdict(self).items() if k != "source"}
        return {"file": Path(self.source).name, "sha256": stable_hash(texts)}



class _Extra(dict):
    """``record["extra"]`` for ``{extra[KEY]}`` placeholders: absent or null keys read as ``"missing"``."""

    def __missing__(self, key: str) -> str:
        return MISSING


def _placeholders(path: str | Path, key: str, text: str) -> set[str]:
    """Root names of the ``str.format`` fields in ``text`` (``extra[city]`` -> ``extra``)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:  # unmatched brace
        raise PromptTemplateError(path, key, f"bad format string ({err}); write literal braces as '{{{{' '}}}}'") \
            from err
    names = set()
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise PromptTemplateError(path, key, "positional placeholder '{}' is not allowed; name the field")
        names.add(root)
    return names


def _check_entry(path: str | Path, key: str, text: Any) -> str:
    if not isinstance(text, str):
        raise PromptTemplateError(path, key, f"expected a string, got {type(text).__name__}")
    allowed, required = _ENTRIES[key]
    names = _placeholders(path, key, text)
    unknown = sorted(names - allowed)
    if unknown:
        raise PromptTemplateError(path, key, f"unknown placeholder(s) {{{'}, {'.join(unknown)}}}; "
                                             f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    missing = sorted(required - names)
    if missing:
        raise PromptTemplateError(path, key, f"missing required placeholder(s) {{{'}, {'.join(missing)}}}")
    # A dry run catches bad format specs ("{title:d}") at load time rather than on the 100,000th prompt.
    dummy = {name: "x" for name in allowed} | {"extra": _Extra()}
    try:
        text.format(**dummy)
    except (ValueError, AttributeError, IndexError, KeyError) as err:
        raise PromptTemplateError(path, key, f"cannot be formatted: {err!r}") from err
    return text


def shipped_template(path: str | Path) -> Path:
    """``path`` if it exists, else the template shipped with the package that it names (by file name, as
    ``prompts/<name>`` or as the repository path ``configs/prompts/<name>``), else ``path`` unchanged."""
    path = Path(path)
    if path.exists():
        return path
    for name in (path, Path("prompts") / path):
        found = packaged_config(str(name))
        if found != str(name):
            return Path(found)
    return path


def load_prompt_template(path: str | Path, domain: str | None = None,
                         description_chars: int | None = None) -> PromptTemplate:
    """Read and validate a template file.

    Args:
        path: A YAML file with ``domain``, ``description_chars``, ``user: {record, separator, system, user}`` and
            ``item: {info, system, user}``; a path that does not exist may name a shipped template
            (``amazon.yaml``, ``configs/prompts/yelp.yaml``: :func:`shipped_template`).
        domain: Replaces the file's ``domain`` (one Amazon file serves Beauty, Sports and Office).
        description_chars: Replaces the file's ``description_chars``.

    Raises:
        PromptTemplateError: A key is missing or unknown, or a text uses an unknown placeholder or lacks a
            required one; the message names the file and the key.
    """
    path = shipped_template(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PromptTemplateError(path, "<file>", f"not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise PromptTemplateError(path, "<file>", "expected a mapping at the top level")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise PromptTemplateError(path, unknown[0], f"unknown key; expected {', '.join(sorted(_TOP_LEVEL))}")
    texts: dict[str, str] = {}
    for section in ("user", "item"):
        block = data.get(section)
        if not isinstance(block, dict):
            raise PromptTemplateError(path, section, "missing, or not a mapping")
        expected = {key.split(".", 1)[1] for key in _ENTRIES if key.startswith(section + ".")}
        extra_keys = sorted(set(block) - expected)
        if extra_keys:
            raise PromptTemplateError(path, f"{section}.{extra_keys[0]}", f"unknown key; expected "
                                                                          f"{', '.join(sorted(expected))}")
        for name in sorted(expected):
            key = f"{section}.{name}"
            if name not in block:
                raise PromptTemplateError(path, key, "missing")
            texts[key] = _check_entry(path, key, block[name])
    domain = domain if domain is not None else data.get("domain")
    if not isinstance(domain, str) or not domain:
        raise PromptTemplateError(path, "domain", "missing or not a non-empty string")
    chars = description_chars if description_chars is not None else data.get("description_chars")
    if not isinstance(chars, int) or isinstance(chars, bool) or chars < 1:
        raise PromptTemplateError(path, "description_chars", f"expected a positive integer, got {chars!r}")
    return PromptTemplate(
        domain=domain, description_chars=chars,
        user_record=texts["user.record"], user_separator=texts["user.separator"],
        user_system=texts["user.system"], user_user=texts["user.user"],
        item_info=texts["item.info"], item_system=texts["item.system"], item_user=texts["item.user"],
        source=str(path),
    )


def item_display_text(record: Mapping[str, Any]) -> str:
    """The short text standing for an item in histories and context sequences (docs/method.md#user-summaries).

    The ``title`` (:func:`~sracl_lightning.datasets.item_text.item_title`); when it is absent or blank, the fields that
    are present among ``brand``, the ``categories`` and ``extra["idgenrec_text_id"]`` (Sports' textual id,
    :func:`~sracl_lightning.datasets.item_text.item_text_id`), joined by ", "; ``"missing"`` when none is.

    NOTE: the released Sports notebook falls back to the category list alone (printed as a Python list); brand
    and the IDGenRec text id are added here because many Sports items share one category path.
    """
    title = item_title(record)
    if title is not None:
        return title
    parts = [clean_text(record.get("brand")), *(clean_text(c) for c in record.get("categories") or ()),
             item_text_id(record)]
    parts = [p for p in parts if p is not None]
    return ", ".join(parts) if parts else MISSING


def _format(template: str, key: str, source: str, **fields: Any) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, AttributeError, ValueError) as err:  # validated at load; kept for hand-made ones
        raise PromptTemplateError(source, key, f"cannot be formatted: {err!r}") from err


class PromptBuilder:
    """Fills a :class:`PromptTemplate` from the item records of one dataset.

    Args:
        template: The prompt texts.
        records: Item records indexed by item id; ``records[0]`` is padding and never used.
    """

    def __init__(self, template: PromptTemplate, records: Sequence[Mapping[str, Any] | None]) -> None:
        self.template = template
        self.records = records
        # One rendered history record per item: a dataset has ~10^5 prefixes of up to 20 items each.
        self._record_cache: dict[int, str] = {}

    def record(self, item: int) -> Mapping[str, Any]:
        if not 0 < item < len(self.records) or self.records[item] is None:
            raise KeyError(f"item {item} has no record (valid ids: 1..{len(self.records) - 1})")
        return self.records[item]

    def fields(self, item: int) -> dict[str, Any]:
        """The placeholder values of one item; absent attributes read ``"missing"`` as in the released code."""
        rec = self.record(item)
        categories = [c for c in (clean_text(c) for c in rec.get("categories") or ()) if c is not None]
        price = rec.get("price")
        description = clean_text(rec.get("description"))
        extra = _Extra({k: str(v) for k, v in (rec.get("extra") or {}).items() if clean_text(v) is not None})
        return {
            "domain": self.template.domain,
            "item": item,
            "source_id": rec.get("source_id", MISSING),
            "text": item_display_text(rec),
            "title": item_title(rec) or MISSING,
            "brand": clean_text(rec.get("brand")) or MISSING,
            # NOTE: the Amazon notebooks print the category list as a Python list; a comma list reads better.
            "categories": ", ".join(categories) if categories else MISSING,
            "price": f"{float(price):.2f}" if price is not None else MISSING,
            "description": description[: self.template.description_chars] if description else MISSING,
            "extra": extra,
        }

    # ---- user prompts (docs/method.md#user-summaries) --------------------------------------------------------
    def history_text(self, history: Sequence[int]) -> str:
        """The user message: the history's records in chronological order (oldest first).

        This is also the "raw text" the ``none`` backend (the paper's "w/o LLM" ablation) embeds.
        """
        t = self.template
        records = [self._history_record(int(i)) for i in history]
        return _format(t.user_user, "user.user", t.source, domain=t.domain, history=t.user_separator.join(records))

    def _history_record(self, item: int) -> str:
        text = self._record_cache.get(item)
        if text is None:
            text = _format(self.template.user_record, "user.record", self.template.source, **self.fields(item))
            self._record_cache[item] = text
        return text

    def user_messages(self, history: Sequence[int]) -> list[dict[str, str]]:
        """Chat messages asking for one paragraph (<= 100 words) on the preference shown by ``history``."""
        t = self.template
        return [{"role": "system", "content": _format(t.user_system, "user.system", t.source, domain=t.domain)},
                {"role": "user", "content": self.history_text(history)}]

    # ---- item prompts (docs/method.md#item-summaries) --------------------------------------------------------
    def item_info(self, item: int) -> str:
        """The item's attribute sentence (title, brand, categories, price, truncated description, ...)."""
        return _format(self.template.item_info, "item.info", self.template.source, **self.fields(item))

    def context_text(self, context: Sequence[Sequence[int]]) -> str:
        """Context sequences as ``[a -> b -> c] # [d -> c]``, or ``[None]`` when there are none."""
        if not context:
            return NO_CONTEXT
        rendered = ("[" + CONTEXT_ARROW.join(item_display_text(self.record(int(i))) for i in seq) + "]"
                    for seq in context)
        return CONTEXT_SEPARATOR.join(rendered)

    def item_messages(self, item: int, context: Sequence[Sequence[int]] = ()) -> list[dict[str, str]]:
        """Chat messages asking for a JSON item summary and a potential-user analysis.

        Args:
            item: The item id.
            context: Training sequences ending with ``item`` (from :func:`item_context_sequences`); ignored by
                templates without a ``{context}`` placeholder (Yelp).
        """
        t = self.template
        user = _format(t.item_user, "item.user", t.source, domain=t.domain, item_info=self.item_info(item),
                       context=self.context_text(context))
        return [{"role": "system", "content": _format(t.item_system, "item.system", t.source, domain=t.domain)},
                {"role": "user", "content": user}]


def user_message_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The content of the last user message: the raw text of a prompt (what "w/o LLM" embeds)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message["content"]
    raise ValueError(f"no user message among roles {[m.get('role') for m in messages]}")


def item_context_sequences(items: np.ndarray, offsets: np.ndarray, max_per_item: int = 10, max_items: int = 11,
                           seed: int = 0, max_len: int = 20) -> dict[int, list[list[int]]]:
    """User sequences that end with each item, the "context" of the item prompts (docs/method.md#item-summaries).

    Every training sample (an input window of at most ``max_len`` items of ``items[:-2]`` plus its target) is a
    sequence of 2..max_len+1 items; these are grouped by their last item (the target), at most
    ``max_per_item`` are drawn per item without replacement, and each is cut to its last ``max_items`` items.
    Drawn sequences keep their order in the data (user by user, oldest first).

    NOTE: the paper caps the context at 10 sequences; the released code keeps 5 (``random.sample(..., 5)`` with
    ``random.seed(0)``). The draw here is a seeded numpy permutation, so it is reproducible but not the code's.
    NOTE: the code groups the inputs of *all* prefixes of the whole sequence, so the validation item also gets
    context; only training prefixes are used here, so no validation or test item is seen
    (docs/method.md#deviations, D6).

    Args:
        items: ``(T,)`` flat item ids, user after user (:class:`~sracl_lightning.datasets.sequences.Sequences`).
        offsets: ``(U + 1,)`` user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``.
        max_per_item: Most sequences kept per item (paper 10, code 5).
        max_items: Each sequence keeps its last this many items (code 11).
        seed: Seed of the draw.
        max_len: Input window length of the training samples (the code's ``maxlen`` = 20).

    Returns:
        ``{item: [sequence, ...]}`` for every item that ends at least one training sequence; sequences are lists
        of item ids, oldest first, ending with ``item``.
    """
    items = np.asarray(items)
    offsets = np.asarray(offsets, dtype=np.int64)
    if items.ndim != 1 or offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items):
        raise ValueError(f"expected flat items (T,) and offsets (U+1,) from 0 to T; got items {items.shape}, "
                         f"offsets {offsets.shape} spanning {offsets[:1].tolist()}..{offsets[-1:].tolist()}")
    if max_per_item < 1 or max_items < 2 or max_len < 1:
        raise ValueError(f"need max_per_item >= 1, max_items >= 2, max_len >= 1; got {max_per_item}, {max_items}, "
                         f"{max_len}")
    starts = offsets[:-1]  # (U,)
    ends_at, users = training_positions(offsets)  # (P,) each: the training targets, each sequence's last item
    last = items[ends_at]  # (P,)

    # Sampling without replacement per item: shuffle with a random key, keep the first max_per_item of each group.
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(last)), last))  # grouped by last item, random within a group
    sorted_last = last[order]
    group_start = np.flatnonzero(np.r_[True, sorted_last[1:] != sorted_last[:-1]])
    group_size = np.diff(np.r_[group_start, len(order)])
    within = np.arange(len(order)) - np.repeat(group_start, group_size)
    kept = np.sort(order[within < max_per_item])  # (K,) back in data order

    # Windows of the last `width` items up to and including the target, left-truncated at the user's start.
    width = min(max_items, max_len + 1)
    end, start = ends_at[kept] + 1, starts[users[kept]]  # (K,) each
    windows = right_aligned_windows(torch.from_numpy(items), torch.from_numpy(end), torch.from_numpy(start), width)
    windows = windows.numpy()  # (K, width)
    lengths = np.minimum(end - start, width)  # (K,) the columns not before the user's start

    result: dict[int, list[list[int]]] = {}
    for item, row, n in zip(last[kept].tolist(), windows.tolist(), lengths.tolist(), strict=True):
        result.setdefault(item, []).append(row[width - n:])
    return result
