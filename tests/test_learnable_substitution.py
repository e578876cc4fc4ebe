"""Learnable item substitution (Table 4): the views, the mixture, gradients, and what it needs."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from sracl_lightning.errors import UsageError
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.methods.user_contrast import MemoryBank, UserContrast
from sracl_lightning.methods.views import LearnableSubstitution, ViewContrast
from sracl_lightning.models.gru4rec import GRU4Rec
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.semantic.tables import SemanticTables
from tests.conftest import TOY_BATCH as B
from tests.conftest import TOY_ITEMS as N
from tests.conftest import TOY_LEN as L
from tests.conftest import TOY_SEMANTIC_DIM as E
from tests.conftest import item_table, toy_batch, toy_samples

pytestmark = pytest.mark.unit

ITEM_SYNTHESIZER = "objectives.item_contrast.views.synthesizer."


def module(p: float = 0.2, encoder=None) -> SRACLModule:
    """SRA-CL (memory bank) whose L_IS views are learnable substitutions, frozen data and bank set by hand."""
    torch.manual_seed(0)
    m = SRACLModule(N, L, encoder=encoder or partial(SASRec, hidden_size=16, num_layers=1, num_heads=1,
                                                     inner_size=32), semantic_dim=E,
                    user_contrast=partial(UserContrast, weight=0.1, neighbours=MemoryBank),
                    item_contrast=partial(ViewContrast, weight=0.1,
                                          views=partial(LearnableSubstitution, probability=p)))
    views = m.objectives["item_contrast"].views
    views.item_neighbours = item_table(torch.Generator().manual_seed(1))
    views.item_semantic = torch.randn(N + 1, E, generator=torch.Generator().manual_seed(2))
    m.objectives["user_contrast"].neighbours.bank = torch.randn(B, 16)
    return m


def views_of(m: SRACLModule) -> LearnableSubstitution:
    views = m.objectives["item_contrast"].views
    assert isinstance(views, LearnableSubstitution)
    return views


def test_without_substitution_the_view_is_the_plain_encoding():
    m = module(p=0.0).eval()
    ids = toy_batch(torch.Generator().manual_seed(0)).input_ids
    vectors = views_of(m).view_vectors(ids, m.encoder)
    assert torch.equal(vectors, m.encoder.item_embedding(ids))
    assert torch.allclose(m.encoder.encode_embedded(ids, vectors), m(ids), atol=1e-6)


def test_every_real_item_becomes_the_weighted_mixture_of_its_neighbours():
    m = module(p=1.0)
    views = views_of(m)
    ids = toy_batch(torch.Generator().manual_seed(0)).input_ids
    vectors = views.view_vectors(ids, m.encoder)
    assert torch.equal(vectors[ids == 0], m.encoder.item_embedding(ids)[ids == 0]), "padding must stay padding"
    row, col = 1, L - 1
    item = ids[row, col]
    neighbours = views.item_neighbours[item]  # (K,)
    weights = views.synthesizer.weights(views.item_semantic[item][None], views.item_semantic[neighbours][None])[0]
    assert float(weights.sum().detach()) == pytest.approx(1.0, abs=1e-6)
    expected = weights @ m.encoder.item_embedding(neighbours)  # (D,)
    assert torch.allclose(vectors[row, col], expected, atol=1e-6)
    assert not torch.allclose(vectors[row, col], m.encoder.item_embedding(item), atol=1e-3)


def test_gradients_reach_the_item_synthesizer_and_every_parameter():
    m = module(p=0.5)
    names = {name for name, _ in m.named_parameters()}
    assert {ITEM_SYNTHESIZER + "adapter", ITEM_SYNTHESIZER + "attention"} <= names
    assert {"objectives.user_contrast.positive.synthesizer.adapter"} <= names, "its own synthesizer, not L_CS's"
    terms = m.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
    assert set(terms) == {"rec", "user_cl", "item_cl"} and all(torch.isfinite(t) for t in terms.values())
    assert "learnable substitution p=0.5" in m.protocol()["loss"]
    sum(terms.values()).backward()
    missing = [name for name, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    state = m.state_dict()
    assert not any(key.endswith(("item_neighbours", "item_semantic", "bank")) for key in state), \
        "frozen data must not be checkpointed"


def test_setup_reads_the_item_tables_of_the_semantic_profile():
    samples = toy_samples({"u": [1, 2, 3, 4, 5], "v": [6, 7, 8, 9]}, N, L)
    views = LearnableSubstitution(MethodDims(N, L, 16, E))
    with pytest.raises(RuntimeError, match="not loaded"):
        views.view_vectors(torch.ones(1, L, dtype=torch.long), SASRec(N, L, hidden_size=16, num_layers=1,
                                                                      num_heads=1, inner_size=32))
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        views.setup(TrainingContext(num_items=N, max_len=L, train_samples=samples))
    neighbours = item_table(torch.Generator().manual_seed(1))
    embeddings = torch.randn(N + 1, E)
    tables = SemanticTables(item_embeddings=embeddings, user_embeddings=torch.zeros(0, E),
                            item_neighbours=neighbours, user_neighbours=torch.zeros(0, 3, dtype=torch.long),
                            prefix_row=torch.zeros(0, dtype=torch.long),
                            prefix_positions=torch.zeros(0, dtype=torch.long), profile="toy")
    views.setup(TrainingContext(num_items=N, max_len=L, train_samples=samples, semantic=tables))
    assert torch.equal(views.item_neighbours, neighbours) and torch.equal(views.item_semantic, embeddings)
    # A table with ids outside 1..N (e.g. the -1 filler of a short pool) is refused before training.
    bad = neighbours.clone()
    bad[3, 0] = -1
    with pytest.raises(ValueError, match=f"outside 1..{N}: item 3 "):
        views.setup(TrainingContext(num_items=N, max_len=L, train_samples=samples,
                                    semantic=SemanticTables(**{**vars(tables), "item_neighbours": bad})))


def test_needs_semantics_and_a_backbone_that_takes_vectors():
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        SRACLModule(N, L, item_contrast=partial(ViewContrast, weight=0.1, views=LearnableSubstitution))
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        LearnableSubstitution(MethodDims(N, L, 16))
    gru = module(encoder=partial(GRU4Rec, hidden_size=16, gru_hidden_size=16))
    with pytest.raises(NotImplementedError, match="GRU4Rec does not encode given item vectors"):
        gru.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
