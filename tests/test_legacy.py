"""Checkpoints of the layout before the method layer (one class per variant, flat modules) still load: their old
``class_path`` strings import through ``sracl_lightning.MOVED_MODULES``, the shims of ``methods/legacy.py`` build
the equivalent objectives, old parameter names are renamed, and the encoder computes what it computed then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sracl_lightning.methods.duorec import DuoRecContrast
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.user_contrast import MemoryBank, SynthesizedPositive
from sracl_lightning.methods.views import LearnableSubstitution, SemanticSubstitution
from sracl_lightning.training.trained import load_trained
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "legacy"
CASES = {  # fixture -> (old class name, expected view generator, expects DuoRec's term)
    "memory_bank_sracl": ("MemoryBankSRACL", SemanticSubstitution, False),
    "learnable_substitution": ("LearnableSubstitutionSRACL", LearnableSubstitution, False),
    "memory_bank_duorec": ("MemoryBankDuoRec", SemanticSubstitution, True),
}


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_checkpoint_loads_as_the_composed_module(name):
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    old_class, views, duorec = CASES[name]
    model = load_trained(FIXTURES / f"{name}.ckpt").eval()
    assert isinstance(model, SRACLModule) and type(model).__name__ == old_class
    assert expected["class_path"].endswith(old_class) and expected["class_path"].count(".") == 2  # a flat module
    user = model.objectives["user_contrast"]
    assert isinstance(user.neighbours, MemoryBank) and isinstance(user.positive, SynthesizedPositive)
    assert isinstance(model.objectives["item_contrast"].views, views)
    assert isinstance(model.objectives["base_objective"], DuoRecContrast) if duorec else \
        "base_objective" not in model.objectives
    # The old parameters, renamed: the synthesizer's weights are the checkpoint's.
    state = torch.load(FIXTURES / f"{name}.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(user.positive.synthesizer.adapter, state["synthesizer.adapter"])
    if views is LearnableSubstitution:
        assert torch.equal(model.objectives["item_contrast"].views.synthesizer.attention,
                           state["item_synthesizer.attention"])
    # The encoder computes what it computed at the old commit.
    with torch.no_grad():
        hidden = model(torch.tensor(expected["windows"]))
    assert torch.allclose(hidden, torch.tensor(expected["hidden"]), atol=1e-5)


@pytest.mark.unit
def test_old_module_paths_import_as_the_new_modules():
    import sracl_lightning.duorec as old_duorec
    import sracl_lightning.sasrec as old_sasrec

    import sracl_lightning.methods.legacy as legacy
    from sracl_lightning.models import sasrec

    assert old_sasrec is sasrec and old_duorec is legacy
    assert old_sasrec.SASRec is sasrec.SASRec


LEGACY_RUNS = {  # fixture -> the configs that train the same method on the composed layer
    "memory_bank_sracl": ["sracl/synthetic.yaml"],
    "learnable_substitution": ["sracl/synthetic.yaml", "sracl/learnable_substitution.yaml"],
    "memory_bank_duorec": ["duorec.yaml", "sracl/synthetic.yaml"],
}


@pytest.fixture(scope="module")
def legacy_data(tmp_path_factory) -> tuple[str, str]:
    """The data the fixtures were trained on: the 301-user synthetic set as data/synthetic.py wrote it at 4dd8f67
    (before the generator planted item families), kept in fixtures/legacy/synthetic, and its 16-d co-occurrence
    profile built as the session's ``semantic_data_root`` builds it. Returns the review file and the data root."""
    from sracl_lightning.semantic.stage import SemanticStage

    reviews = str(FIXTURES / "synthetic" / "reviews_Synthetic_5.json.gz")
    data_root = str(tmp_path_factory.mktemp("legacy") / "processed")
    SemanticStage(dataset=reviews, source_format="amazon", data_root=data_root, profile="cooccurrence",
                  item_source="cooccurrence", user_source="item_mean", cooccurrence_dim=16, pool_size=10,
                  progress=False).run()
    return reviews, data_root


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(LEGACY_RUNS))
def test_the_composed_configs_train_exactly_as_the_old_classes(name, tmp_path, legacy_data):
    """The same run as the fixture's (seed 7, three batches, the 16-d co-occurrence profile, the same data), trained
    through the new configs: the same objectives drawing the same random numbers in the same order give the same
    weights. The fixtures predate the fused kernels, so this run takes PyTorch's eager ops, which reproduce them bit
    for bit."""
    from tests.conftest import run_train, tiny_args

    reviews, data_root = legacy_data
    configs = [arg for config in LEGACY_RUNS[name] for arg in ("--config", str(REPO_ROOT / "configs" / config))]
    run_train(tiny_args(Path(reviews), tmp_path, *configs, "--data.data_root", data_root,
                        "--data.semantic_profile", "cooccurrence", "--trainer.max_epochs", "1",
                        "--trainer.limit_train_batches", "3", "--seed_everything", "7",
                        "--model.init_args.fused_kernels", "false"))
    model = load_trained(next((tmp_path / "runs").rglob("last.ckpt"))).eval()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    with torch.no_grad():
        hidden = model(torch.tensor(expected["windows"]))
    assert torch.allclose(hidden, torch.tensor(expected["hidden"]), atol=1e-5)
