"""Tests of the LLM prompts (docs/method.md#semantic-stage): exact rendering, fallbacks, context sequences,
template errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from sracl_lightning.semantic.prompts import (
    PromptBuilder,
    PromptTemplateError,
    item_context_sequences,
    item_display_text,
    load_prompt_template,
    user_message_text,
)

pytestmark = pytest.mark.unit

PROMPTS = Path(__file__).resolve().parents[1] / "configs" / "prompts"


def record(item: int, title=None, brand=None, categories=(), price=None, description=None, **extra) -> dict:
    return {"item": item, "source_id": f"S{item}", "title": title, "brand": brand, "categories": list(categories),
            "price": price, "description": description, "extra": extra}


# Index 0 is padding, as in item_text.py's output.
RECORDS = [
    None,
    record(1, title="Rose Lip Balm", brand="Petal", categories=["Makeup", "Lips"], price=4.5, description="Soft."),
    record(2, brand="Trailco", categories=["Camping", "Stoves"], idgenrec_text_id="pocket stove"),
    record(3, title="   "),
    record(4, title="Night Cream", description="abcdefghij" * 60),
    record(5, title="Tuna Bar", categories=["Sushi Bars", "Restaurants"], city="Philadelphia", state="PA", stars=4.0),
]


@pytest.fixture
def amazon() -> PromptBuilder:
    return PromptBuilder(load_prompt_template(PROMPTS / "amazon.yaml"), RECORDS)


@pytest.fixture
def yelp() -> PromptBuilder:
    return PromptBuilder(load_prompt_template(PROMPTS / "yelp.yaml"), RECORDS)


def test_shipped_templates_load() -> None:
    for path in sorted(PROMPTS.glob("*.yaml")):
        template = load_prompt_template(path)
        assert template.source == str(path)
        assert "{" not in template.item_system.format(domain=template.domain)


def test_item_display_text_fallbacks() -> None:
    assert item_display_text(RECORDS[1]) == "Rose Lip Balm"
    # No title: brand, categories and the IDGenRec text id, whichever are present.
    assert item_display_text(RECORDS[2]) == "Trailco, Camping, Stoves, pocket stove"
    assert item_display_text(record(7, categories=["Camping"])) == "Camping"
    assert item_display_text(RECORDS[3]) == "missing"  # a blank title counts as absent


def test_amazon_user_prompt_exact(amazon: PromptBuilder) -> None:
    messages = amazon.user_messages([1, 2, 3, 4])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == (
        "<Rose Lip Balm>; <Trailco, Camping, Stoves, pocket stove>; <missing>; <Night Cream>")
    assert messages[0]["content"] == (
        "Assume you are a beauty products recommendation expert.\n"
        "You will be provided with a user's historical purchases of beauty products in chronological order, given "
        "in the following format:\n"
        "<The title of item1>; <The title of item2>; <The title of item3>;...\n"
        "Please summarize the user's specific preference when purchasing beauty products. Note that your response "
        "should be a coherent paragraph of no more than 100 words."
    )
    assert user_message_text(messages) == amazon.history_text([1, 2, 3, 4])
    # Chronological order is kept as given; one item gives one record.
    assert amazon.history_text([4, 1]) == "<Night Cream>; <Rose Lip Balm>"
    assert amazon.history_text([1]) == "<Rose Lip Balm>"


def test_domain_override() -> None:
    builder = PromptBuilder(load_prompt_template(PROMPTS / "amazon.yaml", domain="sports_and_outdoors"), RECORDS)
    system = builder.user_messages([1])[0]["content"]
    assert system.startswith("Assume you are a sports_and_outdoors products recommendation expert.\n")
    assert "beauty" not in system


def test_yelp_user_prompt_exact(yelp: PromptBuilder) -> None:
    messages = yelp.user_messages([5, 1])
    assert messages[1]["content"] == (
        "< Business name: Tuna Bar; Categories: Sushi Bars, Restaurants; Located City: Philadelphia; Stars: 4.0 >.\n"
        "< Business name: Rose Lip Balm; Categories: Makeup, Lips; Located City: missing; Stars: missing >"
    )
    assert messages[0]["content"].startswith("Assume you are an expert for business recommendation.\n")
    assert "no more than 100 words" in messages[0]["content"]


def test_amazon_item_prompt_exact(amazon: PromptBuilder) -> None:
    assert amazon.item_info(1) == (
        "The product name is Rose Lip Balm; brand is Petal; categories are Makeup, Lips; price is 4.50; "
        "The detailed description of the product is Soft.......")
    # Missing attributes read "missing"; the description is cut to 500 characters.
    assert amazon.item_info(4) == (
        "The product name is Night Cream; brand is missing; categories are missing; price is missing; "
        "The detailed description of the product is " + "abcdefghij" * 50 + "......")
    context = amazon.context_text([[1, 4], [2, 3, 4]])
    assert context == ("[Rose Lip Balm -> Night Cream] # "
                       "[Trailco, Camping, Stoves, pocket stove -> missing -> Night Cream]")
    system, user = amazon.item_messages(4, [[1, 4], [2, 3, 4]])
    assert system == {"role": "system", "content": "Assume you are a beauty products recommendation expert."}
    assert user["role"] == "user"
    assert f"1) The basic information of the beauty product: {amazon.item_info(4)};\n" in user["content"]
    assert f"who have bought this product: {context}. Here, different sequences" in user["content"]
    assert user["content"].endswith(
        '{\n"item summary": "A description of the item, no more than 80 words.",\n'
        '"potential user analysis": "what type of users would purchase this item, no more than 50 words."\n}')


def test_item_prompt_without_context(amazon: PromptBuilder) -> None:
    assert amazon.context_text([]) == "[None]"
    assert "who have bought this product: [None]. Here" in amazon.item_messages(1)[1]["content"]


def test_description_chars_override() -> None:
    builder = PromptBuilder(load_prompt_template(PROMPTS / "amazon.yaml", description_chars=12), RECORDS)
    assert builder.item_info(4).endswith("description of the product is abcdefghijab......")


def test_yelp_item_prompt_exact(yelp: PromptBuilder) -> None:
    assert yelp.item_info(5) == (
        "The business's name is Tuna Bar; The business's categories are Sushi Bars, Restaurants; The business is "
        "located at Philadelphia, PA; The business's average rating is 4.0 (the scale is from 1 to 5); ")
    user = yelp.item_messages(5, [[1, 5]])[1]["content"]
    assert "[Rose Lip Balm" not in user  # Yelp's template has no context sequences
    assert "no more than 70 words" in user


def test_identity_follows_the_content(amazon: PromptBuilder, tmp_path: Path) -> None:
    """The identity follows the content, not where the file lies."""
    template = amazon.template
    assert amazon.item_messages(4, []) == amazon.item_messages(4)
    copy = tmp_path / "amazon.yaml"
    copy.write_text((PROMPTS / "amazon.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert load_prompt_template(copy).identity() == template.identity()
    assert load_prompt_template(copy, domain="office").identity() != template.identity()


def test_unknown_item_is_a_clear_error(amazon: PromptBuilder) -> None:
    with pytest.raises(KeyError, match="item 9 has no record"):
        amazon.history_text([1, 9])
    with pytest.raises(KeyError, match="item 0 has no record"):
        amazon.item_info(0)


# ---- template errors ---------------------------------------------------------------------------------------
def write_template(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((PROMPTS / "amazon.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda d: d["item"].__setitem__("info", "name {titel}"), "item.info", "unknown placeholder(s) {titel}"),
        (lambda d: d["user"].__setitem__("system", "{history}"), "user.system", "unknown placeholder(s) {history}"),
        (lambda d: d["user"].__setitem__("user", "no history here"), "user.user", "missing required placeholder"),
        (lambda d: d["item"].pop("system"), "item.system", "missing"),
        (lambda d: d.pop("user"), "user", "missing"),
        (lambda d: d.__setitem__("domian", "x"), "domian", "unknown key"),
        (lambda d: d["item"].__setitem__("sytem", "x"), "item.sytem", "unknown key"),
        (lambda d: d["item"].__setitem__("info", "{title"), "item.info", "bad format string"),
        (lambda d: d["item"].__setitem__("info", "{}"), "item.info", "positional placeholder"),
        (lambda d: d["item"].__setitem__("info", "{title:d}"), "item.info", "cannot be formatted"),
        (lambda d: d.__setitem__("description_chars", 0), "description_chars", "positive integer"),
        (lambda d: d.pop("domain"), "domain", "missing"),
    ],
)
def test_template_errors_name_file_and_key(tmp_path: Path, edit, key: str, words: str) -> None:
    path = write_template(tmp_path, edit)
    with pytest.raises(PromptTemplateError) as info:
        load_prompt_template(path)
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert words in str(info.value)
    assert info.value.key == key


def test_extra_placeholder_is_missing_when_absent(tmp_path: Path) -> None:
    path = write_template(tmp_path, lambda d: d["item"].__setitem__("info", "{title} rank {extra[salesRank]}"))
    builder = PromptBuilder(load_prompt_template(path), RECORDS)
    assert builder.item_info(1) == "Rose Lip Balm rank missing"


# ---- context sequences (docs/method.md#item-summaries) -----------------------------------------------------
def flat(users: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    items = np.array([i for seq in users for i in seq], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in users])]).astype(np.int64)
    return items, offsets


def reference_contexts(users: list[list[int]], max_items: int, max_len: int) -> dict[int, list[list[int]]]:
    """Every training sample (window + target) grouped by target, the obvious slow way."""
    out: dict[int, list[list[int]]] = {}
    for seq in users:
        train = seq[:-2]
        for i in range(1, len(train)):
            window = train[max(0, i - max_len) : i + 1]
            out.setdefault(train[i], []).append(window[-max_items:])
    return out


def test_context_sequences_by_hand() -> None:
    users = [[1, 2, 3, 4, 5, 6], [7, 2, 3, 9, 9], [2, 8, 8]]
    contexts = item_context_sequences(*flat(users))
    # Validation (5, 9) and test (6, 9) items never end a context; a 3-item user has no training prefix of length 2.
    assert contexts == {2: [[1, 2], [7, 2]], 3: [[1, 2, 3], [7, 2, 3]], 4: [[1, 2, 3, 4]]}


def test_context_sequences_keep_last_11_items() -> None:
    users = [list(range(1, 16))]  # training part 1..13
    contexts = item_context_sequences(*flat(users))
    assert contexts[13] == [list(range(3, 14))]
    assert contexts[11] == [list(range(1, 12))]
    assert all(len(s) <= 11 for seqs in contexts.values() for s in seqs)
    # The window of a training sample is max_len inputs plus the target.
    assert item_context_sequences(*flat(users), max_len=3)[13] == [[10, 11, 12, 13]]


def test_context_sequences_match_reference_without_sampling() -> None:
    rng = random.Random(1)
    users = [[rng.randint(1, 15) for _ in range(rng.randint(3, 30))] for _ in range(40)]
    got = item_context_sequences(*flat(users), max_per_item=10_000)
    assert got == reference_contexts(users, max_items=11, max_len=20)
    assert item_context_sequences(*flat(users), max_per_item=10_000, max_items=4, max_len=2) == \
        reference_contexts(users, max_items=4, max_len=2)


def test_context_sequences_cap_is_seeded() -> None:
    users = [[100 + u, 50, 90, 91] for u in range(30)]  # 30 training sequences [100+u, 50], all ending at 50
    items, offsets = flat(users)
    first = item_context_sequences(items, offsets, max_per_item=10, seed=0)
    assert len(first[50]) == 10
    assert all(s in [[100 + u, 50] for u in range(30)] for s in first[50])
    assert [s[0] for s in first[50]] == sorted(s[0] for s in first[50])  # kept in data order
    assert item_context_sequences(items, offsets, max_per_item=10, seed=0) == first
    assert item_context_sequences(items, offsets, max_per_item=10, seed=1) != first
    assert len(item_context_sequences(items, offsets, max_per_item=5)[50]) == 5


def test_context_sequences_reject_bad_offsets() -> None:
    items, offsets = flat([[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="offsets"):
        item_context_sequences(items, offsets[:-1])
    with pytest.raises(ValueError, match="max_per_item"):
        item_context_sequences(items, offsets, max_per_item=0)
