"""SASRec: causality, padding invariance, gradients, the last-position shortcut, and overfitting one batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sracl_lightning.models.sasrec import SASRec
from tests.conftest import left_padded as pad

pytestmark = pytest.mark.unit

NUM_ITEMS, MAX_LEN = 50, 8


def make_model(**kwargs) -> SASRec:
    torch.manual_seed(0)
    return SASRec(NUM_ITEMS, MAX_LEN, hidden_size=16, num_heads=2, inner_size=32, **kwargs)


def left_padded(*sequences: list[int]) -> torch.Tensor:
    return pad(*sequences, width=MAX_LEN)


def test_output_shape_and_init() -> None:
    model = make_model()
    h = model(left_padded([1, 2, 3], [4]))
    assert h.shape == (2, 16)
    assert model.item_embeddings().shape == (NUM_ITEMS, 16)  # padding row excluded
    weight = model.blocks[0].feed_forward.dense_in.weight
    assert abs(weight.std().item() - 0.02) < 0.005
    assert model.blocks[0].attention.norm.eps == 1e-12


#: The parameters of make_model() before encoders could own extra tokens: old checkpoints hold exactly these.
BLOCK_SHAPES = {
    "attention.query.weight": (16, 16), "attention.query.bias": (16,), "attention.key.weight": (16, 16),
    "attention.key.bias": (16,), "attention.value.weight": (16, 16), "attention.value.bias": (16,),
    "attention.dense.weight": (16, 16), "attention.dense.bias": (16,), "attention.norm.weight": (16,),
    "attention.norm.bias": (16,), "feed_forward.dense_in.weight": (32, 16), "feed_forward.dense_in.bias": (32,),
    "feed_forward.dense_out.weight": (16, 32), "feed_forward.dense_out.bias": (16,),
    "feed_forward.norm.weight": (16,), "feed_forward.norm.bias": (16,),
}
CHECKPOINT_SHAPES = {
    "item_embedding.weight": (NUM_ITEMS + 1, 16), "position_embedding.weight": (MAX_LEN, 16),
    "embedding_norm.weight": (16,), "embedding_norm.bias": (16,),
    **{f"blocks.{i}.{name}": shape for i in range(2) for name, shape in BLOCK_SHAPES.items()},
}


def test_default_has_the_parameters_of_old_checkpoints() -> None:
    """No extra tokens by default: state_dict keys, order and shapes as before, and such a state loads strictly."""
    model = make_model()
    assert model.extra_tokens == ()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == list(CHECKPOINT_SHAPES.items())
    make_model().load_state_dict(model.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch for item_embedding.weight"):
        make_model(extra_tokens=("mask",)).load_state_dict(model.state_dict())  # a mask token is a new row


def test_last_position_shortcut_equals_full_forward() -> None:
    """forward() computes the final block for the last position only; it must equal the full computation."""
    model = make_model().eval()
    ids = left_padded([1, 2, 3, 4, 5, 6, 7, 8], [9, 10], [11])
    torch.testing.assert_close(model(ids), model.forward_all(ids)[:, -1])


def test_causal_mask_later_items_do_not_change_earlier_outputs() -> None:
    model = make_model().eval()
    ids = left_padded([1, 2, 3, 4, 5, 6])
    changed = ids.clone()
    changed[0, -1] = 42  # only the last item differs
    out, out_changed = model.forward_all(ids), model.forward_all(changed)
    earlier_real = (ids != 0)[0, :-1]  # padded query rows are never read out and may attend anywhere
    torch.testing.assert_close(out[0, :-1][earlier_real], out_changed[0, :-1][earlier_real])
    assert not torch.allclose(out[:, -1], out_changed[:, -1])


def test_padding_invariance() -> None:
    """Padded positions never leak: changing the padding embedding changes no real position's output."""
    model = make_model().eval()
    ids = left_padded([3, 1, 4], [1, 5, 9, 2, 6])
    before = model.forward_all(ids)
    with torch.no_grad():
        model.item_embedding.weight[0].normal_(std=5.0)
    after = model.forward_all(ids)
    real = ids != 0
    torch.testing.assert_close(before[real], after[real])


def test_result_does_not_depend_on_other_rows() -> None:
    model = make_model().eval()
    alone = model(left_padded([7, 8, 9]))
    batched = model(left_padded([7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8]))
    torch.testing.assert_close(alone[0], batched[0])


def test_every_parameter_gets_a_gradient() -> None:
    model = make_model()
    ids = left_padded([1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11])
    logits = model(ids) @ model.item_embeddings().T
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


def test_overfits_one_batch() -> None:
    model = make_model(hidden_dropout=0.0, attn_dropout=0.0)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, NUM_ITEMS + 1, (16, MAX_LEN), generator=generator)
    target = torch.randint(0, NUM_ITEMS, (16,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(ids) @ model.item_embeddings().T, target)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert (model(ids) @ model.item_embeddings().T).argmax(1).eq(target).all()


def test_rejects_a_window_longer_than_max_len() -> None:
    with pytest.raises(ValueError, match="exceeds max_len"):
        make_model()(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


def test_seeded_runs_are_identical() -> None:
    """Same seed, same data: bit-identical losses over a few training steps."""
    def losses() -> list[float]:
        model = make_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(5)
        out = []
        for _ in range(3):
            ids = torch.randint(1, NUM_ITEMS + 1, (8, MAX_LEN))
            loss = F.cross_entropy(model(ids) @ model.item_embeddings().T, torch.randint(0, NUM_ITEMS, (8,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            out.append(loss.item())
        return out

    assert losses() == losses()
