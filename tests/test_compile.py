"""``compile_mode``: the compiled encoder trains to the eager losses and keeps the eager checkpoint layout."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from sracl_lightning.errors import InvalidArgumentError
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.sasrec import SASRec
from tests.conftest import toy_batch

pytestmark = pytest.mark.integration


def tiny(compile_mode: str | None) -> SRACLModule:
    torch.manual_seed(0)
    encoder = partial(SASRec, hidden_size=16, num_heads=2, inner_size=32, hidden_dropout=0.0, attn_dropout=0.0)
    return SRACLModule(40, 6, encoder=encoder, compile_mode=compile_mode)


def losses(module: SRACLModule, steps: int = 3) -> list[float]:
    module.configure_model()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    out = []
    for step in range(steps):
        batch = toy_batch(torch.Generator().manual_seed(step))
        loss = torch.stack(list(module.loss_terms(batch).values())).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def test_a_bad_mode_is_named():
    with pytest.raises(InvalidArgumentError, match="compile_mode"):
        SRACLModule(40, 6, compile_mode="fastest")


@pytest.mark.slow  # inductor compiles C++ for forward and backward: about a minute or two on 2 cores
def test_compiled_training_matches_eager_and_keeps_the_checkpoint_layout():
    eager, compiled = tiny(None), tiny("default")
    expected, got = losses(eager), losses(compiled)
    assert got == pytest.approx(expected, rel=1e-4)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # compiled in place: no _orig_mod. prefix
    fresh = tiny(None)
    fresh.load_state_dict(compiled.state_dict())
