"""Shared fixtures: tiny datasets in the real on-disk formats, and the repository paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def load_synthetic_generator():
    """Import ``data/synthetic.py`` by path (``data/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic", REPO_ROOT / "data" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_reviews(tmp_path_factory) -> Path:
    """A small synthetic Amazon-style review file, generated once per session.

    301 users (odd, so a padding DDP sampler would repeat one on 2 ranks) and 120 items.
    """
    out = tmp_path_factory.mktemp("synthetic_raw")
    info = load_synthetic_generator().generate(out, num_users=301, num_items=120, seed=0)
    return Path(info["reviews_path"])


def left_padded(*sequences: list[int], width: int) -> torch.Tensor:
    """Windows of ``width`` items, right-aligned and left-padded with 0 as the data pipeline builds them."""
    out = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, width - len(seq):] = torch.tensor(seq)
    return out
