"""Shared fixtures and helpers: tiny datasets in the real on-disk formats, the entry points, the repository paths.

Test modules import what they share from here (``from tests.conftest import ...``), never from one another.

Tiers: every test carries exactly one of the markers ``unit`` (fast, in-process, pure PyTorch/numpy/Python: no
Lightning Trainer or CLI run, no subprocess, no real model or dataset) and ``integration`` (the CLI, the
Trainer, subprocesses, DDP, real models and data). ``slow`` is added on top of a tier for what the default run
skips. :func:`pytest_collection_modifyitems` refuses a test with no tier or with both.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sracl_lightning.datasets.batch import SeqBatch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

TIERS = ("unit", "integration")


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads and restore the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse the run when a collected test has no tier marker or more than one."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid} ({', '.join(tiers) or 'no tier'})")
    if wrong:
        raise pytest.UsageError(f"every test needs exactly one of the markers {', '.join(TIERS)} (module-level "
                                "pytestmark or per test); wrong: " + "; ".join(wrong))


# ------------------------------------------------------------------------------------------- scripts and data
def load_script(name: str) -> ModuleType:
    """Import a repository script by path, e.g. ``"train"``, ``"evaluate"`` or ``"data/prepare"`` (no ``.py``).

    Args:
        name: The script's path relative to the repository root, without the ``.py`` suffix.

    Returns:
        The freshly executed module (scripts are not packages, so they are not importable by name).
    """
    path = REPO_ROOT / f"{name}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_synthetic_generator() -> ModuleType:
    """Import ``data/synthetic.py`` by path (``data/`` is not a package)."""
    return load_script("data/synthetic")


def tiny_args(reviews: Path, tmp_path: Path, *extra: str) -> list[str]:
    """train.py arguments for a tiny model (configs/debug.yaml) on ``reviews``, everything written under tmp_path.

    Args:
        reviews: An Amazon-2014-style review file (e.g. the ``synthetic_reviews`` fixture).
        tmp_path: Folder of the conversion (``processed``) and of the runs (``runs``).
        *extra: More arguments, appended last (so they win).

    Returns:
        The argument list, without the program name.
    """
    return [
        "--config", str(REPO_ROOT / "configs" / "debug.yaml"),
        "--data.dataset", str(reviews), "--data.source_format", "amazon",
        "--data.data_root", str(tmp_path / "processed"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
        *extra,
    ]


def run_train(args: list[str]) -> None:
    """Run ``train.py``'s ``main`` in this process with ``args`` as its command line (``sys.argv`` is restored).

    Works inside module-scoped fixtures, where the function-scoped ``monkeypatch`` fixture is not available.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py", *args])
        load_script("train").main()


@pytest.fixture(scope="session")
def synthetic_reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic Amazon-style review file, generated once per session.

    301 users (odd, so a padding DDP sampler would repeat one on 2 ranks) and 120 items.
    """
    out = tmp_path_factory.mktemp("synthetic_raw")
    info = load_synthetic_generator().generate(out, num_users=301, num_items=120, seed=0)
    return Path(info["reviews_path"])


@pytest.fixture(scope="session")
def semantic_data_root(tmp_path_factory: pytest.TempPathFactory, synthetic_reviews: Path) -> str:
    """A data root holding the two semantic profiles the shipped configs name, built once per session.

    ``minilm_nollm`` (items embedded with the real MiniLM) and ``cooccurrence`` (16-d), both with ``item_mean``
    user prefixes and pools of 10. Tests read it (train, instantiate configs) and must not write profiles into it.
    """
    from sracl_lightning.semantic.stage import SemanticStage

    data_root = str(tmp_path_factory.mktemp("profiles") / "processed")
    for profile, item_source in (("minilm_nollm", "text"), ("cooccurrence", "cooccurrence")):
        SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=data_root, profile=profile,
                      item_source=item_source, user_source="item_mean", cooccurrence_dim=16, pool_size=10,
                      progress=False).run()
    return data_root


# ------------------------------------------------------------------------------------------------ tensors
def left_padded(*sequences: list[int], width: int) -> torch.Tensor:
    """Windows of ``width`` items, right-aligned and left-padded with 0 as the data pipeline builds them."""
    out = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, width - len(seq):] = torch.tensor(seq)
    return out


#: Sizes of the SRA-CL toy batch: items, window, neighbours per anchor, semantic width, batch.
TOY_ITEMS, TOY_LEN, TOY_NEIGHBOURS, TOY_SEMANTIC_DIM, TOY_BATCH = 30, 6, 3, 8, 5


def toy_batch(generator: torch.Generator) -> SeqBatch:
    """An SRA-CL training batch with neighbours, left-padded like the real data (sizes ``TOY_*``)."""
    n, length, k, e, b = TOY_ITEMS, TOY_LEN, TOY_NEIGHBOURS, TOY_SEMANTIC_DIM, TOY_BATCH
    ids = torch.randint(1, n + 1, (b, length), generator=generator)
    ids[0, :3] = 0  # a short prefix
    neighbours = torch.randint(1, n + 1, (b, k, length), generator=generator)
    neighbours[:, 0, :2] = 0
    return SeqBatch(input_ids=ids, target=torch.randint(1, n + 1, (b,), generator=generator),
                    position=torch.arange(b), user=torch.arange(b), prefix_row=torch.arange(b),
                    semantic=torch.randn(b, e, generator=generator), neighbour_rows=torch.zeros(b, k, dtype=torch.long),
                    neighbour_input_ids=neighbours, neighbour_semantic=torch.randn(b, k, e, generator=generator))


def item_table(generator: torch.Generator) -> torch.Tensor:
    """(TOY_ITEMS + 1, TOY_NEIGHBOURS) neighbour ids 1..N, never the item itself; row 0 = -1."""
    n, k = TOY_ITEMS, TOY_NEIGHBOURS
    table = (torch.arange(n + 1)[:, None] + torch.randint(1, n, (n + 1, k), generator=generator)) % n + 1
    table[0] = -1
    return table


def toy_samples(users: dict[str, list[int]], num_items: int, max_len: int, split: str = "train"):
    """The :class:`~sracl_lightning.datasets.samples.SequenceSamples` of ``split`` over ``users``' sequences
    (items 1..``num_items``, user after user, in the dict's order), as the DataModule builds them."""
    import numpy as np

    from sracl_lightning.datasets.samples import SequenceSamples
    from sracl_lightning.datasets.sequences import Sequences

    lengths = [len(s) for s in users.values()]
    sequences = Sequences(items=np.concatenate([np.array(s, dtype=np.int32) for s in users.values()]),
                          offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                          user_tokens=list(users), item_tokens=[None, *map(str, range(1, num_items + 1))])
    return SequenceSamples(sequences, split, max_len)
