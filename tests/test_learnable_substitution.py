"""Learnable item substitution (Table 4): the views, the mixture, and gradients."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from sracl_lightning.gru4rec import GRU4Rec
from sracl_lightning.learnable_substitution import LearnableSubstitutionSRACL
from sracl_lightning.sasrec import SASRec
from tests.conftest import TOY_BATCH as B
from tests.conftest import TOY_ITEMS as N
from tests.conftest import TOY_LEN as L
from tests.conftest import TOY_SEMANTIC_DIM as E
from tests.conftest import item_table, toy_batch

pytestmark = pytest.mark.unit


def module(p: float = 0.2, encoder=None) -> LearnableSubstitutionSRACL:
    torch.manual_seed(0)
    m = LearnableSubstitutionSRACL(N, L, encoder=encoder or partial(SASRec, hidden_size=16, num_layers=1,
                                                                     num_heads=1, inner_size=32),
                                   semantic_dim=E, substitution_probability=p, user_cl_weight=0.1, item_cl_weight=0.1)
    m.item_neighbours = item_table(torch.Generator().manual_seed(1))
    m.item_semantic = torch.randn(N + 1, E, generator=torch.Generator().manual_seed(2))
    m.bank = torch.randn(B, 16)
    return m


def test_without_substitution_the_view_is_the_plain_encoding():
    m = module(p=0.0).eval()
    ids = toy_batch(torch.Generator().manual_seed(0)).input_ids
    vectors = m.learned_view(ids)
    assert torch.equal(vectors, m.encoder.item_embedding(ids))
    assert torch.allclose(m.encoder.encode_embedded(ids, vectors), m(ids), atol=1e-6)


def test_every_real_item_becomes_the_weighted_mixture_of_its_neighbours():
    m = module(p=1.0)
    ids = toy_batch(torch.Generator().manual_seed(0)).input_ids
    vectors = m.learned_view(ids)
    assert torch.equal(vectors[ids == 0], m.encoder.item_embedding(ids)[ids == 0]), "padding must stay padding"
    row, col = 1, L - 1
    item = ids[row, col]
    neighbours = m.item_neighbours[item]  # (K,)
    weights = m.item_synthesizer.weights(m.item_semantic[item][None], m.item_semantic[neighbours][None])[0]
    assert float(weights.sum().detach()) == pytest.approx(1.0, abs=1e-6)
    expected = weights @ m.encoder.item_embedding(neighbours)  # (D,)
    assert torch.allclose(vectors[row, col], expected, atol=1e-6)


def test_gradients_reach_the_item_synthesizer_and_every_parameter():
    m = module(p=0.5)
    terms = m.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
    assert set(terms) == {"rec", "user_cl", "item_cl"} and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    missing = [name for name, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert "item_neighbours" not in m.state_dict() and "item_semantic" not in m.state_dict()


def test_needs_semantics_and_a_backbone_that_takes_vectors():
    with pytest.raises(ValueError, match="semantic_profile"):
        LearnableSubstitutionSRACL(N, L, user_cl_weight=0.0, item_cl_weight=0.1)
    gru = module(encoder=partial(GRU4Rec, hidden_size=16, gru_hidden_size=16))
    with pytest.raises(NotImplementedError, match="GRU4Rec does not encode given item vectors"):
        gru.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
