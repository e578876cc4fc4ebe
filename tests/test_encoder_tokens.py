"""Extra tokens of an encoder (a mask token): own ids and rows, accepted as input, never ranked, never in
``item_embeddings()``; without them the table is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from jsonargparse import ArgumentParser
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.gru4rec import GRU4Rec
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import left_padded as pad

pytestmark = pytest.mark.unit

NUM_ITEMS, MAX_LEN, HIDDEN = 30, 6, 16
MASK = NUM_ITEMS + 1  # the id of the first (only) extra token


class MaskedMeanPool(SequenceEncoder):
    """A backbone that owns a mask token without any edit of the base class (the README's MeanPool plus one)."""

    def __init__(self, num_items: int, max_len: int = 20, hidden_size: int = HIDDEN) -> None:
        super().__init__(num_items, hidden_size, extra_tokens=("mask",))
        self.mask_token = self.token_id("mask")

    def forward(self, input_ids: Tensor) -> Tensor:
        keep = (input_ids != 0).unsqueeze(-1)  # (B, L, 1)
        return (self.item_embedding(input_ids) * keep).sum(1) / keep.sum(1)  # (B, D)


BACKBONES = {
    "subclass": MaskedMeanPool,
    "sasrec": partial(SASRec, hidden_size=HIDDEN, num_heads=2, inner_size=32, extra_tokens=("mask",)),
    "gru4rec": partial(GRU4Rec, hidden_size=HIDDEN, gru_hidden_size=24, extra_tokens=("mask",)),
}


def build(name: str) -> SequenceEncoder:
    torch.manual_seed(0)
    return BACKBONES[name](NUM_ITEMS, MAX_LEN)


def left_padded(*sequences: list[int]) -> Tensor:
    return pad(*sequences, width=MAX_LEN)


# ----------------------------------------------------------------------------------------------- the table
@pytest.mark.parametrize("name", BACKBONES)
def test_mask_token_has_its_own_id_and_row(name: str) -> None:
    model = build(name)
    assert model.extra_tokens == ("mask",)
    assert model.token_id("mask") == MASK and model.vocab_size == NUM_ITEMS + 2
    assert model.item_embedding.weight.shape == (NUM_ITEMS + 2, HIDDEN)  # padding, N items, mask
    assert model.item_embedding.padding_idx == 0


@pytest.mark.parametrize("name", BACKBONES)
def test_item_embeddings_exclude_padding_and_mask(name: str) -> None:
    """(d) ``item_embeddings()`` is the (N, D) rows 1..N: neither the padding row nor the mask row."""
    model = build(name)
    items = model.item_embeddings()
    assert items.shape == (NUM_ITEMS, HIDDEN)
    assert torch.equal(items, model.item_embedding.weight[1:NUM_ITEMS + 1])
    with torch.no_grad():
        model.item_embedding.weight[MASK].fill_(7.0)
        model.item_embedding.weight[0].fill_(-7.0)
    assert torch.equal(model.item_embeddings(), items)  # changing either row changes no item


@pytest.mark.parametrize("name", BACKBONES)
def test_mask_is_never_ranked(name: str) -> None:
    """(a) Through the module: N score columns, and a mask row that would win every ranking changes nothing."""
    torch.manual_seed(0)
    module = SRACLModule(NUM_ITEMS, MAX_LEN, encoder=BACKBONES[name]).eval()
    ids = left_padded([1, 2, 3], [4, MASK, 6], [MASK])
    h = module(ids)  # (B, D)
    scores = module.item_scores(h)
    assert scores.shape == (3, NUM_ITEMS)
    with torch.no_grad():
        module.encoder.item_embedding.weight[MASK] = 1e3 * h.mean(0)  # the top candidate, were it ranked
    torch.testing.assert_close(module.item_scores(h), scores)
    batch = SeqBatch(input_ids=ids, target=torch.tensor([4, 5, NUM_ITEMS]), position=torch.arange(3),
                     user=torch.arange(3))
    loss = module.rec_loss(batch, h, module.encoder)  # classes are items 1..N only
    torch.testing.assert_close(loss, F.cross_entropy(scores, batch.target - 1))


@pytest.mark.parametrize("name", BACKBONES)
def test_encodes_windows_with_the_mask(name: str) -> None:
    """(b) Windows holding the mask id encode (the mask is a token, not padding) and differ from the plain ones."""
    model = build(name).eval()
    plain = left_padded([1, 2, 3, 4], [5, 6], [7])
    masked = left_padded([1, MASK, 3, 4], [5, MASK], [MASK])
    model.check_input_ids(masked)
    h_plain, h_masked = model(plain), model(masked)
    assert h_masked.shape == (3, HIDDEN) and torch.isfinite(h_masked).all()
    assert not torch.allclose(h_plain, h_masked, atol=1e-6, rtol=0)
    with torch.no_grad():
        model.item_embedding.weight[MASK].normal_(std=3.0)
    changed = model(masked)
    assert not torch.allclose(changed, h_masked, atol=1e-6, rtol=0)  # the mask row is read
    torch.testing.assert_close(model(plain), h_plain)  # and only where the mask is


@pytest.mark.parametrize("name", BACKBONES)
def test_mask_row_gets_gradient_only_when_used(name: str) -> None:
    """(c) Gradient reaches the mask row from a window that holds it, never the padding row."""
    model = build(name)
    if hasattr(model, "embedding_dropout"):
        model.embedding_dropout.p = 0.0
    for ids, used in ((left_padded([1, 2, 3], [4, 5]), False), (left_padded([1, MASK, 3], [4, 5]), True)):
        model.zero_grad()
        logits = model(ids) @ model.item_embeddings().T  # (B, N)
        F.cross_entropy(logits, torch.tensor([3, 7])).backward()
        grad = model.item_embedding.weight.grad  # (N + 2, D)
        assert bool(grad[MASK].abs().sum() > 0) is used
        assert torch.count_nonzero(grad[0]) == 0  # padding_idx: no gradient, as without extra tokens


# ---------------------------------------------------------------------------------------------- the ids
def test_input_id_range_includes_the_extra_tokens() -> None:
    masked, plain = build("subclass"), SASRec(NUM_ITEMS, MAX_LEN, hidden_size=HIDDEN, num_heads=2)
    masked.check_input_ids(torch.tensor([[0, 1, NUM_ITEMS, MASK]]))
    plain.check_input_ids(torch.tensor([[0, 1, NUM_ITEMS]]))
    with pytest.raises(ValueError, match=f"input id {MASK} is outside 0..{NUM_ITEMS}"):
        plain.check_input_ids(torch.tensor([[0, MASK]]))
    for bad in (MASK + 1, -1):
        with pytest.raises(ValueError, match=f"input id {bad} is outside 0..{MASK}"):
            masked.check_input_ids(torch.tensor([[1, bad]]))


def test_several_tokens_take_consecutive_ids() -> None:
    model = GRU4Rec(NUM_ITEMS, extra_tokens=["mask", "cls"])  # a YAML list works as well as a tuple
    assert (model.token_id("mask"), model.token_id("cls")) == (NUM_ITEMS + 1, NUM_ITEMS + 2)
    assert model.extra_tokens == ("mask", "cls") and model.item_embeddings().shape == (NUM_ITEMS, 64)


def test_bad_token_names_are_refused() -> None:
    with pytest.raises(KeyError, match="no extra token 'cls'.*\\['mask'\\]"):
        build("subclass").token_id("cls")
    with pytest.raises(KeyError, match="no extra token 'mask'.*none"):
        SASRec(NUM_ITEMS).token_id("mask")
    with pytest.raises(TypeError, match="sequence of token names"):
        SASRec(NUM_ITEMS, extra_tokens="mask")
    for names in (("mask", "mask"), ("",)):
        with pytest.raises(ValueError, match="distinct non-empty names"):
            SASRec(NUM_ITEMS, extra_tokens=names)


def test_config_gives_a_mask_token() -> None:
    """The encoder of a YAML config (``init_args: {extra_tokens: [mask]}``) builds with the token."""
    parser = ArgumentParser()
    parser.add_argument("--encoder", type=Callable[[int, int], SequenceEncoder])
    config = parser.parse_string("encoder:\n  class_path: sracl_lightning.models.sasrec.SASRec\n"
                                 "  init_args: {hidden_size: 16, num_heads: 2, extra_tokens: [mask]}\n")
    encoder = parser.instantiate(config).encoder(NUM_ITEMS, MAX_LEN)
    assert isinstance(encoder, SASRec) and encoder.token_id("mask") == MASK
    assert encoder.item_embedding.weight.shape == (NUM_ITEMS + 2, 16)
