"""CL4SRec as one file and one YAML on the method layer: its three augmentations against hand-worked cases, the
mask token owned by the encoder, and a run through the CLI."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from sracl_lightning.errors import UsageError
from sracl_lightning.methods.cl4srec import CL4SRecAugmentations, CL4SRecContrast, crop, mask, reorder
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import REPO_ROOT, left_padded, run_train, tiny_args

WINDOW = left_padded([1, 2, 3, 4], [5, 6, 7, 8, 9, 10], width=8)  # (2, 8): n = 4 and 6


def draws(function, times: int = 200) -> set[tuple[int, ...]]:
    generator = torch.Generator().manual_seed(0)
    return {tuple(row) for _ in range(times) for row in function(WINDOW, generator=generator).tolist()}


@pytest.mark.unit
def test_crop_keeps_a_contiguous_run_right_aligned():
    # η = 0.5: ⌊0.5·4⌋ = 2 of the first row's items, ⌊0.5·6⌋ = 3 of the second's, every start possible.
    got = draws(partial(crop, ratio=0.5))
    assert got == {(0,) * 6 + (1, 2), (0,) * 6 + (2, 3), (0,) * 6 + (3, 4),
                   (0,) * 5 + (5, 6, 7), (0,) * 5 + (6, 7, 8), (0,) * 5 + (7, 8, 9), (0,) * 5 + (8, 9, 10)}
    # η small: at least one item is kept.
    assert all(sum(v != 0 for v in row) == 1 for row in draws(partial(crop, ratio=0.1)))
    assert torch.equal(crop(WINDOW, 1.0), WINDOW)


@pytest.mark.unit
def test_mask_replaces_a_fixed_count_of_real_positions():
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(100):
        out = mask(WINDOW, 0.5, mask_id=99, generator=generator)
        assert torch.equal(out == 0, WINDOW == 0), "padding stays padding"
        assert (out == 99).sum(1).tolist() == [2, 3]  # ⌊0.5·4⌋, ⌊0.5·6⌋
        assert torch.equal(out[out != 99], WINDOW[out != 99])
        seen |= {tuple((row == 99).nonzero().flatten().tolist()) for row in out[:1]}
    assert len(seen) == 6, "every pair of the first row's 4 positions gets masked"


@pytest.mark.unit
def test_reorder_shuffles_one_contiguous_run():
    got = draws(partial(reorder, ratio=0.5))
    first = {row for row in got if row[-1] in (1, 2, 3, 4) and 1 in row}
    # ⌊0.5·4⌋ = 2 adjacent items swapped, or left in place: exactly these four orders.
    assert first == {(0,) * 4 + (1, 2, 3, 4), (0,) * 4 + (2, 1, 3, 4), (0,) * 4 + (1, 3, 2, 4),
                     (0,) * 4 + (1, 2, 4, 3)}
    for row in got - first:  # the second row: a run of 3, permuted within itself
        assert sorted(row) == sorted(WINDOW[1].tolist())
        changed = [i for i, (a, b) in enumerate(zip(row, WINDOW[1].tolist(), strict=True)) if a != b]
        assert not changed or changed[-1] - changed[0] <= 2


@pytest.mark.unit
def test_views_use_the_encoders_mask_token_which_is_never_ranked():
    encoder = SASRec(10, 8, hidden_size=8, num_layers=1, num_heads=1, inner_size=16, extra_tokens=("mask",))
    views = CL4SRecAugmentations(SRACLModule(10, 8).dims, mask_ratio=1.0)
    torch.manual_seed(0)
    out = torch.stack([views.view(WINDOW, encoder) for _ in range(30)])  # (30, 2, 8)
    assert bool((out == encoder.token_id("mask")).any()) and int(out.max()) == 11
    assert encoder.item_embeddings().shape == (10, 8)
    plain = SASRec(10, 8, hidden_size=8, num_layers=1, num_heads=1, inner_size=16)
    with pytest.raises(UsageError, match="extra_tokens"):
        views.view(WINDOW, plain)


@pytest.mark.unit
def test_the_objective_reaches_every_parameter():
    torch.manual_seed(0)
    module = SRACLModule(10, 8, encoder=partial(SASRec, hidden_size=8, num_layers=1, num_heads=1, inner_size=16,
                                                extra_tokens=("mask",)), base_objective=CL4SRecContrast)
    from sracl_lightning.datasets.batch import SeqBatch

    batch = SeqBatch(WINDOW, torch.tensor([5, 1]), torch.arange(2), torch.arange(2))
    terms = module.loss_terms(batch)
    assert set(terms) == {"rec", "cl4srec"} and torch.isfinite(terms["cl4srec"])
    sum(terms.values()).backward()
    assert all(p.grad is not None for name, p in module.named_parameters() if "position" not in name)
    assert "L_CL4SRec" in module.protocol()["loss"]


@pytest.mark.integration
def test_cl4srec_config_trains_through_the_cli(tmp_path, synthetic_reviews):
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "cl4srec.yaml"),
                        "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert "L_CL4SRec" in results["protocol"]["loss"]
