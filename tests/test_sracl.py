"""SRA-CL in the module: loss terms, gradients, the w/o-CL switch, and a CLI run on a built semantic profile."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import yaml

from sracl_lightning.batch import SeqBatch
from sracl_lightning.cli import SRACLCLI
from sracl_lightning.gru4rec import GRU4Rec
from sracl_lightning.module import SRACLModule
from sracl_lightning.sasrec import SASRec
from tests.conftest import REPO_ROOT, item_table, load_script, run_train, tiny_args, toy_batch
from tests.conftest import TOY_BATCH as B
from tests.conftest import TOY_ITEMS as N
from tests.conftest import TOY_LEN as L
from tests.conftest import TOY_NEIGHBOURS as K
from tests.conftest import TOY_SEMANTIC_DIM as E


def sracl(encoder=None, **kwargs) -> SRACLModule:
    encoder = encoder or partial(SASRec, hidden_size=16, num_layers=1, num_heads=1, inner_size=32)
    kwargs = {"user_cl_weight": 0.1, "item_cl_weight": 0.1, **kwargs}  # SRA-CL on (the default is the backbone)
    module = SRACLModule(N, L, encoder=encoder, semantic_dim=E, **kwargs)
    module.item_neighbours = item_table(torch.Generator().manual_seed(1))
    return module


@pytest.mark.unit
@pytest.mark.parametrize("encoder", [None, partial(GRU4Rec, hidden_size=16, gru_hidden_size=16)],
                         ids=["sasrec", "gru4rec"])
def test_every_parameter_gets_a_gradient(encoder):
    torch.manual_seed(0)
    module = sracl(encoder)
    terms = module.loss_terms(toy_batch(torch.Generator().manual_seed(0)))
    assert set(terms) == {"rec", "user_cl", "item_cl"} and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.unit
def test_terms_are_weighted_and_each_can_be_turned_off():
    generator = torch.Generator().manual_seed(0)
    batch = toy_batch(generator)
    torch.manual_seed(0)
    base = sracl(user_cl_weight=1.0, item_cl_weight=1.0).eval()  # eval: no dropout, equal passes
    torch.manual_seed(0)
    half = sracl(user_cl_weight=0.5, item_cl_weight=0.5).eval()
    half.load_state_dict(base.state_dict())
    torch.manual_seed(3)
    full_terms = base.loss_terms(batch)
    torch.manual_seed(3)
    half_terms = half.loss_terms(batch)
    assert torch.allclose(half_terms["user_cl"], 0.5 * full_terms["user_cl"])
    assert torch.allclose(half_terms["item_cl"], 0.5 * full_terms["item_cl"])
    assert set(sracl(user_cl_weight=0.0).loss_terms(batch)) == {"rec", "item_cl"}
    assert set(sracl(item_cl_weight=0.0).loss_terms(batch)) == {"rec", "user_cl"}


@pytest.mark.unit
def test_backbone_alone_needs_no_semantics_and_sracl_says_what_is_missing():
    plain = SRACLModule(N, L, user_cl_weight=0.0, item_cl_weight=0.0)
    assert plain.synthesizer is None
    ids = torch.randint(1, N + 1, (B, L))
    assert set(plain.loss_terms(SeqBatch(ids, torch.randint(1, N + 1, (B,)), torch.arange(B), torch.arange(B)))) \
        == {"rec"}
    with pytest.raises(ValueError, match="semantic_profile"):
        SRACLModule(N, L, user_cl_weight=0.1)  # α > 0: the synthesizer needs the semantic width
    module = SRACLModule(N, L, semantic_dim=E, user_cl_weight=0.1, item_cl_weight=0.0)
    with pytest.raises(ValueError, match="neighbours"):
        module.user_cl_loss(SeqBatch(ids, ids[:, -1], torch.arange(B), torch.arange(B)), torch.zeros(B, 64))


@pytest.mark.unit
def test_inference_uses_the_backbone_alone():
    module = sracl().eval()
    ids = torch.randint(1, N + 1, (B, L))
    assert torch.equal(module(ids), module.encoder(ids))


@pytest.mark.unit
def test_one_batch_overfits_with_all_terms():
    torch.manual_seed(0)
    module = sracl(optimizer=partial(torch.optim.Adam, lr=1e-2))
    batch = toy_batch(torch.Generator().manual_seed(0))
    optimizer = module.configure_optimizers()
    first = None
    for _ in range(80):
        terms = module.loss_terms(batch)
        loss = sum(terms.values())
        first = first if first is not None else terms["rec"].item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert terms["rec"].item() < 0.2 * first


@pytest.mark.integration
def test_sracl_trains_through_the_cli_on_a_semantic_profile(tmp_path, synthetic_reviews, semantic_data_root):
    args = tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--data.data_root", semantic_data_root,
                     "--data.semantic_profile", "minilm_nollm", "--data.num_neighbours", "3",
                     "--model.init_args.user_cl_weight", "0.1", "--model.init_args.item_cl_weight", "0.1")
    run_train(args)
    run = next((tmp_path / "runs").rglob("test_metrics.json"))
    assert "L_CS" in json.loads(run.read_text())["protocol"]["loss"]
    metrics = (run.parent.parent / "csv").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    assert "train/user_cl_loss_epoch" in header and "train/item_cl_loss_epoch" in header
    checkpoint = torch.load(next(run.parent.rglob("last.ckpt")), weights_only=True)
    assert checkpoint["hyper_parameters"]["semantic_dim"] == 384
    assert "item_neighbours" not in checkpoint["state_dict"], "frozen data must not bloat checkpoints"
    assert any(key.startswith("synthesizer.") for key in checkpoint["state_dict"])

    # evaluate.py restores an SRA-CL checkpoint (synthesizer included) and ranks with the backbone alone.
    trained = json.loads(run.read_text())["metrics"]
    best = json.loads(run.read_text())["checkpoint"]
    evaluated = load_script("evaluate").evaluate(best, output_dir=str(tmp_path / "eval"), accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(trained["ndcg@10"], abs=1e-7)


# ------------------------------------------------------------------------------------------ memory-bank mode
@pytest.mark.unit
def test_memory_bank_mode_reads_neighbours_from_the_bank_and_refreshes_anchor_rows():
    from sracl_lightning.memory_bank import MemoryBankSRACL

    torch.manual_seed(0)
    module = MemoryBankSRACL(N, L, encoder=partial(SASRec, hidden_size=16, num_layers=1, num_heads=1,
                                                   inner_size=32), semantic_dim=E,
                             user_cl_weight=0.1, item_cl_weight=0.1)
    module.item_neighbours = item_table(torch.Generator().manual_seed(1))
    module.bank = torch.randn(B, 16)
    batch = toy_batch(torch.Generator().manual_seed(0))
    batch.neighbour_rows = torch.randint(0, B, (B, K))
    before = module.bank.clone()
    assert torch.equal(module.neighbour_hidden(batch), before[batch.neighbour_rows])
    terms = module.loss_terms(batch)
    sum(terms.values()).backward()
    assert not torch.equal(module.bank, before), "the anchors' rows were not refreshed"
    assert not module.bank.requires_grad
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.integration
def test_memory_bank_mode_trains_through_the_cli(tmp_path, synthetic_reviews, semantic_data_root):
    args = tiny_args(synthetic_reviews, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1.0",
                     "--data.data_root", semantic_data_root,
                     "--model.class_path", "sracl_lightning.memory_bank.MemoryBankSRACL",
                     "--data.semantic_profile", "minilm_nollm",
                     "--model.init_args.user_cl_weight", "0.1", "--model.init_args.item_cl_weight", "0.1")
    run_train(args)
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    # Loaders import the package's subclass named in the checkpoint (Lightning would refuse it otherwise).
    evaluated = load_script("evaluate").evaluate(results["checkpoint"], output_dir=str(tmp_path / "eval"),
                                                 accelerator="cpu")
    assert float(evaluated["test/ndcg@10"]) == pytest.approx(results["metrics"]["ndcg@10"], abs=1e-7)

    # A checkpoint from before the CL weights were arguments holds the backbone alone: it loads with α = β = 0.
    from sracl_lightning.trained import load_trained

    checkpoint = torch.load(results["checkpoint"], weights_only=True)
    legacy = {k: v for k, v in checkpoint["hyper_parameters"].items()
              if k not in {"user_cl_weight", "item_cl_weight", "semantic_dim", "bank_batch_size"}}
    checkpoint["hyper_parameters"] = legacy | {"_class_path": "sracl_lightning.module.SRACLModule"}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("synthesizer.")}
    torch.save(checkpoint, tmp_path / "legacy.ckpt")
    model = load_trained(tmp_path / "legacy.ckpt")
    assert model.user_cl_weight == model.item_cl_weight == 0.0 and model.synthesizer is None


# ------------------------------------------------------------------------------------------------- configs
SRACL_CONFIGS = sorted((REPO_ROOT / "configs" / "sracl").glob("*.yaml"))


@pytest.mark.integration
@pytest.mark.parametrize("config", SRACL_CONFIGS, ids=lambda p: p.stem)
def test_every_sracl_config_instantiates_on_a_built_profile(config, tmp_path, synthetic_reviews, semantic_data_root):
    text = config.read_text()
    assert text.startswith("#") and "python train.py" in text, "configs open with a comment and the command"
    data_root = semantic_data_root  # holds the two profiles the configs name, built once per session
    profile = yaml.safe_load(text).get("data", {}).get("semantic_profile", "minilm_nollm")
    assert profile in {"minilm_nollm", "cooccurrence"}, f"{config.name} names a profile the fixture does not build"
    cooccurrence = profile == "cooccurrence"
    # Overlays go on top of what they modify: faithful.yaml on a dataset's SRA-CL config, duorec.yaml on DuoRec.
    configs = {"faithful": [REPO_ROOT / "configs" / "sracl" / "beauty.yaml"],
               "learnable_substitution": [REPO_ROOT / "configs" / "sracl" / "beauty.yaml"],
               "duorec": [REPO_ROOT / "configs" / "duorec.yaml"]}.get(config.stem, [])
    args = [arg for c in [*configs, config] for arg in ("--config", str(c))]
    cli = SRACLCLI(args=[*args, "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                         "--data.data_root", data_root, "--trainer.default_root_dir", str(tmp_path / "runs")])
    model, data = cli.model, cli.datamodule
    assert model.user_cl_weight == model.item_cl_weight == 0.1
    assert model.hparams.semantic_dim == data.semantic_dim == (16 if cooccurrence else 384)
    expected = {"faithful": "SRACLModule", "duorec": "MemoryBankDuoRec",
                "learnable_substitution": "LearnableSubstitutionSRACL"}.get(config.stem, "MemoryBankSRACL")
    assert type(model).__name__ == expected


ABLATIONS = sorted((REPO_ROOT / "configs" / "ablations").glob("*.yaml"))
# Every overlay on the SRA-CL config of every dataset it applies to ("w/o semantic" only where there is item text).
ABLATION_CASES = [(dataset, overlay) for overlay in ABLATIONS for dataset in ("beauty", "sports", "office", "yelp")
                  if overlay.stem != "wo_semantic" or dataset in ("beauty", "sports")]


@pytest.mark.integration
@pytest.mark.parametrize(("dataset", "ablation"), ABLATION_CASES, ids=lambda v: v if isinstance(v, str) else v.stem)
def test_every_ablation_config_instantiates(dataset, ablation, semantic_data_root, tmp_path, synthetic_reviews):
    text = ablation.read_text()
    assert text.startswith("# Table 2") and "python train.py" in text and "configs/tables/ablations.yaml" in text
    base = REPO_ROOT / "configs" / "sracl" / f"{dataset}.yaml"
    cli = SRACLCLI(args=["--config", str(base), "--config", str(ablation),
                         "--data.dataset", str(synthetic_reviews), "--data.source_format", "amazon",
                         "--data.data_root", semantic_data_root, "--trainer.default_root_dir", str(tmp_path / "runs")])
    model = cli.model
    expected = {"wo_cl": (0.0, 0.0), "wo_lcs": (0.0, 0.1), "wo_lis": (0.1, 0.0)}.get(ablation.stem, (0.1, 0.1))
    assert (model.user_cl_weight, model.item_cl_weight) == expected
    if ablation.stem == "wo_learnable":
        assert type(model).__name__ == "RandomNeighbourSRACL" and model.synthesizer is None
    if ablation.stem == "wo_semantic":
        assert cli.datamodule.semantic_profile == "cooccurrence"
    if ablation.stem == "wo_cl":
        assert cli.datamodule.semantic_profile is None and model.synthesizer is None


@pytest.mark.unit
def test_random_neighbour_positive_is_one_of_the_neighbours():
    from sracl_lightning.ablations import RandomNeighbourSRACL

    module = RandomNeighbourSRACL(N, L, semantic_dim=E, user_cl_weight=0.1, item_cl_weight=0.1)
    module.bank = torch.randn(B, 64)
    batch = toy_batch(torch.Generator().manual_seed(0))
    batch.neighbour_rows = torch.randint(0, B, (B, K))
    positive = module.user_positive(batch)  # (B, D)
    for b in range(B):
        assert any(torch.equal(positive[b], module.bank[r]) for r in batch.neighbour_rows[b])
    assert not any(name.startswith("synthesizer") for name, _ in module.named_parameters())
