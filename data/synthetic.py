"""Deterministic generator of a small Amazon-2014-style Beauty dataset.

This is the project's embedded default dataset. It writes two files in exactly the formats of the McAuley 2014 Amazon
dumps, so the real preprocessing code path is exercised end to end:

* ``reviews_Synthetic_5.json.gz``: one JSON review per line, grouped by ``asin`` like the real files, with
  day-resolution timestamps (same-day ties occur) and a few exact duplicate rows, as in the real files.
* ``meta_Synthetic.json.gz``: one item per line as a Python literal dict (``ast.literal_eval``, not ``json.loads``),
  with realistic gaps in ``title``, ``brand``, ``price`` and ``description``.

The data has real structure, planted so that the semantic signal SRA-CL retrieves has something to find. Items belong
to a category / subcategory catalog and are organised into brand "product lines" whose steps form an ordered routine
(cleanser -> toner -> serum -> ...). Each step is a *family* of 6 to 10 variants of one product that differ only in
size and pack ("Vela Tea Tree Gentle After-Sun Gel 4 fl oz", "... 8 fl oz Pack of 2"), so the variants are
interchangeable and their titles say so: an item's nearest text neighbours are mostly its own family. A user's next
item usually follows the routine, and then depends on the *family* of the current item, not on which variant was
bought: the next step's variant is drawn by a Zipf share within its family. Otherwise it comes from the user's taste
(one or two categories, a favourite brand) or, rarely, from a Zipf popularity prior. Histories are short (about 9
on average, at least 5) and the catalog is large for them (about 9 interactions per item), so many variants are seen
only a few times: a model that learns each item on its own learns the rare variants poorly, one that knows the
families (from the text) does not have to. A "most frequent successor of the last item" predictor clearly beats global
popularity, and text similarity mirrors the catalog. The output is already 5-core (every user and item has at least 5
interactions after dropping exact duplicates); this is enforced by a repair step and checked before writing.

The vocabulary (the category catalog with its subcategory routines, themes, adjectives, sizes and benefits; the packs;
the brands; the reviewer first names; the review templates; the star distributions) is data, not code: it lives in
``synthetic_vocabulary.json`` beside this file and is read and checked once at import (:class:`_Vocabulary` describes
its keys). The order of its lists and objects is part of the output: the generator draws from them by index.

Usage::

    python data/synthetic.py [--out DIR] [--users N] [--items N] [--seed S]
"""

import argparse
import bisect
import datetime as dt
import gzip
import json
import os
import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_write
from sracl_lightning.datasets.sequences import DataFormatError

REVIEWS_FILENAME = "reviews_Synthetic_5.json.gz"
META_FILENAME = "meta_Synthetic.json.gz"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "raw" / "synthetic"
DEFAULT_NUM_USERS = 2500
DEFAULT_NUM_ITEMS = 2400

MIN_INTERACTIONS = 5  # k of the k-core the output satisfies.
MEAN_EXTRA_LENGTH = 3  # Sequence length is MIN_INTERACTIONS + Geometric - 1: a mean of 7 (about 9 after the repair).
FAMILY_SIZES = (6, 10)  # A routine step is sold in 6 to 10 variants (the catalog's last family may be smaller).
MAX_SEQUENCE_LENGTH = 60
FOLLOW_PROB = 0.6  # Probability that the next item follows the routine of the current item.
SUCCESSOR_FIDELITY = 0.85  # Within a routine step, probability of the canonical successor vs. another line item.
POPULARITY_PROB = 0.12  # Probability of a Zipf popularity pick, the noise component.
BRAND_LOYALTY = 0.5  # Probability that a taste pick is restricted to the user's favourite brand in the category.
SAME_DAY_PROB = 0.25  # Probability that a review falls on the same day as the previous one of the user.
MEAN_GAP_DAYS = 30
DUPLICATE_RATE = 0.005
MISSING_FRACTIONS = {"title": 0.02, "brand": 0.10, "price": 0.15, "description": 0.10}

# The real 2014 dumps end in July 2014; users start between 2010 and that date.
_EPOCH = dt.date(1970, 1, 1)
_FIRST_DAY = (dt.date(2010, 1, 1) - _EPOCH).days
_LAST_DAY = (dt.date(2014, 7, 23) - _EPOCH).days
_SECONDS_PER_DAY = 86400
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


VOCABULARY_PATH = Path(__file__).with_name("synthetic_vocabulary.json")
_SENTIMENTS = ("pos", "mid", "neg")
_RATING_PROFILES = ("loyal", "taste", "other")
_REVIEW_FIELDS = frozenset({"noun", "brand", "theme", "aspect", "benefit"})
_MIN_ROUTINE_STEPS = 3  # _build_catalog draws product lines of 3 or more consecutive routine steps.


@dataclass(frozen=True)
class _Category:
    """Vocabulary and routines of one top-level category.

    Attributes:
        weight: Relative popularity, used both for catalog size and for user tastes.
        price: Typical price in dollars.
        aspect: Noun reviewers use for the item's theme ("scent", "shade", ...).
        composition: Description sentence with ``{theme}`` and ``{other}`` placeholders for two themes.
        subcategories: Subcategory name -> ordered routine of (product noun, leaf category) pairs.
        themes: Scents, ingredients, shades or materials that name a product line.
        adjectives: Claims that name a product line.
        sizes: Package sizes appended to titles ("" means no size).
        benefits: Verb phrases completing "to ..." in descriptions and reviews.
        count_sized: Subcategories of tools sold by count rather than by volume.
    """

    weight: float
    price: float
    aspect: str
    composition: str
    subcategories: dict[str, tuple[tuple[str, str], ...]]
    themes: tuple[str, ...]
    adjectives: tuple[str, ...]
    sizes: tuple[str, ...]
    benefits: tuple[str, ...]
    count_sized: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Vocabulary:
    """The contents of ``synthetic_vocabulary.json``; each attribute is the top-level key of the same name.

    The four review template lists (``openers``, ``aspect_sentences``, ``closers``, ``summaries``) may use the
    placeholders ``{noun}``, ``{brand}``, ``{theme}``, ``{aspect}`` and ``{benefit}``.

    Attributes:
        count_sizes: Package sizes of the ``count_sized`` subcategories, used instead of the category's ``sizes``.
        packs: Pack labels appended to titles (``""``: a single unit); with the sizes they make the variants of a
            routine step.
        categories: Top-level category name -> its :class:`_Category` (an object with the same field names; each
            routine step is a ``[product noun, leaf category]`` pair).
        brands: Brand names; every category gets at least one, so there are at least as many brands as categories.
        first_names: Reviewer first names (the reviewer name is a first name and an initial).
        openers: Sentiment (``pos``, ``mid``, ``neg``) -> first sentences of a review.
        aspect_sentences: Sentiment -> sentences about the item's theme and benefit.
        closers: Sentiment -> last sentences; ``""`` adds no sentence.
        summaries: Sentiment -> review summaries (titles).
        rating_probs: Distributions over 1..5 stars (each sums to 1) for a review of the user's favourite brand in
            the category (``loyal``), of another item of a liked category (``taste``) and of anything else
            (``other``); Amazon Beauty reviews are strongly skewed towards 5 stars.
    """

    count_sizes: tuple[str, ...]
    packs: tuple[str, ...]
    categories: dict[str, _Category]
    brands: tuple[str, ...]
    first_names: tuple[str, ...]
    openers: dict[str, tuple[str, ...]]
    aspect_sentences: dict[str, tuple[str, ...]]
    closers: dict[str, tuple[str, ...]]
    summaries: dict[str, tuple[str, ...]]
    rating_probs: dict[str, tuple[float, ...]]


class _VocabularyReader:
    """Checks the parsed vocabulary file piece by piece; every failure is a one-line :class:`DataFormatError`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> DataFormatError:
        return DataFormatError(self.path, f"{where}: {message}")

    def mapping(self, value: object, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict:
        """A JSON object with exactly the ``required`` keys plus any of the ``optional`` ones."""
        required, optional = list(required), list(optional)
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        problems = []
        if missing := [key for key in required if key not in value]:
            problems.append(f"missing keys {missing}")
        if unknown := [key for key in value if key not in required and key not in optional]:
            problems.append(f"unknown keys {unknown}")
        if problems:
            raise self.fail(where, f"{', '.join(problems)}; expected the keys {required + optional}")
        return value

    def named(self, value: object, where: str) -> dict:
        """A non-empty JSON object whose keys are names of the caller's choosing."""
        if not isinstance(value, dict) or not value:
            raise self.fail(where, f"expected a non-empty object, got {value!r}")
        return value

    def number(self, value: object, where: str) -> float:
        """A positive number."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(where, f"expected a positive number, got {value!r}")
        return float(value)

    def text(self, value: object, where: str, placeholders: Iterable[str] = ()) -> str:
        """A string whose ``{placeholders}`` are all among ``placeholders``."""
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {value!r}")
        allowed = set(placeholders)
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise self.fail(where, f"bad template {value!r}: {error}") from None
        if not used <= allowed:
            raise self.fail(where, f"{value!r} uses placeholders {sorted(used - allowed)}; allowed: {sorted(allowed)}")
        return value

    def strings(
        self, value: object, where: str, at_least: int = 1, placeholders: Iterable[str] = ()
    ) -> tuple[str, ...]:
        """A list of at least ``at_least`` strings whose ``{placeholders}`` are all among ``placeholders``."""
        if not isinstance(value, list) or len(value) < at_least or not all(isinstance(s, str) for s in value):
            raise self.fail(where, f"expected a list of at least {at_least} strings, got {value!r}")
        return tuple(self.text(s, where, placeholders) for s in value)

    def templates(self, value: object, where: str) -> dict[str, tuple[str, ...]]:
        """Review templates per sentiment."""
        value = self.mapping(value, where, _SENTIMENTS)
        return {key: self.strings(value[key], f"{where}.{key}", placeholders=_REVIEW_FIELDS) for key in _SENTIMENTS}

    def routine(self, value: object, where: str) -> tuple[tuple[str, str], ...]:
        """An ordered routine: a list of at least ``_MIN_ROUTINE_STEPS`` ``[product noun, leaf category]`` pairs."""
        pairs = isinstance(value, list) and all(
            isinstance(step, list) and len(step) == 2 and all(isinstance(s, str) for s in step) for step in value
        )
        if not pairs or len(value) < _MIN_ROUTINE_STEPS:
            raise self.fail(
                where, f"expected at least {_MIN_ROUTINE_STEPS} [product noun, leaf category] pairs, got {value!r}"
            )
        return tuple((noun, leaf) for noun, leaf in value)

    def category(self, value: object, where: str) -> _Category:
        """One category object, the fields of :class:`_Category`."""
        optional = ("count_sized",)
        required = [field.name for field in fields(_Category) if field.name not in optional]
        value = self.mapping(value, where, required, optional)
        subcategories = {
            name: self.routine(routine, f"{where}.subcategories.{name}")
            for name, routine in self.named(value["subcategories"], f"{where}.subcategories").items()
        }
        count_sized = self.strings(value.get("count_sized", []), f"{where}.count_sized", at_least=0)
        if not set(count_sized) <= set(subcategories):
            raise self.fail(f"{where}.count_sized", f"expected names of subcategories, got {list(count_sized)}")
        return _Category(
            weight=self.number(value["weight"], f"{where}.weight"),
            price=self.number(value["price"], f"{where}.price"),
            aspect=self.text(value["aspect"], f"{where}.aspect"),
            composition=self.text(value["composition"], f"{where}.composition", placeholders=("theme", "other")),
            subcategories=subcategories,
            themes=self.strings(value["themes"], f"{where}.themes", at_least=2),  # a description names two themes
            adjectives=self.strings(value["adjectives"], f"{where}.adjectives"),
            sizes=self.strings(value["sizes"], f"{where}.sizes"),
            benefits=self.strings(value["benefits"], f"{where}.benefits"),
            count_sized=count_sized,
        )

    def rating_probs(self, value: object, where: str) -> dict[str, tuple[float, ...]]:
        """Star distributions per rating profile: five non-negative numbers summing to 1."""
        value = self.mapping(value, where, _RATING_PROFILES)
        for key in _RATING_PROFILES:
            probs = value[key]
            if (
                not isinstance(probs, list)
                or len(probs) != 5
                or not all(not isinstance(p, bool) and isinstance(p, int | float) and p >= 0 for p in probs)
                or abs(sum(probs) - 1) > 1e-6
            ):
                raise self.fail(f"{where}.{key}", f"expected 5 non-negative numbers summing to 1, got {probs!r}")
        return {key: tuple(float(p) for p in value[key]) for key in _RATING_PROFILES}


def _load_vocabulary(path: Path) -> _Vocabulary:
    """Reads and checks the generator's vocabulary file (see :class:`_Vocabulary` for its contents).

    The order of every list and object in the file matters: the generator draws from them by index, so reordering,
    adding or removing an entry changes the output of every seed.

    Args:
        path: The JSON file, normally :data:`VOCABULARY_PATH` beside this script.

    Returns:
        The vocabulary.

    Raises:
        DataFormatError: If the file is missing, is not JSON or does not have the expected shape; the one-line
            message names the file and the offending key.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "file not found (the vocabulary of synthetic.py must lie beside it)") from None
    except json.JSONDecodeError as error:
        raise DataFormatError(path, f"not valid JSON: {error.msg} (column {error.colno})", line=error.lineno) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"cannot read the vocabulary: {error}") from None
    reader = _VocabularyReader(path)
    raw = reader.mapping(raw, "top level", [field.name for field in fields(_Vocabulary)])
    categories = {
        name: reader.category(value, f"categories.{name}")
        for name, value in reader.named(raw["categories"], "categories").items()
    }
    return _Vocabulary(
        count_sizes=reader.strings(raw["count_sizes"], "count_sizes"),
        packs=reader.strings(raw["packs"], "packs"),
        categories=categories,
        brands=reader.strings(raw["brands"], "brands", at_least=len(categories)),
        first_names=reader.strings(raw["first_names"], "first_names"),
        openers=reader.templates(raw["openers"], "openers"),
        aspect_sentences=reader.templates(raw["aspect_sentences"], "aspect_sentences"),
        closers=reader.templates(raw["closers"], "closers"),
        summaries=reader.templates(raw["summaries"], "summaries"),
        rating_probs=reader.rating_probs(raw["rating_probs"], "rating_probs"),
    )


_VOCABULARY = _load_vocabulary(VOCABULARY_PATH)
_COUNT_SIZES = _VOCABULARY.count_sizes
_PACKS = _VOCABULARY.packs
CATALOG: dict[str, _Category] = _VOCABULARY.categories
BRANDS = _VOCABULARY.brands
_FIRST_NAMES = _VOCABULARY.first_names
_OPENERS = _VOCABULARY.openers
_ASPECT_SENTENCES = _VOCABULARY.aspect_sentences
_CLOSERS = _VOCABULARY.closers
_SUMMARIES = _VOCABULARY.summaries
_RATING_PROBS = _VOCABULARY.rating_probs


@dataclass
class _Item:
    """One catalog item; ``line`` and ``position`` place its family in its product-line routine, ``size`` and
    ``pack`` tell it from the other variants of that family."""

    asin: str
    category: str
    subcategory: str
    noun: str
    leaf: str
    brand: str
    theme: str
    adjective: str
    size: str
    pack: str
    line: int
    position: int


@dataclass
class _Line:
    """A brand product line: an ordered routine of steps sharing brand, theme and adjective; each step is a family
    of interchangeable variants (``steps[position]``: its item indices), ``items`` all of them in routine order."""

    category: str
    subcategory: str
    brand: str
    steps: list[list[int]]
    next_line: int = -1

    @property
    def items(self) -> list[int]:
        return [item for family in self.steps for item in family]


@dataclass
class _User:
    """Latent preferences of one user: one or two liked categories and a favourite brand in each."""

    reviewer_id: str
    name: str
    categories: list[str]
    primary_weight: float
    favourite_brands: dict[str, str]


class _Sampler:
    """Weighted sampling from a fixed item list by inverse CDF on a shared generator."""

    def __init__(self, items: Sequence[int], weights: np.ndarray, rng: np.random.Generator) -> None:
        self.items = list(items)
        cumulative = np.cumsum(weights)
        self.cdf = (cumulative / cumulative[-1]).tolist()
        self.rng = rng

    def __call__(self) -> int:
        # bisect on a Python list is much faster than numpy for one scalar draw at a time.
        index = bisect.bisect_right(self.cdf, self.rng.random())
        return self.items[min(index, len(self.items) - 1)]


def _random_ids(rng: np.random.Generator, count: int, prefix: str, length: int) -> list[str]:
    """Draws ``count`` distinct uppercase alphanumeric identifiers of total ``length`` starting with ``prefix``."""
    ids: list[str] = []
    taken: set[str] = set()
    while len(ids) < count:
        codes = rng.integers(0, len(_ID_ALPHABET), size=length - len(prefix))
        candidate = prefix + "".join(_ID_ALPHABET[c] for c in codes)
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """Uniformly picks one element of ``options``."""
    return options[int(rng.integers(len(options)))]


def _build_catalog(rng: np.random.Generator, num_items: int) -> tuple[list[_Item], list[_Line]]:
    """Builds the item catalog as brand product lines whose steps follow the subcategory's routine order, each step a
    family of variants (size and pack) of one product.

    Args:
        rng: Random generator.
        num_items: Exact number of items to create.

    Returns:
        The items (indexed by position in the list) and the product lines.
    """
    category_names = list(CATALOG)
    brands_by_category: dict[str, list[str]] = {name: [] for name in category_names}
    # Round-robin primary categories guarantee every category several brands; some brands also cover a second one.
    for rank, brand_index in enumerate(rng.permutation(len(BRANDS))):
        brand = BRANDS[brand_index]
        primary = rank % len(category_names)
        brands_by_category[category_names[primary]].append(brand)
        if rng.random() < 0.4:
            secondary = (primary + 1 + int(rng.integers(len(category_names) - 1))) % len(category_names)
            brands_by_category[category_names[secondary]].append(brand)
    weights = np.array([CATALOG[name].weight for name in category_names])
    category_sampler = _Sampler(range(len(category_names)), weights, rng)

    items: list[_Item] = []
    lines: list[_Line] = []
    used_names: set[tuple[str, str, str, str]] = set()
    while len(items) < num_items:
        category_name = category_names[category_sampler()]
        category = CATALOG[category_name]
        subcategory = _pick(rng, list(category.subcategories))
        routine = category.subcategories[subcategory]
        brand = _pick(rng, brands_by_category[category_name])
        # Distinct line names keep titles unique; a few retries suffice because the name space is large.
        for _ in range(10):
            theme, adjective = _pick(rng, category.themes), _pick(rng, category.adjectives)
            if (brand, subcategory, theme, adjective) not in used_names:
                break
        used_names.add((brand, subcategory, theme, adjective))
        length = int(rng.integers(3, len(routine) + 1))
        start = int(rng.integers(0, len(routine) - length + 1))
        sizes = _COUNT_SIZES if subcategory in category.count_sized else category.sizes
        # Variants differ only in size and pack, and their titles say so: interchangeable for the next step.
        variants = [(size, pack) for pack in _PACKS for size in sizes]
        line = _Line(category=category_name, subcategory=subcategory, brand=brand, steps=[])
        for position, (noun, leaf) in enumerate(routine[start : start + length]):
            if len(items) == num_items:
                break
            num_variants = min(int(rng.integers(FAMILY_SIZES[0], FAMILY_SIZES[1] + 1)), len(variants),
                               num_items - len(items))
            family = []
            for variant in rng.choice(len(variants), size=num_variants, replace=False):
                size, pack = variants[int(variant)]
                family.append(len(items))
                items.append(
                    _Item(
                        asin="",
                        category=category_name,
                        subcategory=subcategory,
                        noun=noun,
                        leaf=leaf,
                        brand=brand,
                        theme=theme,
                        adjective=adjective,
                        size=size,
                        pack=pack,
                        line=len(lines),
                        position=position,
                    )
                )
            line.steps.append(family)
        lines.append(line)

    # After finishing a routine, users move on to a related line: same brand and category, else same subcategory.
    for index, line in enumerate(lines):
        same_brand = [
            j
            for j, other in enumerate(lines)
            if j != index and other.brand == line.brand and other.category == line.category
        ]
        same_sub = [
            j
            for j, other in enumerate(lines)
            if j != index and other.category == line.category and other.subcategory == line.subcategory
        ]
        same_category = [j for j, other in enumerate(lines) if j != index and other.category == line.category]
        candidates = same_brand or same_sub or same_category or [index]
        line.next_line = candidates[int(rng.integers(len(candidates)))]

    # Random (not sorted) ASINs so that ASIN order, which ID mappings often follow, does not reveal the product lines.
    for item, asin in zip(items, _random_ids(rng, len(items), "B00", 10), strict=True):
        item.asin = asin
    return items, lines


class _Simulator:
    """Next-item process mixing routine following, user taste and a Zipf popularity prior."""

    def __init__(self, rng: np.random.Generator, items: list[_Item], lines: list[_Line]) -> None:
        self.rng = rng
        self.items = items
        self.lines = lines
        # Popularity ranks are shuffled so that popularity is independent of catalog position.
        self.popularity = 1.0 / (rng.permutation(len(items)) + 1.0)
        self.global_sampler = _Sampler(range(len(items)), self.popularity, rng)
        by_category: dict[str, list[int]] = defaultdict(list)
        by_brand: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            by_category[item.category].append(index)
            by_brand[(item.category, item.brand)].append(index)
        self.category_samplers = {name: self._within_category(ids) for name, ids in by_category.items()}
        self.brand_samplers = {key: self._within_category(ids) for key, ids in by_brand.items()}
        self.brands_in_category: dict[str, list[str]] = defaultdict(list)
        for category_name, brand in by_brand:
            self.brands_in_category[category_name].append(brand)
        # Small catalogs may leave a category empty; users can only like categories that have items.
        self.category_names = [name for name in CATALOG if name in by_category]
        # Within a family, variants have Zipf-distributed shares (1, 1/2, 1/3, ... in a random order).
        self.family_samplers = {
            (line_index, position): _Sampler(family, 1.0 / (rng.permutation(len(family)) + 1.0), rng)
            for line_index, line in enumerate(lines)
            for position, family in enumerate(line.steps)
        }
        weights = np.array([CATALOG[name].weight for name in self.category_names])
        self.category_probs = weights / weights.sum()

    def _within_category(self, ids: list[int]) -> _Sampler:
        # Taste picks mostly start a new routine, hence the boost of line heads; sqrt flattens the Zipf prior.
        heads = np.array([2.0 if self.items[i].position == 0 else 1.0 for i in ids])
        return _Sampler(ids, np.sqrt(self.popularity[ids]) * heads, self.rng)

    def new_user(self, reviewer_id: str) -> _User:
        """Draws the latent preferences and display name of a user."""
        rng = self.rng
        num_categories = 2 if len(self.category_names) > 1 and rng.random() < 0.5 else 1
        chosen = rng.choice(len(self.category_names), size=num_categories, replace=False, p=self.category_probs)
        categories = [self.category_names[c] for c in chosen]
        primary_weight = float(rng.uniform(0.55, 0.85)) if num_categories == 2 else 1.0
        # Real reviewer names are mostly "First L." with a sprinkling of the Amazon default name.
        if rng.random() < 0.05:
            name = "Amazon Customer"
        else:
            name = f"{_pick(rng, _FIRST_NAMES)} {_pick(rng, _ID_ALPHABET[10:])}."
        return _User(
            reviewer_id=reviewer_id,
            name=name,
            categories=categories,
            primary_weight=primary_weight,
            favourite_brands={c: _pick(rng, self.brands_in_category[c]) for c in categories},
        )

    def sequence(self, user: _User, length: int) -> list[int]:
        """Simulates a chronological sequence of ``length`` distinct items for ``user``."""
        seen: set[int] = set()
        sequence = [self._taste_pick(user, seen)]
        seen.add(sequence[0])
        while len(sequence) < length:
            sequence.append(self._next_item(user, sequence[-1], seen))
            seen.add(sequence[-1])
        return sequence

    def _unseen(self, sampler: _Sampler, seen: set[int], tries: int = 20) -> int | None:
        """Draws from ``sampler`` until an item outside ``seen`` comes up, giving up after ``tries`` draws."""
        for _ in range(tries):
            candidate = sampler()
            if candidate not in seen:
                return candidate
        return None

    def _taste_pick(self, user: _User, seen: set[int]) -> int:
        """Picks an unseen item of one of the user's categories, often of the favourite brand."""
        rng = self.rng
        category_name = user.categories[0] if rng.random() < user.primary_weight else user.categories[-1]
        if rng.random() < BRAND_LOYALTY:
            sampler = self.brand_samplers[(category_name, user.favourite_brands[category_name])]
        else:
            sampler = self.category_samplers[category_name]
        choice = self._unseen(sampler, seen)
        if choice is None:
            choice = self._unseen(self.category_samplers[category_name], seen)
        if choice is None:
            rest = [i for i in range(len(self.items)) if i not in seen]
            choice = rest[int(rng.integers(len(rest)))]
        return choice

    def _next_item(self, user: _User, current: int, seen: set[int]) -> int:
        """Picks the item following ``current``: routine successor, popularity noise or a taste pick."""
        rng = self.rng
        draw = rng.random()
        if draw < FOLLOW_PROB:
            # The next step depends on the current family, not on which of its variants was bought.
            line_index, position = self.items[current].line, self.items[current].position
            line = self.lines[line_index]
            others = [p for p in range(len(line.steps)) if p != position]
            if rng.random() < SUCCESSOR_FIDELITY or not others:
                if position + 1 < len(line.steps):
                    step = (line_index, position + 1)
                else:
                    step = (line.next_line, 0)
            else:
                step = (line_index, others[int(rng.integers(len(others)))])
            candidate = self._unseen(self.family_samplers[step], seen)
            if candidate is not None:
                return candidate
            # The routine step was already reviewed: staying on the product line keeps the semantic link.
            fresh = [i for i in line.items if i not in seen and self.items[i].position != position]
            if fresh:
                return fresh[int(rng.integers(len(fresh)))]
        elif draw < FOLLOW_PROB + POPULARITY_PROB:
            choice = self._unseen(self.global_sampler, seen)
            if choice is not None:
                return choice
        return self._taste_pick(user, seen)


def _simulate_sequences(
    rng: np.random.Generator, items: list[_Item], lines: list[_Line], num_users: int
) -> tuple[list[_User], list[list[int]]]:
    """Simulates each user's chronological item sequence.

    Args:
        rng: Random generator.
        items: Catalog items.
        lines: Product lines of the catalog.
        num_users: Number of users to simulate.

    Returns:
        The users and their item sequences (no repeated item within a user).
    """
    simulator = _Simulator(rng, items, lines)
    max_length = min(MAX_SEQUENCE_LENGTH, len(items) // 2)
    users: list[_User] = []
    sequences: list[list[int]] = []
    for reviewer_id in _random_ids(rng, num_users, "A", 14):
        user = simulator.new_user(reviewer_id)
        length = min(MIN_INTERACTIONS + int(rng.geometric(1.0 / (MEAN_EXTRA_LENGTH + 1))) - 1, max_length)
        users.append(user)
        sequences.append(simulator.sequence(user, length))
    return users, sequences


def _repair_five_core(
    rng: np.random.Generator, items: list[_Item], users: list[_User], sequences: list[list[int]]
) -> None:
    """Adds interactions for items below the k-core threshold, preferring users whose taste covers the item.

    Insertions only ever add interactions and never at the last position, so every user keeps at least
    ``MIN_INTERACTIONS`` events and the held-out last item stays a product of the sequential process.

    Args:
        rng: Random generator.
        items: Catalog items.
        users: Users with their tastes.
        sequences: Item sequences, modified in place.
    """
    counts = Counter(i for sequence in sequences for i in sequence)
    seen = [set(sequence) for sequence in sequences]
    for item_index, item in enumerate(items):
        deficit = MIN_INTERACTIONS - counts[item_index]
        if deficit <= 0:
            continue
        pool = [u for u, user in enumerate(users) if item_index not in seen[u] and item.category in user.categories]
        if len(pool) < deficit:
            pool = [u for u in range(len(users)) if item_index not in seen[u]]
        for user_index in rng.choice(pool, size=deficit, replace=False):
            sequence = sequences[user_index]
            sequence.insert(int(rng.integers(0, len(sequence))), item_index)
            seen[user_index].add(item_index)


def _review_days(rng: np.random.Generator, length: int) -> list[int]:
    """Draws non-decreasing review days (days since the epoch) for one user's sequence."""
    gaps = np.where(rng.random(length - 1) < SAME_DAY_PROB, 0, rng.geometric(1.0 / MEAN_GAP_DAYS, size=length - 1))
    available = _LAST_DAY - _FIRST_DAY
    span = int(gaps.sum())
    # Very long histories are compressed so that every review falls inside the 2010-2014 window.
    if span > available:
        gaps = np.floor(gaps * (available / span)).astype(np.int64)
        span = int(gaps.sum())
    start = _FIRST_DAY + int(rng.integers(0, available - span + 1))
    return [start, *(start + np.cumsum(gaps)).tolist()]


def _sentiment(rating: float) -> str:
    """Maps a star rating to the sentiment bucket used by the text templates."""
    return "pos" if rating >= 4 else "mid" if rating == 3 else "neg"


def _review_text(item: _Item, rating: float, draws: np.ndarray, previous: _Item | None) -> tuple[str, str]:
    """Builds the review text and summary of one review from templates and pre-drawn uniforms.

    Args:
        item: Reviewed item.
        rating: Star rating, which sets the tone.
        draws: Uniform numbers in [0, 1) consumed by the template choices.
        previous: The routine predecessor of the item, mentioned in some positive reviews.

    Returns:
        The review text and the summary.
    """
    sentiment = _sentiment(rating)
    category = CATALOG[item.category]

    def choose(options: Sequence[str], draw: float) -> str:
        return options[int(draw * len(options))]

    fields = {
        "noun": item.noun.lower(),
        "brand": item.brand,
        "theme": item.theme,
        "aspect": category.aspect,
        "benefit": choose(category.benefits, draws[0]),
    }
    sentences = [choose(_OPENERS[sentiment], draws[1]), choose(_ASPECT_SENTENCES[sentiment], draws[2])]
    if previous is not None and sentiment == "pos" and draws[3] < 0.5:
        sentences.append(f"I use it after the {previous.noun.lower()} from the same line.")
    sentences.append(f"I have been using it for {1 + int(draws[4] * 12)} weeks.")
    sentences.append(choose(_CLOSERS[sentiment], draws[5]))
    text = " ".join(s.format(**fields) for s in sentences if s)
    return text, choose(_SUMMARIES[sentiment], draws[6]).format(**fields)


def _review_rows(
    rng: np.random.Generator, items: list[_Item], lines: list[_Line], users: list[_User], sequences: list[list[int]]
) -> tuple[list[dict[str, object]], int]:
    """Builds the review records in the 2014 format, grouped by asin, including a few exact duplicates.

    Args:
        rng: Random generator.
        items: Catalog items.
        lines: Product lines of the catalog.
        users: Users with their tastes.
        sequences: Item sequences in chronological order.

    Returns:
        The records in file order and the number of duplicate records among them.
    """
    events = [
        (u, item, day)
        for u, sequence in enumerate(sequences)
        for item, day in zip(sequence, _review_days(rng, len(sequence)), strict=True)
    ]
    num_events = len(events)
    draws = rng.random((num_events, 8))
    helpful_total = np.where(rng.random(num_events) < 0.3, rng.geometric(0.35, size=num_events), 0)
    helpful_yes = rng.binomial(helpful_total, 0.75)
    cdfs = {key: np.cumsum(probs).tolist() for key, probs in _RATING_PROBS.items()}

    records: list[dict[str, object]] = []
    for index, (user_index, item_index, day) in enumerate(events):
        user, item = users[user_index], items[item_index]
        if user.favourite_brands.get(item.category) == item.brand:
            profile = "loyal"
        elif item.category in user.categories:
            profile = "taste"
        else:
            profile = "other"
        rating = float(1 + min(bisect.bisect_right(cdfs[profile], draws[index, 7]), 4))
        line = lines[item.line]
        previous = items[line.steps[item.position - 1][0]] if item.position > 0 else None
        text, summary = _review_text(item, rating, draws[index], previous)
        date = _EPOCH + dt.timedelta(days=day)
        records.append(
            {
                "reviewerID": user.reviewer_id,
                "asin": item.asin,
                "reviewerName": user.name,
                "helpful": [int(helpful_yes[index]), int(helpful_total[index])],
                "reviewText": text,
                "overall": rating,
                "summary": summary,
                "unixReviewTime": day * _SECONDS_PER_DAY,
                "reviewTime": f"{date.month:02d} {date.day}, {date.year}",
            }
        )

    num_duplicates = max(1, round(DUPLICATE_RATE * num_events))
    duplicated = rng.choice(num_events, size=num_duplicates, replace=False)
    records.extend(dict(records[int(i)]) for i in np.sort(duplicated))
    records.sort(key=lambda r: (r["asin"], r["reviewerID"], r["unixReviewTime"]))
    return records, num_duplicates


def _meta_rows(
    rng: np.random.Generator, items: list[_Item], lines: list[_Line], interaction_counts: Counter[int]
) -> list[dict[str, object]]:
    """Builds the item metadata records in the 2014 format, with realistic missing fields.

    Args:
        rng: Random generator.
        items: Catalog items.
        lines: Product lines of the catalog.
        interaction_counts: Number of interactions per item index, which drives the sales rank.

    Returns:
        One record per item, in asin order.
    """
    num_items = len(items)
    # Exact missing counts (not Bernoulli draws) keep the gap fractions stable even for tiny catalogs.
    missing = {
        field: set(rng.permutation(num_items)[: max(1, round(fraction * num_items))].tolist())
        for field, fraction in MISSING_FRACTIONS.items()
    }
    # Best sellers get the smallest sales ranks; the noise keeps the ranking only loosely tied to the review counts.
    noisy_counts = np.array([interaction_counts[i] for i in range(num_items)]) * rng.lognormal(0.0, 0.3, num_items)
    rank_values = np.sort(rng.integers(50, 400_000, size=num_items))
    sales_rank = np.empty(num_items, dtype=np.int64)
    sales_rank[np.argsort(-noisy_counts, kind="stable")] = rank_values
    by_subcategory: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_subcategory[(item.category, item.subcategory)].append(index)

    records: list[dict[str, object]] = []
    for index, item in enumerate(items):
        category = CATALOG[item.category]
        line = lines[item.line]
        parts = (item.brand, item.theme, item.adjective, item.noun, item.size, item.pack)
        title = " ".join(part for part in parts if part)
        other = _pick(rng, [t for t in category.themes if t != item.theme])
        description = (
            f"{item.adjective} {item.noun.lower()} from the {item.brand} {item.theme} line. "
            f"{category.composition.format(theme=item.theme, other=other)} Designed to {_pick(rng, category.benefits)}."
        )
        if item.position > 0:
            description += f" Use after the {items[line.steps[item.position - 1][0]].noun.lower()} for best results."
        neighbours = [i for i in by_subcategory[(item.category, item.subcategory)] if items[i].line != item.line]
        extra = rng.permutation(neighbours)[:3].tolist() if neighbours else []
        also_bought = [i for i in line.items if i != index] + [lines[line.next_line].items[0]] + extra
        record: dict[str, object] = {"asin": item.asin}
        if index not in missing["title"]:
            record["title"] = title
        if index not in missing["brand"]:
            record["brand"] = item.brand
        record["categories"] = [["Beauty", item.category, item.subcategory, item.leaf]]
        if index not in missing["price"]:
            record["price"] = round(float(rng.lognormal(np.log(category.price), 0.4)), 2)
        if index not in missing["description"]:
            record["description"] = description
        record["salesRank"] = {"Beauty": int(sales_rank[index])}
        record["related"] = {"also_bought": list(dict.fromkeys(items[i].asin for i in also_bought if i != index))}
        records.append(record)
    return sorted(records, key=lambda record: record["asin"])


def _check_five_core(records: Iterable[dict[str, object]], num_users: int, num_items: int) -> int:
    """Checks that the deduplicated interactions form a k-core with the expected user and item counts.

    Args:
        records: Review records as written.
        num_users: Expected number of users.
        num_items: Expected number of items.

    Returns:
        Number of interactions after dropping exact (reviewerID, asin, unixReviewTime) duplicates.

    Raises:
        RuntimeError: If the data is not a k-core or the counts are off.
    """
    unique = {(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in records}
    user_counts = Counter(key[0] for key in unique)
    item_counts = Counter(key[1] for key in unique)
    if len(user_counts) != num_users or len(item_counts) != num_items:
        raise RuntimeError(
            f"expected {num_users} users / {num_items} items, got {len(user_counts)} / {len(item_counts)}"
        )
    if min(user_counts.values()) < MIN_INTERACTIONS or min(item_counts.values()) < MIN_INTERACTIONS:
        raise RuntimeError(f"synthetic data is not {MIN_INTERACTIONS}-core")
    return len(unique)


def _write_gzip_atomic(path: Path, lines: Iterable[str]) -> None:
    """Writes text lines to a gzip file with a fixed header mtime, atomically (temporary file, then rename)."""
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    # mtime=0 and no embedded file name make the compressed bytes depend on the content only.
    compressed = gzip.compress(payload, compresslevel=9, mtime=0)
    atomic_write(path, lambda tmp: tmp.write_bytes(compressed))


def generate(
    out_dir: str | os.PathLike[str],
    num_users: int = DEFAULT_NUM_USERS,
    num_items: int = DEFAULT_NUM_ITEMS,
    seed: int = 0,
) -> dict[str, int | Path]:
    """Generates the synthetic reviews and metadata files.

    The output depends only on the arguments (and the numpy / zlib versions): the same seed gives byte-identical files.

    Args:
        out_dir: Directory to write the files into; created if missing.
        num_users: Number of users (reviewers).
        num_items: Number of items; every item ends up with at least ``MIN_INTERACTIONS`` interactions.
        seed: Seed of the random generator.

    Returns:
        A dict with ``users``, ``items``, ``interactions`` (after dropping exact duplicates), ``duplicates`` (extra
        duplicate rows), ``rows`` (lines in the reviews file), ``reviews_path`` and ``meta_path``.

    Raises:
        ValueError: If the requested sizes are too small to form a 5-core.
    """
    if num_users < 2 * MIN_INTERACTIONS or num_items < 4 * MIN_INTERACTIONS:
        raise ValueError(
            f"need at least {2 * MIN_INTERACTIONS} users and {4 * MIN_INTERACTIONS} items, "
            f"got {num_users} users and {num_items} items"
        )
    rng = np.random.default_rng(seed)
    items, lines = _build_catalog(rng, num_items)
    users, sequences = _simulate_sequences(rng, items, lines, num_users)
    _repair_five_core(rng, items, users, sequences)
    reviews, num_duplicates = _review_rows(rng, items, lines, users, sequences)
    interactions = _check_five_core(reviews, num_users, num_items)
    meta = _meta_rows(rng, items, lines, Counter(i for sequence in sequences for i in sequence))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reviews_path, meta_path = out / REVIEWS_FILENAME, out / META_FILENAME
    _write_gzip_atomic(reviews_path, (json.dumps(record) for record in reviews))
    # The 2014 metadata files are Python literals (single quotes), not JSON; repr reproduces that.
    _write_gzip_atomic(meta_path, (repr(record) for record in meta))
    return {
        "users": num_users,
        "items": num_items,
        "interactions": interactions,
        "duplicates": num_duplicates,
        "rows": len(reviews),
        "reviews_path": reviews_path,
        "meta_path": meta_path,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory")
    parser.add_argument("--users", type=int, default=DEFAULT_NUM_USERS, help="number of users")
    parser.add_argument("--items", type=int, default=DEFAULT_NUM_ITEMS, help="number of items")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    stats = generate(args.out, num_users=args.users, num_items=args.items, seed=args.seed)
    print(f"Wrote {stats['reviews_path']} and {stats['meta_path']}")
    print(
        f"users={stats['users']} items={stats['items']} interactions={stats['interactions']} "
        f"duplicates={stats['duplicates']} rows={stats['rows']}"
    )


if __name__ == "__main__":
    main()
