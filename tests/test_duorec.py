"""DuoRec: same-target sampling on the device, the masked NT-Xent vs a naive loop, gradients, overfitting, the CLI
with DuoRec alone and with SRA-CL on top, and checkpoints."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.datasets.samples import SequenceSamples
from sracl_lightning.methods.duorec import (
    DuoRecContrast,
    SameTargetInfoNCE,
    SameTargetSampler,
    SameTargetViews,
    same_target_info_nce,
    same_target_keys,
)
from sracl_lightning.methods.losses import InfoNCE, info_nce
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.parts import TrainingContext
from sracl_lightning.methods.user_contrast import EncodedNeighbours, MemoryBank, UserContrast
from sracl_lightning.methods.views import SemanticSubstitution, ViewContrast
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.training.cli import SRACLCLI
from tests.conftest import REPO_ROOT, load_script, run_train, tiny_args, toy_samples

# Training targets (positions s+1 .. e-3): a -> 2 3 4, b -> 2 6 3, c -> 2 1 3 4, d -> 6 5. So targets 2 and 3 have
# three samples each, 4 and 6 two, 1 and 5 one (their anchors fall back to themselves).
USERS = {"a": [1, 2, 3, 4, 9, 9], "b": [5, 2, 6, 3, 8, 8], "c": [7, 2, 1, 3, 4, 8, 8], "d": [6, 6, 5, 9, 9]}
N, L, K, E, D = 9, 4, 3, 8, 16
TINY_SASREC = partial(SASRec, hidden_size=D, num_layers=1, num_heads=1, inner_size=32)


@pytest.fixture(scope="module")
def samples() -> SequenceSamples:
    return toy_samples(USERS, N, L)


def loaded_sampler(samples: SequenceSamples) -> SameTargetSampler:
    sampler = SameTargetSampler(L)
    sampler.load(samples, N)
    return sampler


def training_batch(samples: SequenceSamples) -> SeqBatch:
    """Every training sample, with made-up neighbours for SRA-CL's L_CS."""
    generator = torch.Generator().manual_seed(0)
    batch = samples.__getitems__(list(range(len(samples))))
    b = len(batch)
    batch.prefix_row = torch.arange(b)
    batch.semantic = torch.randn(b, E, generator=generator)
    batch.neighbour_rows = torch.randint(0, b, (b, K), generator=generator)
    batch.neighbour_input_ids = samples.input_windows(batch.neighbour_rows.reshape(-1)).view(b, K, L)
    batch.neighbour_semantic = torch.randn(b, K, E, generator=generator)
    return batch


def duorec(samples: SequenceSamples, weight: float = 0.1, sracl: bool = False, neighbours=EncodedNeighbours,
           **kwargs) -> SRACLModule:
    """DuoRec (its objective set up on ``samples``), with SRA-CL's two objectives on top if ``sracl``."""
    slots = {}
    if sracl:
        slots = {"user_contrast": partial(UserContrast, weight=0.1, neighbours=neighbours),
                 "item_contrast": partial(ViewContrast, weight=0.1)}
    module = SRACLModule(N, L, encoder=TINY_SASREC, semantic_dim=E if sracl else None,
                         base_objective=partial(DuoRecContrast, weight=weight), **slots, **kwargs)
    module.objectives["base_objective"].setup(TrainingContext(num_items=N, max_len=L, train_samples=samples))
    if sracl:
        module.objectives["item_contrast"].views.item_neighbours = \
            (torch.arange(N + 1)[:, None] + torch.arange(1, K + 1)) % N + 1  # (N + 1, K)
    return module


# --------------------------------------------------------------------------------------------- sampling
@pytest.mark.unit
def test_sampler_index_follows_the_targets(samples):
    sampler = loaded_sampler(samples)
    targets = samples.items[samples.positions]  # (S,)
    assert torch.equal(sampler.sorted_targets, targets[sampler.order])
    assert torch.equal(sampler.order[sampler.rank], torch.arange(len(samples)))
    counts = torch.bincount(targets, minlength=N + 1)
    assert torch.equal(sampler.range_end - sampler.range_start, counts)
    assert sampler.state_dict() == {}, "the index is frozen data, never checkpointed"


@pytest.mark.unit
def test_same_target_picks_share_the_target_and_are_never_the_anchor(samples):
    torch.manual_seed(0)
    sampler = loaded_sampler(samples)
    targets = samples.items[samples.positions]  # (S,)
    for _ in range(50):
        picks = sampler.sample(samples.positions, targets)  # (S,)
        for anchor, pick in enumerate(picks.tolist()):
            others = [j for j in range(len(samples)) if j != anchor and targets[j] == targets[anchor]]
            if others:
                assert pick in others
            else:
                assert pick == -1, "a unique target falls back to the anchor itself"


@pytest.mark.unit
def test_same_target_picks_are_uniform(samples):
    torch.manual_seed(0)
    sampler = loaded_sampler(samples)
    targets = samples.items[samples.positions]
    anchor = int(torch.nonzero(targets == 2)[1])  # target 2 has three samples: two candidates
    others = [j for j in torch.nonzero(targets == 2).flatten().tolist() if j != anchor]
    draws = 6000
    picks = sampler.sample(samples.positions[anchor].repeat(draws), targets[anchor].repeat(draws))
    frequencies = torch.bincount(picks, minlength=len(samples)).float() / draws
    assert frequencies[others].sum() == 1
    assert torch.allclose(frequencies[others], torch.full((2,), 0.5), atol=0.03)
    # An anchor that is not a training sample (e.g. a validation target) excludes nothing: all three are drawn.
    outside = sampler.sample(torch.tensor([10_000]).repeat(draws), targets[anchor].repeat(draws))
    frequencies = torch.bincount(outside, minlength=len(samples)).float() / draws
    assert torch.allclose(frequencies[[anchor, *others]], torch.full((3,), 1 / 3), atol=0.03)


@pytest.mark.unit
def test_windows_equal_the_dataset_windows(samples):
    sampler = loaded_sampler(samples)
    indices = torch.arange(len(samples)).flip(0)
    assert torch.equal(sampler.windows(indices), samples.input_windows(indices))


@pytest.mark.unit
def test_positive_windows_fall_back_to_the_anchor_and_otherwise_share_its_target(samples):
    torch.manual_seed(0)
    module = duorec(samples)
    batch = samples.__getitems__(list(range(len(samples))))
    targets = batch.target
    views = module.objectives["base_objective"].views
    assert isinstance(views, SameTargetViews)
    windows = views.positive_windows(batch)  # (S, L)
    all_windows = samples.input_windows(torch.arange(len(samples)))
    for anchor in range(len(samples)):
        same = [j for j in range(len(samples)) if targets[j] == targets[anchor]]
        if len(same) == 1:
            assert torch.equal(windows[anchor], batch.input_ids[anchor])
        else:
            assert any(torch.equal(windows[anchor], all_windows[j]) for j in same if j != anchor)


@pytest.mark.unit
def test_sampling_needs_the_index(samples):
    with pytest.raises(RuntimeError, match="not loaded"):
        SameTargetSampler(L).sample(torch.tensor([1]), torch.tensor([2]))
    # DuoRec's objective before setup (outside trainer.fit) has no index either.
    module = SRACLModule(N, L, encoder=TINY_SASREC, base_objective=DuoRecContrast)
    with pytest.raises(RuntimeError, match="not loaded"):
        module.loss_terms(samples.__getitems__([0, 1]))


# ------------------------------------------------------------------------------------------------- loss
def naive_loss(anchors, positives, targets, temperature, mask_same_target):
    """Row by row: -log softmax of the partner among the candidates (not the row itself, not a same-target row)."""
    z = torch.cat([anchors, positives]).double()
    both = targets.repeat(2).tolist()
    b = len(targets)
    total = 0.0
    for q in range(2 * b):
        partner = (q + b) % (2 * b)
        keys = [k for k in range(2 * b)
                if k != q and (k == partner or not (mask_same_target and both[k] == both[q]))]
        logits = torch.stack([z[q] @ z[k] / temperature for k in keys])
        total += torch.logsumexp(logits, 0) - z[q] @ z[partner] / temperature
    return total / (2 * b)


@pytest.mark.unit
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_same_target_mask_matches_a_naive_loop(temperature):
    generator = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    targets = torch.tensor([3, 7, 3, 5, 3])
    masked = same_target_info_nce(anchors, positives, targets, temperature=temperature)
    assert masked.item() == pytest.approx(naive_loss(anchors, positives, targets, temperature, True).item(),
                                          rel=1e-5)
    unmasked = same_target_info_nce(anchors, positives, targets, temperature=temperature, mask_same_target=False)
    assert unmasked.item() == pytest.approx(naive_loss(anchors, positives, targets, temperature, False).item(),
                                            rel=1e-5)
    assert masked.item() != pytest.approx(unmasked.item())
    # Without the mask it is the released code's NT-Xent, i.e. losses.info_nce.
    assert torch.allclose(unmasked, info_nce(anchors, positives, temperature=temperature))


@pytest.mark.unit
def test_mask_excludes_same_target_rows_but_never_the_partner():
    mask = same_target_keys(torch.tensor([3, 7, 3]))  # rows: a0 a1 a2 p0 p1 p2
    expected = torch.tensor([[1, 0, 1, 0, 0, 1],
                             [0, 1, 0, 0, 0, 0],
                             [1, 0, 1, 1, 0, 0],
                             [0, 0, 1, 1, 0, 1],
                             [0, 0, 0, 0, 1, 0],
                             [1, 0, 0, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    generator = torch.Generator().manual_seed(1)
    anchors, positives = torch.randn(4, 4, generator=generator), torch.randn(4, 4, generator=generator)
    distinct = torch.tensor([1, 2, 3, 4])
    assert torch.allclose(same_target_info_nce(anchors, positives, distinct), info_nce(anchors, positives))
    # One target for the whole batch: each row's only candidate is its partner, the loss is exactly 0.
    assert same_target_info_nce(anchors, positives, torch.full((4,), 5)).item() == 0.0


@pytest.mark.unit
def test_same_target_info_nce_is_an_info_nce_by_hand():
    """Rows e1, e2 | e1, e2 (dot, τ = 1): every row's keys are its partner (logit 1) and two others (logit 0)."""
    eye = torch.eye(2)
    loss_fn = SameTargetInfoNCE()
    assert isinstance(loss_fn, InfoNCE)
    expected = math.log(math.e + 2) - 1
    assert loss_fn(eye, eye, torch.tensor([1, 2])).item() == pytest.approx(expected, rel=1e-6)
    assert InfoNCE()(eye, eye).item() == pytest.approx(expected, rel=1e-6)
    # One target for both: only the partner is left, the loss is 0; unmasked it is the plain NT-Xent again.
    assert loss_fn(eye, eye, torch.tensor([3, 3])).item() == 0.0
    unmasked = SameTargetInfoNCE(mask_same_target=False)(eye, eye, torch.tensor([3, 3]))
    assert unmasked.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="targets"):
        loss_fn(eye, eye)


@pytest.mark.unit
def test_loss_is_float32_and_finite_from_bf16():
    generator = torch.Generator().manual_seed(0)
    anchors, positives = (torch.randn(6, 4, generator=generator).bfloat16() * 30 for _ in range(2))
    loss = same_target_info_nce(anchors, positives, torch.tensor([1, 1, 2, 3, 2, 4]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


# ----------------------------------------------------------------------------------------------- module
@pytest.mark.unit
@pytest.mark.parametrize("neighbours", [EncodedNeighbours, MemoryBank], ids=["faithful", "memory_bank"])
def test_every_parameter_gets_a_gradient_with_sracl_on_top(samples, neighbours):
    torch.manual_seed(0)
    module = duorec(samples, sracl=True, neighbours=neighbours)
    batch = training_batch(samples)
    source = module.objectives["user_contrast"].neighbours
    assert type(source) is neighbours
    if neighbours is MemoryBank:
        source.bank = torch.randn(len(samples), D)
        before = source.bank.clone()
    terms = module.loss_terms(batch)
    assert set(terms) == {"rec", "user_cl", "item_cl", "duorec"} and all(torch.isfinite(t) for t in terms.values())
    loss = module.protocol()["loss"]
    assert "L_DuoRec" in loss and "L_CS" in loss and "L_IS" in loss
    sum(terms.values()).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert any(name.startswith("objectives.user_contrast.positive.synthesizer.") for name, _ in
               module.named_parameters())
    if neighbours is MemoryBank:
        assert not torch.equal(source.bank, before), "the anchors' bank rows were not refreshed"


@pytest.mark.unit
def test_duorec_alone_needs_no_semantics_and_its_term_is_weighted(samples):
    batch = samples.__getitems__(list(range(len(samples))))
    torch.manual_seed(0)
    base = duorec(samples, weight=1.0).eval()  # eval: no dropout, so both modules see equal passes
    assert set(base.objectives) == {"base_objective"}
    assert all(name.startswith("encoder.") for name, _ in base.named_parameters()), "DuoRec adds no parameters"
    half = duorec(samples, weight=0.5).eval()
    half.load_state_dict(base.state_dict())
    torch.manual_seed(3)
    full_terms = base.loss_terms(batch)
    torch.manual_seed(3)
    half_terms = half.loss_terms(batch)
    assert set(full_terms) == {"rec", "duorec"}
    assert torch.allclose(half_terms["rec"], full_terms["rec"])
    assert torch.allclose(half_terms["duorec"], 0.5 * full_terms["duorec"])
    # λ = 0 is SASRec alone and needs no index (the unloaded sampler would raise if it were computed).
    off = SRACLModule(N, L, base_objective=partial(DuoRecContrast, weight=0.0))
    assert set(off.loss_terms(batch)) == {"rec"} and "L_DuoRec" not in off.protocol()["loss"]
    with pytest.raises(ValueError, match="DuoRecContrast.weight"):
        SRACLModule(N, L, base_objective=partial(DuoRecContrast, weight=-1.0))


@pytest.mark.unit
def test_one_batch_overfits(samples):
    torch.manual_seed(0)
    module = SRACLModule(N, L, encoder=partial(TINY_SASREC, hidden_dropout=0.1, attn_dropout=0.1),
                         optimizer=partial(torch.optim.Adam, lr=1e-2), base_objective=DuoRecContrast)
    module.objectives["base_objective"].setup(TrainingContext(num_items=N, max_len=L, train_samples=samples))
    batch = samples.__getitems__(list(range(len(samples))))  # 12 samples, 9 items: dropout 0.5 would not fit it
    optimizer = module.configure_optimizers()
    first = None
    for _ in range(150):
        terms = module.loss_terms(batch)
        assert set(terms) == {"rec", "duorec"}
        first = first if first is not None else terms["rec"].item()
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    assert terms["rec"].item() < 0.2 * first


# -------------------------------------------------------------------------------------------------- CLI
@pytest.mark.integration
def test_duorec_trains_through_the_cli_and_checkpoints_stay_small(tmp_path, synthetic_reviews):
    args = tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "duorec.yaml"),
                     "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0")
    run_train(args)
    run = next((tmp_path / "runs").rglob("test_metrics.json"))
    results = json.loads(run.read_text())
    assert "L_DuoRec" in results["protocol"]["loss"] and "L_CS" not in results["protocol"]["loss"]
    assert results["protocol"]["encoder"] == "SASRec"
    header = next((run.parent.parent / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "train/duorec_loss_epoch" in header and "train/user_cl_loss_epoch" not in header

    checkpoint = torch.load(next(run.parent.rglob("last.ckpt")), weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["base_objective"]["class_path"] == "sracl_lightning.DuoRecContrast"
    assert hparams["base_objective"]["init_args"]["weight"] == 0.1
    assert hparams["user_contrast"] is None and hparams["item_contrast"] is None
    # The same-target index is frozen data (non-persistent buffers): the state dict is the encoder's alone.
    assert all(key.startswith("encoder.") for key in checkpoint["state_dict"]), "index must not be saved"
    restored = SRACLModule.load_from_checkpoint(results["checkpoint"], map_location="cpu")
    duorec_term = restored.objectives["base_objective"]
    assert type(duorec_term) is DuoRecContrast and duorec_term.weight == 0.1
    assert not duorec_term.views.same_target.loaded

    # evaluate.py restores a DuoRec checkpoint (as an SRACLModule: inference is the backbone alone).
    evaluated = load_script("evaluate").evaluate(results["checkpoint"], output_dir=str(tmp_path / "eval"),
                                                 accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(results["metrics"]["ndcg@10"], abs=1e-7)


@pytest.mark.integration
def test_duorec_with_sracl_overlay_instantiates_and_trains(tmp_path, synthetic_reviews, semantic_data_root):
    """"DuoRec + SRA-CL" (Fig. 3): configs/duorec.yaml, then a dataset's SRA-CL config."""
    data_root = semantic_data_root  # the minilm_nollm profile (item_mean, pool 10), built once per session
    configs = ["--config", str(REPO_ROOT / "configs" / "duorec.yaml"),
               "--config", str(REPO_ROOT / "configs" / "sracl" / "beauty.yaml")]
    text = (REPO_ROOT / "configs" / "duorec.yaml").read_text()
    assert text.startswith("#") and "Fig. 3" in text and "--config configs/duorec.yaml --config configs/sracl/" in text
    assert not (REPO_ROOT / "configs" / "sracl" / "duorec.yaml").exists()
    data_args = ["--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                 "--data.data_root", str(data_root)]
    cli = SRACLCLI(args=[*configs, *data_args, "--trainer.default_root_dir", str(tmp_path / "cli")])
    model, data = cli.model, cli.datamodule
    assert type(model) is SRACLModule
    assert set(model.objectives) == {"user_contrast", "item_contrast", "base_objective"}
    assert type(model.objectives["base_objective"]) is DuoRecContrast
    assert type(model.objectives["user_contrast"].neighbours) is MemoryBank
    assert type(model.objectives["item_contrast"].views) is SemanticSubstitution
    assert all(objective.weight == 0.1 for objective in model.objectives.values())
    assert model.hparams.semantic_dim == data.semantic_dim == 384 and data.num_neighbours == 10
    # The faithful cost mode: switching the neighbour source keeps every other setting.
    faithful = SRACLCLI(args=[*configs, "--model.init_args.user_contrast.init_args.neighbours",
                              "sracl_lightning.EncodedNeighbours", *data_args,
                              "--trainer.default_root_dir", str(tmp_path / "cli")]).model
    assert type(faithful.objectives["user_contrast"].neighbours) is EncodedNeighbours
    assert type(faithful.objectives["base_objective"]) is DuoRecContrast
    assert faithful.objectives["user_contrast"].weight == faithful.objectives["base_objective"].weight == 0.1

    run_train(tiny_args(synthetic_reviews, tmp_path, *configs, "--trainer.max_epochs", "1",
                        "--data.data_root", data_root))
    header = next((tmp_path / "runs").rglob("metrics.csv")).read_text().splitlines()[0]
    for term in ("duorec", "user_cl", "item_cl"):
        assert f"train/{term}_loss_epoch" in header
