"""SRA-CL in the module: loss terms, gradients, the w/o-CL switch, the parts (memory bank, random-neighbour positive),
the shipped configs and their overlays, and CLI runs on a built semantic profile."""

from __future__ import annotations

import importlib
import json
from functools import partial

import pytest
import torch
import yaml

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import UsageError
from sracl_lightning.methods.duorec import DuoRecContrast
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.methods.user_contrast import (
    EncodedNeighbours,
    MemoryBank,
    RandomNeighbourPositive,
    SynthesizedPositive,
    UserContrast,
)
from sracl_lightning.methods.views import LearnableSubstitution, SemanticSubstitution, ViewContrast
from sracl_lightning.models.gru4rec import GRU4Rec
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.training.cli import SRACLCLI
from tests.conftest import REPO_ROOT, item_table, load_script, run_train, tiny_args, toy_batch, toy_samples
from tests.conftest import TOY_BATCH as B
from tests.conftest import TOY_ITEMS as N
from tests.conftest import TOY_LEN as L
from tests.conftest import TOY_NEIGHBOURS as K
from tests.conftest import TOY_SEMANTIC_DIM as E

CONFIGS = REPO_ROOT / "configs"
TINY_SASREC = partial(SASRec, hidden_size=16, num_layers=1, num_heads=1, inner_size=32)
SYNTHESIZER = "objectives.user_contrast.positive.synthesizer."


def sracl(encoder=None, user_weight: float | None = 0.1, item_weight: float | None = 0.1,
          neighbours=EncodedNeighbours, positive=SynthesizedPositive, **kwargs) -> SRACLModule:
    """SRA-CL with both objectives (weight ``None``: the slot left empty), the item neighbour table loaded.

    The neighbours default to the released code's cost mode (encoded with gradient), the one that needs no bank.
    """
    user = None if user_weight is None else partial(UserContrast, weight=user_weight, positive=positive,
                                                    neighbours=neighbours)
    item = None if item_weight is None else partial(ViewContrast, weight=item_weight)
    module = SRACLModule(N, L, encoder=encoder or TINY_SASREC, semantic_dim=E, user_contrast=user,
                         item_contrast=item, **kwargs)
    if item is not None:
        module.objectives["item_contrast"].views.item_neighbours = item_table(torch.Generator().manual_seed(1))
    return module


def no_neighbours(batch: SeqBatch) -> SeqBatch:
    """The batch without the neighbour fields (as the DataModule yields it without a semantic profile)."""
    return SeqBatch(batch.input_ids, batch.target, batch.position, batch.user)


def without_gradient(module: torch.nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


@pytest.mark.unit
@pytest.mark.parametrize("encoder", [None, partial(GRU4Rec, hidden_size=16, gru_hidden_size=16)],
                         ids=["sasrec", "gru4rec"])
def test_every_parameter_gets_a_gradient(encoder):
    torch.manual_seed(0)
    module = sracl(encoder)
    assert any(name.startswith(SYNTHESIZER) for name, _ in module.named_parameters())
    terms = module.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
    assert set(terms) == {"rec", "user_cl", "item_cl"} and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    missing = without_gradient(module)
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.unit
def test_terms_are_weighted_and_each_can_be_turned_off():
    generator = torch.Generator().manual_seed(0)
    batch = toy_batch(generator)
    torch.manual_seed(0)
    base = sracl(user_weight=1.0, item_weight=1.0).eval()  # eval: no dropout, equal passes
    torch.manual_seed(0)
    half = sracl(user_weight=0.5, item_weight=0.5).eval()
    half.load_state_dict(base.state_dict())
    torch.manual_seed(3)
    full_terms = base.loss_terms(batch)
    torch.manual_seed(3)
    half_terms = half.loss_terms(batch)
    assert torch.allclose(half_terms["rec"], full_terms["rec"])
    assert torch.allclose(half_terms["user_cl"], 0.5 * full_terms["user_cl"])
    assert torch.allclose(half_terms["item_cl"], 0.5 * full_terms["item_cl"])
    # Weight 0: the term is not computed (L_CS on a batch without neighbours would raise), nor in the protocol.
    no_user = sracl(user_weight=0.0)
    assert set(no_user.loss_terms(no_neighbours(batch))) == {"rec", "item_cl"}
    assert "L_CS" not in no_user.protocol()["loss"] and "0.1·L_IS" in no_user.protocol()["loss"]
    assert set(sracl(item_weight=0.0).loss_terms(batch)) == {"rec", "user_cl"}
    assert set(sracl(user_weight=0.0, item_weight=0.0).loss_terms(no_neighbours(batch))) == {"rec"}


@pytest.mark.unit
def test_weight_zero_keeps_the_parameters_and_an_empty_slot_has_none():
    """An α or β sweep through 0 keeps the parameter set (checkpoints load across it); a null slot drops them."""
    on = sracl()
    names = {name for name, _ in on.named_parameters()}
    assert any(name.startswith(SYNTHESIZER) for name in names)
    for weights in ({"user_weight": 0.0}, {"item_weight": 0.0}, {"user_weight": 0.0, "item_weight": 0.0}):
        off = sracl(**weights)
        assert {name for name, _ in off.named_parameters()} == names, weights
        off.load_state_dict(on.state_dict())  # strict
        assert set(off.objectives) == {"user_contrast", "item_contrast"}
    empty = sracl(user_weight=None)
    assert set(empty.objectives) == {"item_contrast"}
    assert not any(name.startswith("objectives.user_contrast") for name, _ in empty.named_parameters())
    assert {name for name, _ in empty.named_parameters()} == {n for n in names if not n.startswith(SYNTHESIZER)}


@pytest.mark.unit
def test_backbone_alone_needs_no_semantics_and_sracl_says_what_is_missing():
    plain = SRACLModule(N, L)
    assert len(plain.objectives) == 0
    assert all(name.startswith("encoder.") for name, _ in plain.named_parameters())
    ids = torch.randint(1, N + 1, (B, L))
    batch = SeqBatch(ids, torch.randint(1, N + 1, (B,)), torch.arange(B), torch.arange(B))
    assert set(plain.loss_terms(batch)) == {"rec"}
    assert plain.protocol()["loss"] == "full-softmax cross-entropy"

    # The synthesized positive needs the semantic width: a readable UsageError naming the missing option.
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        SRACLModule(N, L, user_contrast=partial(UserContrast, weight=0.1))
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        SynthesizedPositive(MethodDims(N, L, 16))
    # Parts without parameters build without it, but cannot be set up without the semantic tables.
    samples = toy_samples({"u": [1, 2, 3, 4, 5], "v": [6, 7, 8, 9]}, N, L)
    no_profile = TrainingContext(num_items=N, max_len=L, train_samples=samples)
    dims = MethodDims(N, L, 16)
    for objective in (UserContrast(dims, positive=RandomNeighbourPositive), ViewContrast(dims)):
        with pytest.raises(UsageError, match="--data.semantic_profile"):
            objective.setup(no_profile)
    # ...nor run without neighbours in the batch.
    module = SRACLModule(N, L, semantic_dim=E, user_contrast=partial(UserContrast, weight=0.1))
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        module.loss_terms(batch)
    with pytest.raises(UsageError, match="neighbours"):
        module.objectives["user_contrast"](batch, torch.zeros(B, 64), module.encoder)


@pytest.mark.unit
def test_inference_uses_the_backbone_alone():
    module = sracl().eval()
    ids = torch.randint(1, N + 1, (B, L))
    assert torch.equal(module(ids), module.encoder(ids))
    plain = SRACLModule(N, L, encoder=TINY_SASREC).eval()
    plain.encoder.load_state_dict(module.encoder.state_dict())
    assert torch.equal(plain(ids), module(ids)), "the objectives must not change inference"
    assert torch.equal(plain.item_scores(plain(ids)), module.item_scores(module(ids)))


@pytest.mark.unit
def test_one_batch_overfits_with_all_terms():
    torch.manual_seed(0)
    module = sracl(optimizer=partial(torch.optim.Adam, lr=1e-2))
    batch = toy_batch(torch.Generator().manual_seed(0))
    optimizer = module.configure_optimizers()
    first = None
    for _ in range(80):
        terms = module.loss_terms(batch)
        assert set(terms) == {"rec", "user_cl", "item_cl"}
        loss = sum(terms.values())
        first = first if first is not None else terms["rec"].item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert terms["rec"].item() < 0.2 * first


@pytest.mark.integration
def test_sracl_trains_through_the_cli_on_a_semantic_profile(tmp_path, synthetic_reviews, semantic_data_root):
    """The released code's cost mode (faithful.yaml), with α set on the command line."""
    args = tiny_args(synthetic_reviews, tmp_path, "--config", str(CONFIGS / "sracl" / "beauty.yaml"),
                     "--config", str(CONFIGS / "sracl" / "faithful.yaml"),
                     "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--data.data_root", semantic_data_root,
                     "--data.semantic_profile", "minilm_nollm", "--data.num_neighbours", "3",
                     "--model.init_args.user_contrast.init_args.weight", "0.2")
    run_train(args)
    run = next((tmp_path / "runs").rglob("test_metrics.json"))
    loss = json.loads(run.read_text())["protocol"]["loss"]
    assert "0.2·L_CS" in loss and "encoded with gradient" in loss and "0.1·L_IS" in loss
    metrics = (run.parent.parent / "csv").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    assert "train/user_cl_loss_epoch" in header and "train/item_cl_loss_epoch" in header
    checkpoint = torch.load(next(run.parent.rglob("last.ckpt")), weights_only=True)
    assert checkpoint["hyper_parameters"]["semantic_dim"] == 384
    state = checkpoint["state_dict"]
    assert not any(key.endswith(("item_neighbours", "bank")) for key in state), "frozen data must not bloat checkpoints"
    assert {key[len(SYNTHESIZER):] for key in state if key.startswith(SYNTHESIZER)} == {"adapter", "attention"}
    assert all(key.startswith(("encoder.", SYNTHESIZER)) for key in state), sorted(state)

    # evaluate.py restores an SRA-CL checkpoint (synthesizer included) and ranks with the backbone alone.
    trained = json.loads(run.read_text())["metrics"]
    best = json.loads(run.read_text())["checkpoint"]
    evaluated = load_script("evaluate").evaluate(best, output_dir=str(tmp_path / "eval"), accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(trained["ndcg@10"], abs=1e-7)


# ------------------------------------------------------------------------------------------ memory-bank mode
@pytest.mark.unit
def test_memory_bank_mode_reads_neighbours_from_the_bank_and_refreshes_anchor_rows():
    torch.manual_seed(0)
    module = sracl(neighbours=MemoryBank).eval()  # eval: the refreshed rows equal a fresh pass exactly
    source = module.objectives["user_contrast"].neighbours
    assert isinstance(source, MemoryBank)
    source.bank = torch.randn(2 * B, 16)  # rows B..2B-1 belong to no anchor of the batch
    batch = toy_batch(torch.Generator().manual_seed(0))  # prefix rows 0..B-1
    batch.neighbour_rows = torch.randint(0, 2 * B, (B, K))
    before = source.bank.clone()
    assert torch.equal(source.hidden(batch, module.encoder), before[batch.neighbour_rows])
    picks = torch.randint(0, K, (B,))
    assert torch.equal(source.hidden_of(batch, picks, module.encoder),
                       before[batch.neighbour_rows[torch.arange(B), picks]])
    terms = module.loss_terms(batch)
    sum(terms.values()).backward()
    assert torch.allclose(source.bank[:B], module(batch.input_ids).detach(), atol=1e-6), "anchor rows not refreshed"
    assert torch.equal(source.bank[B:], before[B:]), "rows of other prefixes must stay"
    assert not source.bank.requires_grad
    assert not any(key.endswith("bank") for key in module.state_dict()), "the bank is rebuilt, never checkpointed"
    missing = without_gradient(module)
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.unit
def test_memory_bank_can_encode_the_anchor_a_second_time_as_the_released_code():
    module = sracl(neighbours=partial(MemoryBank, separate_anchor=True)).train()  # dropout on: two passes differ
    source = module.objectives["user_contrast"].neighbours
    source.bank = torch.randn(2 * B, 16)
    batch = toy_batch(torch.Generator().manual_seed(0))
    h = module(batch.input_ids)  # (B, D): the recommendation pass
    torch.manual_seed(1)
    anchor = source.anchor(batch, h, module.encoder)
    torch.manual_seed(1)
    second = module(batch.input_ids)  # the same dropout draws as the anchor's pass
    assert torch.equal(anchor, second) and not torch.allclose(anchor, h), "the anchor is its own pass"
    assert torch.equal(source.bank[:B], anchor.detach()), "the bank's anchor rows come from the anchor's pass"
    anchor.sum().backward()
    assert module.encoder.item_embedding.weight.grad is not None, "L_CS reaches the encoder through the anchor"
    assert "anchor encoded a second time" in source.describe()
    assert "second" not in MemoryBank(MethodDims(N, L, 16)).describe()


@pytest.mark.unit
def test_memory_bank_is_rebuilt_from_every_training_prefix_in_eval_mode():
    samples = toy_samples({"u": [1, 2, 3, 4, 5, 6, 7], "v": [8, 9, 10, 11, 12], "w": [3, 1, 4, 1, 5, 9]}, N, L)
    torch.manual_seed(0)
    encoder = TINY_SASREC(N, L)
    source = MemoryBank(MethodDims(N, L, 16), batch_size=2)  # several chunks
    with pytest.raises(RuntimeError, match="setup"):
        source.rebuild(encoder)
    source.setup(TrainingContext(num_items=N, max_len=L, train_samples=samples))
    encoder.train()
    source.on_train_epoch_start(encoder)
    assert encoder.training, "the encoder's mode is restored"
    with torch.no_grad():
        expected = encoder.eval()(samples.input_windows(torch.arange(len(samples))))
    assert source.bank.shape == (len(samples), 16) and not source.bank.requires_grad
    assert torch.allclose(source.bank, expected, atol=1e-6)


@pytest.mark.integration
def test_memory_bank_mode_trains_through_the_cli(tmp_path, synthetic_reviews, semantic_data_root):
    args = tiny_args(synthetic_reviews, tmp_path, "--config", str(CONFIGS / "sracl" / "beauty.yaml"),
                     "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--data.data_root", semantic_data_root, "--data.num_neighbours", "3",
                     "--model.init_args.item_contrast.init_args.weight", "0.3")
    run_train(args)
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert "neighbours from a no-grad memory bank" in results["protocol"]["loss"]
    assert "0.3·L_IS" in results["protocol"]["loss"]
    evaluated = load_script("evaluate").evaluate(results["checkpoint"], output_dir=str(tmp_path / "eval"),
                                                 accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(results["metrics"]["ndcg@10"], abs=1e-7)

    from sracl_lightning.methods import legacy
    from sracl_lightning.training.trained import load_trained

    checkpoint = torch.load(results["checkpoint"], weights_only=True)
    state = checkpoint["state_dict"]
    backbone = {key: value for key, value in state.items() if key.startswith("encoder.")}
    kept = {"num_items", "max_len", "encoder", "optimizer", "metric_ks", "mask_seen_items", "_instantiator"}
    old_hparams = {key: value for key, value in checkpoint["hyper_parameters"].items() if key in kept}
    assert set(old_hparams) == kept
    # The old flat layout's class paths (sracl_lightning.MOVED_MODULES).
    old_hparams["encoder"] = dict(old_hparams["encoder"], class_path="sracl_lightning.sasrec.SASRec")

    # A checkpoint from before the CL weights were arguments holds the backbone alone: it loads with no objective.
    old = dict(checkpoint, state_dict=backbone,
               hyper_parameters=old_hparams | {"_class_path": "sracl_lightning.module.SRACLModule"})
    torch.save(old, tmp_path / "before_weights.ckpt")
    model = load_trained(tmp_path / "before_weights.ckpt")
    assert type(model) is legacy.SRACLModule and len(model.objectives) == 0

    # An old MemoryBankSRACL checkpoint (CL weights as arguments, synthesizer.* parameters) loads into the slots.
    synthesizer = {key.replace(SYNTHESIZER, "synthesizer."): value for key, value in state.items()
                   if key.startswith(SYNTHESIZER)}
    assert synthesizer
    old = dict(checkpoint, state_dict=backbone | synthesizer, hyper_parameters=old_hparams | {
        "_class_path": "sracl_lightning.memory_bank.MemoryBankSRACL", "user_cl_weight": 0.1, "item_cl_weight": 0.3,
        "semantic_dim": 384})
    torch.save(old, tmp_path / "memory_bank.ckpt")
    model = load_trained(tmp_path / "memory_bank.ckpt")
    assert type(model) is legacy.MemoryBankSRACL
    assert isinstance(model.objectives["user_contrast"].neighbours, MemoryBank)
    assert model.objectives["user_contrast"].weight == 0.1 and model.objectives["item_contrast"].weight == 0.3
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


# ------------------------------------------------------------------------------------------------- configs
SRACL_CONFIGS = sorted((CONFIGS / "sracl").glob("*.yaml"))
#: Overlays on a dataset's SRA-CL config, not configs of their own.
SRACL_OVERLAYS = {"faithful", "learnable_substitution", "released_code", "paper_infonce", "separate_anchor"}


def instantiate(data_root: str, reviews, tmp_path, *configs) -> SRACLCLI:
    """SRACLCLI over ``configs`` (in order) on the synthetic reviews and the fixture's profiles."""
    args = [arg for c in configs for arg in ("--config", str(c))]
    return SRACLCLI(args=[*args, "--data.dataset", str(reviews), "--data.source_format", "amazon",
                          "--data.data_root", data_root, "--trainer.default_root_dir", str(tmp_path / "runs")])


@pytest.mark.integration
@pytest.mark.parametrize("config", SRACL_CONFIGS, ids=lambda p: p.stem)
def test_every_sracl_config_instantiates_on_a_built_profile(config, tmp_path, synthetic_reviews, semantic_data_root):
    text = config.read_text()
    assert text.startswith("#") and "python train.py" in text, "configs open with a comment and the command"
    profile = yaml.safe_load(text).get("data", {}).get("semantic_profile", "minilm_nollm")
    assert profile in {"minilm_nollm", "cooccurrence"}, f"{config.name} names a profile the fixture does not build"
    cooccurrence = profile == "cooccurrence"
    # Overlays go on top of what they modify: a dataset's SRA-CL config.
    configs = [CONFIGS / "sracl" / "beauty.yaml"] if config.stem in SRACL_OVERLAYS else []
    cli = instantiate(semantic_data_root, synthetic_reviews, tmp_path, *configs, config)
    model, data = cli.model, cli.datamodule
    assert type(model) is SRACLModule and set(model.objectives) == {"user_contrast", "item_contrast"}
    user, item = model.objectives["user_contrast"], model.objectives["item_contrast"]
    assert type(user) is UserContrast and type(item) is ViewContrast
    assert user.weight == item.weight == 0.1
    assert model.hparams.semantic_dim == data.semantic_dim == (16 if cooccurrence else 384)
    assert data.num_neighbours == 10
    neighbours = EncodedNeighbours if config.stem == "faithful" else MemoryBank
    assert type(user.neighbours) is neighbours
    assert getattr(user.neighbours, "separate_anchor", False) == (config.stem == "separate_anchor")
    assert type(user.positive) is SynthesizedPositive
    assert user.positive.synthesizer.dropout.p == (0.5 if config.stem == "released_code" else 0.0)
    views = LearnableSubstitution if config.stem == "learnable_substitution" else SemanticSubstitution
    assert type(item.views) is views and item.views.probability == 0.2
    negatives = "positives" if config.stem == "paper_infonce" else "all"  # Eq. 9, or the released code's NT-Xent
    assert user.loss.negatives == item.loss.negatives == negatives
    assert user.loss.temperature == item.loss.temperature == 1.0


ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))
# Every overlay on the SRA-CL config of every dataset it applies to ("w/o semantic" only where there is item text).
ABLATION_CASES = [(dataset, overlay) for overlay in ABLATIONS for dataset in ("beauty", "sports", "office", "yelp")
                  if overlay.stem != "wo_semantic" or dataset in ("beauty", "sports")]


@pytest.mark.integration
@pytest.mark.parametrize(("dataset", "ablation"), ABLATION_CASES, ids=lambda v: v if isinstance(v, str) else v.stem)
def test_every_ablation_config_instantiates(dataset, ablation, semantic_data_root, tmp_path, synthetic_reviews):
    text = ablation.read_text()
    assert text.startswith("# Table 2") and "python train.py" in text and "configs/tables/ablations.yaml" in text
    cli = instantiate(semantic_data_root, synthetic_reviews, tmp_path, CONFIGS / "sracl" / f"{dataset}.yaml", ablation)
    model = cli.model
    expected = {"wo_cl": set(), "wo_lcs": {"item_contrast"}, "wo_lis": {"user_contrast"}}.get(
        ablation.stem, {"user_contrast", "item_contrast"})
    assert set(model.objectives) == expected
    assert all(objective.weight == 0.1 for objective in model.objectives.values())
    if "user_contrast" in expected:
        user = model.objectives["user_contrast"]
        assert type(user.neighbours) is MemoryBank
        positive = RandomNeighbourPositive if ablation.stem == "wo_learnable" else SynthesizedPositive
        assert type(user.positive) is positive
    if "item_contrast" in expected:
        assert type(model.objectives["item_contrast"].views) is SemanticSubstitution
    has_synthesizer = any(name.startswith(SYNTHESIZER) for name, _ in model.named_parameters())
    assert has_synthesizer == ("user_contrast" in expected and ablation.stem != "wo_learnable")
    if ablation.stem == "wo_semantic":
        assert cli.datamodule.semantic_profile == "cooccurrence" and model.hparams.semantic_dim == 16
    if ablation.stem == "wo_cl":
        assert cli.datamodule.semantic_profile is None and model.hparams.semantic_dim is None
        assert all(name.startswith("encoder.") for name, _ in model.named_parameters())


@pytest.mark.integration
def test_a_missing_semantic_profile_is_a_usage_error_naming_the_option(tmp_path, synthetic_reviews,
                                                                        semantic_data_root):
    with pytest.raises(UsageError, match="--data.semantic_profile"):
        SRACLCLI(args=["--config", str(CONFIGS / "sracl" / "beauty.yaml"), "--data.semantic_profile", "null",
                       "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                       "--data.data_root", semantic_data_root, "--trainer.default_root_dir", str(tmp_path / "runs")])


# Overlay stacks in which the old design (one class per variant, picked by model.class_path) silently dropped a
# choice: each overlay now changes one part of one slot, so every earlier choice survives in either order.
SRACL_BEAUTY, FAITHFUL = CONFIGS / "sracl" / "beauty.yaml", CONFIGS / "sracl" / "faithful.yaml"
DUOREC, LEARNABLE = CONFIGS / "duorec.yaml", CONFIGS / "sracl" / "learnable_substitution.yaml"
WO_LEARNABLE = CONFIGS / "ablations" / "wo_learnable.yaml"
OVERLAY_STACKS = {
    "duorec_sracl_faithful": [DUOREC, SRACL_BEAUTY, FAITHFUL],
    "sracl_duorec_faithful": [SRACL_BEAUTY, DUOREC, FAITHFUL],
    "sracl_faithful_duorec": [SRACL_BEAUTY, FAITHFUL, DUOREC],
    "learnable_faithful": [SRACL_BEAUTY, LEARNABLE, FAITHFUL],
    "faithful_learnable": [SRACL_BEAUTY, FAITHFUL, LEARNABLE],
    "wo_learnable_faithful": [SRACL_BEAUTY, WO_LEARNABLE, FAITHFUL],
    "faithful_wo_learnable": [SRACL_BEAUTY, FAITHFUL, WO_LEARNABLE],
    "all": [DUOREC, SRACL_BEAUTY, LEARNABLE, WO_LEARNABLE, FAITHFUL],
}


@pytest.mark.integration
@pytest.mark.parametrize("stack", list(OVERLAY_STACKS), ids=str)
def test_stacked_overlays_keep_every_earlier_choice(stack, tmp_path, synthetic_reviews, semantic_data_root):
    configs = OVERLAY_STACKS[stack]
    model = instantiate(semantic_data_root, synthetic_reviews, tmp_path, *configs).model
    assert type(model) is SRACLModule
    user, item = model.objectives["user_contrast"], model.objectives["item_contrast"]
    assert type(user.neighbours) is EncodedNeighbours, "faithful.yaml's cost mode was dropped"
    assert user.weight == item.weight == 0.1
    if DUOREC in configs:
        assert type(model.objectives["base_objective"]) is DuoRecContrast, "the DuoRec base objective was dropped"
        assert model.objectives["base_objective"].weight == 0.1
    else:
        assert "base_objective" not in model.objectives
    views = LearnableSubstitution if LEARNABLE in configs else SemanticSubstitution
    assert type(item.views) is views
    positive = RandomNeighbourPositive if WO_LEARNABLE in configs else SynthesizedPositive
    assert type(user.positive) is positive
    assert any(name.startswith("objectives.item_contrast.views.synthesizer.") for name, _ in
               model.named_parameters()) == (LEARNABLE in configs)


# --------------------------------------------------------------------------------------------------- parts
@pytest.mark.unit
@pytest.mark.parametrize("neighbours", [MemoryBank, EncodedNeighbours], ids=["memory_bank", "encoded"])
def test_random_neighbour_positive_is_one_of_the_neighbours(neighbours):
    torch.manual_seed(0)
    module = SRACLModule(N, L, user_contrast=partial(UserContrast, positive=RandomNeighbourPositive,
                                                     neighbours=neighbours)).eval()  # needs no semantic width
    user = module.objectives["user_contrast"]
    batch = toy_batch(torch.Generator().manual_seed(0))
    batch.neighbour_rows = torch.randint(0, B, (B, K))
    if neighbours is MemoryBank:
        user.neighbours.bank = torch.randn(B, 64)
        candidates = user.neighbours.bank[batch.neighbour_rows]  # (B, K, D)
    else:
        candidates = module.encoder(batch.neighbour_input_ids.reshape(B * K, L)).view(B, K, -1)
    seen = set()
    for _ in range(20):
        positive = user.positive(batch, user.neighbours, module.encoder)  # (B, D)
        for b in range(B):
            matches = [k for k in range(K) if torch.allclose(positive[b], candidates[b, k], atol=1e-6)]
            assert matches, f"the positive of anchor {b} is none of its neighbours"
            seen.update((b, k) for k in matches)
    assert len(seen) > B, "the pick is random, not always the same neighbour"
    assert not any("synthesizer" in name for name, _ in module.named_parameters())
    assert all(name.startswith("encoder.") for name, _ in module.named_parameters())


@pytest.mark.unit
def test_no_method_class_has_two_base_classes_of_this_package():
    """Variants are composed from parts, never by multiple inheritance (the old MemoryBankDuoRec diamond)."""
    checked = set()
    for name in ("module", "parts", "user_contrast", "views", "duorec", "rec_losses"):
        module = importlib.import_module(f"sracl_lightning.methods.{name}")
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                ours = [base.__qualname__ for base in cls.__bases__ if base.__module__.startswith("sracl_lightning")]
                assert len(ours) <= 1, f"{cls.__qualname__} has the bases {ours}"
                checked.add(cls.__name__)
    assert {"SRACLModule", "Objective", "UserContrast", "MemoryBank", "ViewContrast", "LearnableSubstitution",
            "DuoRecContrast", "SameTargetViews", "FullSoftmaxCrossEntropy"} <= checked
