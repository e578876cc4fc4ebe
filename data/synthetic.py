"""Deterministic generator of a small Amazon-2014-style Beauty dataset.

This is the project's embedded default dataset. It writes two files in exactly the formats of the McAuley 2014 Amazon
dumps, so the real preprocessing code path is exercised end to end:

* ``reviews_Synthetic_5.json.gz``: one JSON review per line, grouped by ``asin`` like the real files, with
  day-resolution timestamps (same-day ties occur) and a few exact duplicate rows, as in the real files.
* ``meta_Synthetic.json.gz``: one item per line as a Python literal dict (``ast.literal_eval``, not ``json.loads``),
  with realistic gaps in ``title``, ``brand``, ``price`` and ``description``.

The data has real structure. Items belong to a category / subcategory catalog and are organised into brand "product
lines" whose products form an ordered routine (cleanser -> toner -> serum -> ...). Titles and descriptions are built
from the same category vocabulary and share the line's brand, theme and adjective, so text similarity mirrors the
catalog. Users have a taste over one or two categories and a favourite brand per category; their next item usually
follows the routine of the current item, otherwise comes from their taste or, rarely, from a Zipf popularity prior. As
a result a "most frequent successor of the last item" predictor clearly beats global popularity, and semantically
related items are also behaviourally related. The output is already 5-core (every user and item has at least 5
interactions after dropping exact duplicates); this is enforced by a repair step and checked before writing.

Usage::

    python data/synthetic.py [--out DIR] [--users N] [--items N] [--seed S]
"""

import argparse
import bisect
import datetime as dt
import gzip
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sracl_lightning.atomic import atomic_write

REVIEWS_FILENAME = "reviews_Synthetic_5.json.gz"
META_FILENAME = "meta_Synthetic.json.gz"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "raw" / "synthetic"
DEFAULT_NUM_USERS = 2500
DEFAULT_NUM_ITEMS = 800

MIN_INTERACTIONS = 5  # k of the k-core the output satisfies.
MEAN_EXTRA_LENGTH = 5  # Sequence length is MIN_INTERACTIONS + Geometric - 1, giving a mean of about 10.
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


_COUNT_SIZES = ("1 Count", "2 Count", "Set of 3", "")


def _words(text: str) -> tuple[str, ...]:
    """Splits a comma-separated vocabulary string, which keeps the catalog below compact."""
    return tuple(word.strip() for word in text.split(","))


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


CATALOG: dict[str, _Category] = {
    "Skin Care": _Category(
        weight=1.6,
        price=19.0,
        aspect="texture",
        composition="Formulated with {theme} and {other}.",
        subcategories={
            "Face": (
                ("Foaming Face Cleanser", "Cleansers"),
                ("Facial Toner", "Toners"),
                ("Face Serum", "Serums"),
                ("Face Moisturizer", "Moisturizers"),
                ("Eye Cream", "Eye Treatments"),
            ),
            "Sun Care": (
                ("Sunscreen Lotion", "Sunscreens"),
                ("Sunscreen Stick", "Sunscreens"),
                ("After-Sun Gel", "After Sun"),
                ("Tinted Day Moisturizer", "Moisturizers"),
            ),
            "Masks & Treatments": (
                ("Exfoliating Face Scrub", "Exfoliators"),
                ("Clay Mask", "Masks"),
                ("Spot Treatment", "Acne Treatments"),
                ("Overnight Mask", "Masks"),
            ),
        },
        themes=_words(
            "Lavender, Rose, Vitamin C, Hyaluronic Acid, Tea Tree, Green Tea, Aloe, Charcoal, Cucumber, Retinol"
        ),
        adjectives=_words(
            "Hydrating, Brightening, Soothing, Clarifying, Firming, Gentle, Renewing, Balancing, Oil-Free"
        ),
        sizes=_words("1 fl oz, 1.7 fl oz, 4 fl oz, 2 oz"),
        benefits=_words(
            "restore moisture, even out skin tone, calm redness, minimize the look of pores, smooth fine lines"
        ),
    ),
    "Hair Care": _Category(
        weight=1.2,
        price=12.0,
        aspect="formula",
        composition="Infused with {theme} and {other}.",
        subcategories={
            "Shampoo & Conditioner": (
                ("Shampoo", "Shampoos"),
                ("Conditioner", "Conditioners"),
                ("Leave-In Conditioner", "Conditioners"),
                ("Hair Mask", "Treatments"),
            ),
            "Styling Products": (
                ("Heat Protectant Spray", "Sprays"),
                ("Volumizing Mousse", "Mousses & Foams"),
                ("Styling Cream", "Creams"),
                ("Finishing Hairspray", "Hairsprays"),
            ),
            "Hair Color": (
                ("Permanent Hair Color Kit", "Hair Color"),
                ("Color Protect Shampoo", "Shampoos"),
                ("Color Gloss Treatment", "Treatments"),
                ("Root Touch-Up Spray", "Root Touch Up"),
            ),
        },
        themes=_words(
            "Argan Oil, Coconut, Keratin, Biotin, Tea Tree, Rosemary, Mint, Avocado, Silk Protein, Macadamia"
        ),
        adjectives=_words("Smoothing, Volumizing, Repairing, Moisturizing, Clarifying, Curl-Defining, Strengthening"),
        sizes=_words("8 fl oz, 12 fl oz, 16 fl oz, 33.8 fl oz"),
        benefits=_words(
            "tame frizz, add body and shine, repair split ends, protect color from fading, strengthen strands"
        ),
    ),
    "Makeup": _Category(
        weight=1.4,
        price=14.0,
        aspect="shade",
        composition="Shown in {theme} with {other} undertones.",
        subcategories={
            "Face": (
                ("Face Primer", "Face Primers"),
                ("Liquid Foundation", "Foundation"),
                ("Concealer", "Concealers & Neutralizers"),
                ("Setting Powder", "Powder"),
                ("Blush", "Blush"),
            ),
            "Eyes": (
                ("Eyeshadow Primer", "Eyeshadow Bases & Primers"),
                ("Eyeshadow Palette", "Eyeshadow"),
                ("Eyeliner", "Eyeliner"),
                ("Mascara", "Mascara"),
                ("Brow Pencil", "Brow Color"),
            ),
            "Lips": (
                ("Lip Scrub", "Lip Treatments"),
                ("Lip Liner", "Lip Liners"),
                ("Matte Lipstick", "Lipstick"),
                ("Lip Gloss", "Lip Glosses"),
            ),
        },
        themes=_words("Nude, Rose, Berry, Coral, Mocha, Plum, Bronze, Ivory, Champagne, Cherry"),
        adjectives=_words("Long-Wear, Matte, Dewy, Waterproof, Lightweight, Full-Coverage, Shimmer, Velvet, Sheer"),
        sizes=_words("0.1 oz, 0.17 oz, 0.3 oz, 1 fl oz"),
        benefits=_words(
            "last all day without fading, blend seamlessly, build coverage without caking, resist humidity"
        ),
    ),
    "Fragrance": _Category(
        weight=0.9,
        price=42.0,
        aspect="scent",
        composition="Opens with {theme} over a heart of {other}.",
        subcategories={
            "Women's": (
                ("Eau de Parfum Spray", "Eau de Parfum"),
                ("Rollerball Perfume", "Rollerballs"),
                ("Body Mist", "Body Sprays"),
                ("Perfumed Body Lotion", "Body Lotions"),
            ),
            "Men's": (
                ("Eau de Toilette Spray", "Eau de Toilette"),
                ("Cologne", "Cologne"),
                ("Aftershave Splash", "After Shave"),
                ("Deodorant Stick", "Deodorants"),
            ),
            "Unisex": (
                ("Eau de Cologne", "Cologne"),
                ("Fragrance Oil", "Fragrance Oils"),
                ("Solid Perfume", "Solid Perfume"),
                ("Hair Mist", "Hair Perfumes"),
            ),
        },
        themes=_words("Vanilla, Jasmine, Sandalwood, Citrus, Amber, Peony, Oud, Bergamot, Musk, Cedarwood, Gardenia"),
        adjectives=_words("Warm, Fresh, Floral, Woody, Sparkling, Oriental, Sheer, Intense, Classic"),
        sizes=_words("1 fl oz, 1.7 fl oz, 3.4 fl oz, 0.33 fl oz"),
        benefits=_words("linger from morning to night, layer beautifully with other scents, leave a soft trail"),
    ),
    "Bath & Body": _Category(
        weight=1.1,
        price=9.0,
        aspect="scent",
        composition="Made with {theme} and {other}.",
        subcategories={
            "Cleansers": (
                ("Body Wash", "Body Washes"),
                ("Bar Soap", "Soaps"),
                ("Bubble Bath", "Bubble Bath"),
                ("Bath Bomb", "Bath Bombs"),
            ),
            "Body Moisturizers": (
                ("Body Scrub", "Scrubs & Body Treatments"),
                ("Body Lotion", "Lotions"),
                ("Body Butter", "Body Butters"),
                ("Dry Body Oil", "Body Oils"),
            ),
            "Hand & Foot Care": (
                ("Hand Soap", "Hand Soaps"),
                ("Hand Cream", "Hand Creams"),
                ("Foot Scrub", "Foot Care"),
                ("Foot Cream", "Foot Care"),
            ),
        },
        themes=_words("Coconut, Shea Butter, Lavender, Eucalyptus, Oatmeal, Honey, Cherry Blossom, Sea Salt, Mango"),
        adjectives=_words("Nourishing, Creamy, Refreshing, Relaxing, Moisturizing, Exfoliating, Gentle, Rich, Whipped"),
        sizes=_words("3.4 fl oz, 8 fl oz, 10 fl oz, 16 fl oz, 4 oz"),
        benefits=_words("leave skin soft and smooth, lock in moisture, relax after a long day, buff away dry patches"),
    ),
    "Nail": _Category(
        weight=0.7,
        price=8.0,
        aspect="finish",
        composition="Finished in {theme} with a hint of {other}.",
        subcategories={
            "Nail Polish": (
                ("Base Coat", "Base Coat"),
                ("Nail Polish", "Nail Polish"),
                ("Gel Top Coat", "Top Coat"),
                ("Quick-Dry Drops", "Nail Dryers"),
            ),
            "Nail Care": (
                ("Cuticle Remover", "Cuticle Care"),
                ("Cuticle Oil", "Cuticle Care"),
                ("Nail Strengthener", "Nail Treatments"),
                ("Polish Remover", "Polish Remover"),
            ),
            "Nail Tools": (
                ("Glass Nail File", "Nail Files"),
                ("Nail Buffer Block", "Buffers"),
                ("Cuticle Pusher", "Cuticle Tools"),
                ("Nail Clipper", "Nail Clippers"),
            ),
        },
        themes=_words("Ruby, Coral, Lilac, Nude, Midnight, Mint, Blush, Crimson, Pearl, Almond"),
        adjectives=_words(
            "Chip-Resistant, Glossy, Quick-Dry, Long-Lasting, Strengthening, Gel-Effect, Salon, Non-Toxic"
        ),
        sizes=_words("0.5 fl oz, 0.25 fl oz, 0.45 fl oz"),
        benefits=_words("resist chips for a week, dry in under a minute, strengthen brittle nails"),
        count_sized=("Nail Tools",),
    ),
    "Tools & Accessories": _Category(
        weight=0.8,
        price=16.0,
        aspect="build quality",
        composition="Crafted from {theme} with {other} accents.",
        subcategories={
            "Makeup Brushes": (
                ("Foundation Brush", "Face Brushes"),
                ("Powder Brush", "Face Brushes"),
                ("Eyeshadow Brush Set", "Eye Brushes"),
                ("Brush Cleaning Mat", "Brush Cleaners"),
            ),
            "Hair Tools": (
                ("Detangling Brush", "Hair Brushes"),
                ("Round Brush", "Hair Brushes"),
                ("Flat Iron", "Flat Irons"),
                ("Curling Wand", "Curling Irons"),
            ),
            "Skin Tools": (
                ("Facial Cleansing Brush", "Facial Brushes"),
                ("Jade Face Roller", "Face Rollers"),
                ("Slant Tweezers", "Tweezers"),
                ("Blending Sponge", "Sponges & Applicators"),
            ),
        },
        themes=_words("Bamboo, Rose Gold, Ceramic, Titanium, Ionic, Vegan, Marble, Tourmaline, Charcoal, Pearl"),
        adjectives=_words("Professional, Travel, Ultra-Soft, Precision, Ergonomic, Compact, Salon-Grade, Cordless"),
        sizes=_COUNT_SIZES,
        benefits=_words("give a flawless finish, make styling faster, stay comfortable in hand, hold up to daily use"),
    ),
    "Men's Grooming": _Category(
        weight=0.8,
        price=12.0,
        aspect="scent",
        composition="Scented with {theme} and {other}.",
        subcategories={
            "Shaving": (
                ("Pre-Shave Oil", "Pre-Shaves"),
                ("Shaving Cream", "Shaving Creams"),
                ("Aftershave Balm", "After Shave"),
                ("Razor Bump Serum", "After Shave"),
            ),
            "Beard Care": (
                ("Beard Wash", "Beard Care"),
                ("Beard Conditioner", "Beard Care"),
                ("Beard Oil", "Beard Care"),
                ("Beard Balm", "Beard Care"),
            ),
            "Men's Skin Care": (
                ("Men's Face Wash", "Cleansers"),
                ("Men's Face Moisturizer", "Moisturizers"),
                ("Under-Eye Gel", "Eye Treatments"),
                ("Men's Body Wash", "Body Washes"),
            ),
        },
        themes=_words("Sandalwood, Cedarwood, Bay Rum, Tea Tree, Eucalyptus, Menthol, Black Pepper, Vetiver, Citrus"),
        adjectives=_words("Classic, Cooling, Sensitive, Soothing, Energizing, Rugged, Smooth, Daily"),
        sizes=_words("3.4 fl oz, 5 fl oz, 6 oz, 1 fl oz"),
        benefits=_words("prevent razor burn, soften coarse hair, keep skin hydrated, tame flyaways"),
    ),
}

BRANDS = _words(
    "Lumiere, Aurelle, Bellora, Verdane, Solenne, Kinsley & Co, Maison Elara, Nuvia, Pure Harbor, Oakridge Botanics, "
    "Vela, Calla Rose, Thornfield, Misto, Brightwell, Ardenne, Silk & Stone, Luxa, Evermoss, Juniper Lane, Corvin, "
    "Halcyon, Opaline, Ridgeback, Saffi, Tidewater, Velour, Wren & Willow, Zephyra, Amberlyn, Bloomfield, Crestline, "
    "Dovetail, Everglow, Fennwick, Harlow Grey, Jolie Belle, Kestrel, Linden Row, Marlowe"
)

_FIRST_NAMES = _words(
    "Jennifer, Maria, Ashley, Sarah, Jessica, Emily, Karen, Linda, Nicole, Megan, Rachel, Laura, Amanda, Michelle, "
    "Stephanie, Heather, Lauren, Rebecca, Kimberly, Christine, Michael, David, James, Robert, John, Daniel, Chris, "
    "Brian, Kevin, Jason"
)

_OPENERS = {
    "pos": (
        "I love this {noun}.",
        "This {noun} is now a staple in my routine.",
        "Really impressed with this {noun} from {brand}.",
        "Great {noun} for the price.",
    ),
    "mid": ("This {noun} is okay.", "Decent {noun}, nothing special.", "The {noun} works but I expected more."),
    "neg": (
        "I was disappointed by this {noun}.",
        "This {noun} did not work for me.",
        "I would not buy this {noun} again.",
    ),
}
_ASPECT_SENTENCES = {
    "pos": (
        "The {theme} {aspect} is lovely and it does {benefit} as promised.",
        "It really does {benefit}, and the {theme} {aspect} is great.",
    ),
    "mid": (
        "The {theme} {aspect} is fine but it did not really {benefit}.",
        "It is supposed to {benefit}; results were so-so.",
    ),
    "neg": (
        "The {theme} {aspect} was off-putting and it did not {benefit}.",
        "It claims to {benefit} but I saw no difference.",
    ),
}
_CLOSERS = {
    "pos": ("Will repurchase.", "Highly recommend.", "Shipping was fast too.", ""),
    "mid": ("Might try something else next time.", "It is fine for the price.", ""),
    "neg": ("Returning it.", "Save your money.", ""),
}
_SUMMARIES = {
    "pos": ("Five Stars", "Love it", "Great {noun}", "Holy grail", "Works great"),
    "mid": ("It's okay", "Average", "Not bad", "Three Stars"),
    "neg": ("Disappointed", "Not for me", "Did not work", "One Star"),
}
# Rating distributions over 1..5 stars; Amazon Beauty reviews are strongly skewed towards 5 stars.
_RATING_PROBS = {
    "loyal": (0.02, 0.03, 0.07, 0.20, 0.68),
    "taste": (0.04, 0.05, 0.10, 0.23, 0.58),
    "other": (0.08, 0.08, 0.15, 0.25, 0.44),
}


@dataclass
class _Item:
    """One catalog item; ``line`` and ``position`` place it in its product-line routine."""

    asin: str
    category: str
    subcategory: str
    noun: str
    leaf: str
    brand: str
    theme: str
    adjective: str
    size: str
    line: int
    position: int


@dataclass
class _Line:
    """A brand product line: an ordered routine of items sharing brand, theme and adjective."""

    category: str
    subcategory: str
    brand: str
    items: list[int]
    next_line: int = -1


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
    """Builds the item catalog as brand product lines whose items follow the subcategory's routine order.

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
        length = min(length, num_items - len(items))
        sizes = _COUNT_SIZES if subcategory in category.count_sized else category.sizes
        line = _Line(category=category_name, subcategory=subcategory, brand=brand, items=[])
        for position, (noun, leaf) in enumerate(routine[start : start + length]):
            line.items.append(len(items))
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
                    size=_pick(rng, sizes),
                    line=len(lines),
                    position=position,
                )
            )
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
            line = self.lines[self.items[current].line]
            position = self.items[current].position
            others = [i for i in line.items if i != current]
            if rng.random() < SUCCESSOR_FIDELITY or not others:
                has_next = position + 1 < len(line.items)
                candidate = line.items[position + 1] if has_next else self.lines[line.next_line].items[0]
            else:
                candidate = others[int(rng.integers(len(others)))]
            if candidate not in seen:
                return candidate
            # The routine step was already reviewed: staying on the product line keeps the semantic link.
            fresh = [i for i in others if i not in seen]
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
        previous = items[line.items[item.position - 1]] if item.position > 0 else None
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
        title = " ".join(part for part in (item.brand, item.theme, item.adjective, item.noun, item.size) if part)
        other = _pick(rng, [t for t in category.themes if t != item.theme])
        description = (
            f"{item.adjective} {item.noun.lower()} from the {item.brand} {item.theme} line. "
            f"{category.composition.format(theme=item.theme, other=other)} Designed to {_pick(rng, category.benefits)}."
        )
        if item.position > 0:
            description += f" Use after the {items[line.items[item.position - 1]].noun.lower()} for best results."
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
