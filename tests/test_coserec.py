"""CoSeRec: ItemCF-IUF and the online similarity against hand-worked cases, substitute and insert on fixed draws,
the per-window choice of augmentation, the hybrid switch after warm-up, and configs/coserec.yaml through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.methods.coserec import (
    AUGMENTATIONS,
    CoSeRecAugmentations,
    CoSeRecContrast,
    dot_product_top1,
    draw_positions,
    insert,
    itemcf_iuf_top1,
    substitute,
    training_parts,
)
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, run_train, tiny_args, toy_samples

#: (N + 1,) a most-similar table for items 1..5: 1 -> 9 is not an item, so it shows where it lands.
SIMILAR = torch.tensor([0, 9, 8, 7, 6, 5])


@pytest.mark.unit
def test_itemcf_iuf_equals_the_hand_computed_similarities():
    # u0 has {1, 2, 3}, u1 {1, 2} (item 2 twice: counted once), u2 {2, 3, 4}; item 5 co-occurs with nothing.
    user = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    item = torch.tensor([1, 2, 3, 1, 2, 2, 2, 3, 4, 5])
    top1, score = itemcf_iuf_top1(user, item, num_items=5)
    w3, w2 = 1 / math.log(4), 1 / math.log(3)  # 1 / log(1 + |I_u|)
    sim = {(1, 2): (w3 + w2) / math.sqrt(2 * 3), (1, 3): w3 / math.sqrt(2 * 2), (2, 3): 2 * w3 / math.sqrt(3 * 2),
           (2, 4): w3 / math.sqrt(3 * 1), (3, 4): w3 / math.sqrt(2 * 1)}
    # 1 -> 2 (0.666), 2 -> 1 (0.666 beats 2-3's 0.589), 3 -> 2, 4 -> 3; 5 has no neighbour: itself, score 0.
    assert top1.tolist() == [0, 2, 1, 2, 3, 5]
    low, high = min(sim.values()), max(sim.values())
    expected = [0.0, 1.0, 1.0, (sim[2, 3] - low) / (high - low), (sim[3, 4] - low) / (high - low), 0.0]
    assert score.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.unit
def test_itemcf_ties_go_to_the_smallest_item_id():
    # Item 3 co-occurs once with 1 and once with 2, in users of the same size: a tie, won by 1.
    top1, _ = itemcf_iuf_top1(torch.tensor([0, 0, 1, 1]), torch.tensor([3, 2, 3, 1]), num_items=3)
    assert top1[3].item() == 1


@pytest.mark.unit
def test_training_parts_are_the_items_before_the_validation_target():
    # toy_samples keeps each user's items[:-2] for training: user 0 trains on 1 2 3, user 1 on 4 5 6 7.
    samples = toy_samples({"a": [1, 2, 3, 8, 9], "b": [4, 5, 6, 7, 8, 9]}, num_items=9, max_len=3)
    user, item = training_parts(samples.items, samples.positions, samples.users, samples.starts)
    pairs = list(zip(user.tolist(), item.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6), (1, 7)]


@pytest.mark.unit
def test_online_similarity_is_the_largest_dot_product_of_another_item_min_max_normalised():
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # items 1, 2, 3
    top1, score = dot_product_top1(embeddings, chunk=2)  # two chunks
    # Products: 1·2 = 2, 1·3 = 0, 2·3 = 0; the diagonal (1, 4, 1) counts for the min-max: low 0, high 4.
    assert top1.tolist() == [0, 2, 1, 1]
    assert score.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])


@pytest.mark.unit
def test_substitute_and_insert_on_fixed_positions():
    ids = torch.tensor([[0, 0, 1, 2, 3], [5, 4, 3, 2, 1]])
    chosen = torch.tensor([[False, False, True, False, True], [True, False, False, False, True]])
    assert substitute(ids, SIMILAR, chosen).tolist() == [[0, 0, 9, 2, 7], [5, 4, 3, 2, 9]]
    # Each chosen item gets its most similar item just before it; the newest L items are kept.
    # Row 0: 9 1 2 7 3 (fits); row 1: 5 5 4 3 2 9 1 -> its last five.
    assert insert(ids, SIMILAR, chosen).tolist() == [[9, 1, 2, 7, 3], [4, 3, 2, 9, 1]]


@pytest.mark.unit
def test_positions_are_drawn_at_the_rate_with_at_least_one():
    torch.manual_seed(0)
    ids = torch.tensor([[0, 0, 0, 0, 7], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]] * 200)
    chosen = draw_positions(ids, 0.4)
    assert not chosen[ids == 0].any()
    # max(1, ⌊0.4·n⌋): n = 1 -> 1, n = 4 -> 1, n = 5 -> 2.
    assert chosen.sum(1).view(-1, 3)[0].tolist() == [1, 1, 2] and (chosen.sum(1).view(-1, 3) == chosen.sum(1)[:3]).all()
    # The draw is uniform over a row's real positions.
    assert chosen[1::3, 1:].float().mean(0).tolist() == pytest.approx([0.25] * 4, abs=0.07)


def fitted_views(**kwargs) -> tuple[CoSeRecAugmentations, SASRec]:
    samples = toy_samples({"a": [1, 2, 3, 4, 5, 6], "b": [2, 3, 4, 5, 6, 1]}, num_items=6, max_len=5)
    views = CoSeRecAugmentations(MethodDims(6, 5, 8), **kwargs)
    views.setup(TrainingContext(num_items=6, max_len=5, train_samples=samples))
    torch.manual_seed(0)
    return views, SASRec(6, max_len=5, hidden_size=8, num_heads=2, inner_size=16, extra_tokens=("mask",))


@pytest.mark.unit
def test_short_windows_draw_only_their_augmentations():
    views, encoder = fitted_views(threshold=4, short_augmentations=["substitute"])
    views.on_train_epoch_start(encoder)
    short = torch.tensor([[0, 0, 1, 2, 3]] * 50)
    # Substitute at rate 0.1 touches exactly one of the three items, by the ItemCF table.
    out = views.view(short, encoder)
    changed = out != short
    assert (changed.sum(1) == 1).all()
    assert torch.equal(out[changed], views.similar[short[changed]])
    # A long window draws all five: the mask token (mask) and a dropped oldest item (crop) both turn up.
    long = torch.tensor([[1, 2, 3, 4, 5]] * 300)
    out = views.view(long, encoder)
    assert (out == encoder.token_id("mask")).any() and ((out == 0).sum(1) > 0).any()


@pytest.mark.unit
def test_the_online_similarity_joins_after_the_warm_up_epochs():
    views, encoder = fitted_views(warm_up_epochs=1)
    offline = views.offline_top1.clone()
    with torch.no_grad():  # make every item's embedding nearest to item 6's, with a high normalised score
        encoder.item_embedding.weight[1:7] = torch.randn(6, 8) * 0.01
        encoder.item_embedding.weight[6] = torch.ones(8) * 10
    for _ in range(2):  # epoch indices 0 and 1: not yet (the code switches at index > warm_up)
        views.on_train_epoch_start(encoder)
        assert torch.equal(views.similar, offline)
    views.on_train_epoch_start(encoder)  # index 2
    online, online_score = dot_product_top1(encoder.item_embeddings())
    expected = torch.where(views.offline_score >= online_score, offline, online)
    assert torch.equal(views.similar, expected) and not torch.equal(expected, offline)
    assert int(views.epochs_started) == 3 and "epochs_started" in views.state_dict()


@pytest.mark.unit
def test_bad_arguments_are_named():
    dims = MethodDims(6, 5, 8)
    with pytest.raises(InvalidArgumentError, match="short_augmentations"):
        CoSeRecAugmentations(dims, short_augmentations=["swap"])
    with pytest.raises(InvalidArgumentError, match="insert_rate"):
        CoSeRecAugmentations(dims, insert_rate=1.5)
    assert AUGMENTATIONS == ("crop", "mask", "reorder", "substitute", "insert")
    assert CoSeRecContrast(dims).name == "coserec"


@pytest.mark.integration
def test_coserec_config_trains_through_the_cli(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "coserec.yaml"),
                        "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["loss"].startswith("full-softmax cross-entropy + 0.1·L_CoSeRec (crop η=0.2")
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0 and results["metrics"]["users"] > 0
