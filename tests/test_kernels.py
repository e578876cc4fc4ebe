"""The faster kernels compute the eager functions: equal values and gradients, dropout's keep rate and scale, the
switch back to the eager ops, and a few training steps of the module along both paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sracl_lightning.models import kernels
from sracl_lightning.models.kernels import Dropout, attention, dropout, fused_kernels, linear_cross_entropy

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("rows", [1, 63, 64, 130])
def test_linear_cross_entropy_equals_cross_entropy_of_the_logits(rows):
    generator = torch.Generator().manual_seed(rows)
    h = torch.randn(rows, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(37, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.randint(0, 37, (rows,), generator=generator)
    fused = linear_cross_entropy(h, weight, target)
    grads = torch.autograd.grad(2.5 * fused, (h, weight))
    eager = F.cross_entropy(h @ weight.T, target)
    expected = torch.autograd.grad(2.5 * eager, (h, weight))
    torch.testing.assert_close(fused, eager)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_linear_cross_entropy_is_stable_for_large_logits_and_gradchecks():
    h = torch.tensor([[300.0, -200.0], [0.5, 0.25]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([2, 1])
    torch.testing.assert_close(linear_cross_entropy(h, weight, target), F.cross_entropy(h @ weight.T, target))
    small_h = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    small_w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (5,))
    assert torch.autograd.gradcheck(lambda a, b: linear_cross_entropy(a, b, labels), (small_h, small_w))


def test_linear_cross_entropy_without_gradients_and_under_bf16_autocast():
    h, weight, target = torch.randn(70, 16), torch.randn(300, 16), torch.randint(0, 300, (70,))
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, weight, target), F.cross_entropy(h @ weight.T, target))
    h.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(h, weight, target)
        eager = F.cross_entropy(h @ weight.T, target)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, eager.float(), rtol=2e-2, atol=2e-2)
    (grad,) = torch.autograd.grad(fused, h)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()


def test_dropout_keeps_one_minus_p_and_scales_the_kept():
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = dropout(x, 0.3)
    kept = y != 0
    rate = kept.float().mean().item()
    assert abs(rate - 0.7) < 4 * (0.7 * 0.3 / 1_000_000) ** 0.5
    torch.testing.assert_close(y[kept], torch.full((int(kept.sum()),), 1 / 0.7))
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, y.detach())  # d y / d x is the mask itself
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert (dropout(x, 1.0) == 0).all()
    assert dropout(torch.ones(4, dtype=torch.bfloat16), 0.5).dtype == torch.bfloat16


def test_disabled_kernels_are_the_eager_ops_bit_for_bit():
    x = torch.randn(64, 32)
    module = Dropout(0.5)
    with fused_kernels(False):
        assert not kernels.fused_kernels_enabled()
        torch.manual_seed(3)
        ours = module(x)
        torch.manual_seed(3)
        assert torch.equal(ours, F.dropout(x, 0.5, True))
        h, weight, target = torch.randn(5, 4), torch.randn(9, 4), torch.randint(0, 9, (5,))
        assert torch.equal(linear_cross_entropy(h, weight, target), F.cross_entropy(h @ weight.T, target))
    assert kernels.fused_kernels_enabled()


def test_attention_without_dropout_is_sdpa_and_with_dropout_keeps_rows_scaled():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    bias = torch.zeros(3, 1, 5, 5).masked_fill_(torch.ones(5, 5, dtype=torch.bool).triu(1), -10000.0)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(attention(q, k, v, bias), expected)
    # With dropout p the explicit path averages to the same output: E[mask] = 1.
    runs = torch.stack([attention(q, k, v, bias, 0.5) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(runs, expected, rtol=0.1, atol=0.1)


def test_a_few_training_steps_give_equal_losses_along_both_paths():
    """Without dropout the two paths compute the same function: six Adam steps of the module, equal losses."""
    from functools import partial

    from sracl_lightning.datasets.batch import SeqBatch
    from sracl_lightning.methods.module import SRACLModule
    from sracl_lightning.models.sasrec import SASRec

    generator = torch.Generator().manual_seed(0)
    windows = [torch.randint(0, 41, (70, 6), generator=generator) for _ in range(2)] * 3  # seen again: fitted
    for window in windows:
        window[:, -1].clamp_(min=1)  # every window ends with an item
    batches = [SeqBatch(input_ids=window, target=torch.randint(1, 41, (70,), generator=generator),
                        position=torch.arange(70), user=torch.arange(70)) for window in windows]
    losses = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = SRACLModule(num_items=40, max_len=6, fused_kernels=fused,
                            encoder=partial(SASRec, hidden_size=16, hidden_dropout=0.0, attn_dropout=0.0))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses[fused] = []
        for batch in batches:
            with fused_kernels(model.fused_kernels):
                loss = model.loss_terms(batch)["rec"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[fused].append(loss.item())
    assert losses[True][-1] < losses[True][0]  # it trains
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)


def test_fused_optimizer_takes_the_same_steps_as_the_default_implementation():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(50, 8)), torch.nn.Parameter(torch.randn(8))]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    default = torch.optim.Adam([{"params": copies[:1]}, {"params": copies[1:], "lr": 0.05}], lr=0.01,
                               weight_decay=0.1)
    fused = kernels.fused_optimizer(torch.optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}],
                                                     lr=0.01, weight_decay=0.1))
    assert [group["fused"] for group in fused.param_groups] == [True, True]
    assert [group["lr"] for group in fused.param_groups] == [0.01, 0.05]  # each group keeps its own settings
    assert default.param_groups[0]["fused"] is None
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, copies, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        default.step()
    for p, q in zip(params, copies, strict=True):
        assert not torch.equal(p, torch.zeros_like(p))
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    # A state saved by one implementation continues in the other.
    default.load_state_dict(fused.state_dict())
    assert default.param_groups[0]["fused"] is True


@pytest.mark.parametrize("kwargs", [{"foreach": True}, {"fused": False}, {"differentiable": True}])
def test_fused_optimizer_keeps_an_explicit_implementation(kwargs):
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], **kwargs)
    assert kernels.fused_optimizer(optimizer) is optimizer


def test_fused_optimizer_leaves_an_optimizer_without_a_fused_kernel():
    optimizer = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(3))])
    assert kernels.fused_optimizer(optimizer) is optimizer


@pytest.mark.parametrize("fused", [True, False])
def test_the_module_builds_a_fused_optimizer_with_the_fused_kernels(fused):
    from sracl_lightning.methods.module import SRACLModule

    model = SRACLModule(num_items=30, max_len=5, fused_kernels=fused)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["fused"] is (True if fused else None)


@pytest.mark.parametrize(("precision", "accelerator", "native", "warned"), [
    ("bf16-mixed", "cpu", False, True), ("bf16-mixed", "cpu", True, False), ("32-true", "cpu", False, False)])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(precision, accelerator, native, warned, monkeypatch):
    import warnings

    from sracl_lightning.training import cli

    monkeypatch.setattr(cli, "native_bf16", lambda device: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.warn_if_emulated_bf16(precision, accelerator)
    messages = [str(w.message) for w in caught if "native bf16" in str(w.message)]
    assert len(messages) == (1 if warned else 0)
    assert not warned or "--trainer.precision 32-true" in messages[0]
