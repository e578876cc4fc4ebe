"""The sample synthesizer (Eqs. 6–8): a hand computation, weights, gradients, init, dropout and bf16 autocast."""

from __future__ import annotations

import math

import pytest
import torch

from sracl_lightning.methods.synthesizer import XAVIER_GAIN, SampleSynthesizer

pytestmark = pytest.mark.unit

B, K, E, D = 4, 5, 12, 8


def make_inputs(seed: int = 0, b: int = B, k: int = K, e: int = E, d: int = D):
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(b, e, generator=g)  # (B, E)
    neighbours = torch.randn(b, k, e, generator=g)  # (B, K, E)
    hidden = torch.randn(b, k, d, generator=g)  # (B, K, D)
    return anchor, neighbours, hidden


def make_synthesizer(**kwargs) -> SampleSynthesizer:
    torch.manual_seed(0)
    return SampleSynthesizer(E, D, **kwargs)


def test_shapes_and_parameter_count() -> None:
    synth = make_synthesizer()
    anchor, neighbours, hidden = make_inputs()
    assert synth.weights(anchor, neighbours).shape == (B, K)
    assert synth(anchor, neighbours, hidden).shape == (B, D)
    assert synth.adapter.shape == (E, D) and synth.attention.shape == (2 * D, 1)
    assert sum(p.numel() for p in synth.parameters()) == E * D + 2 * D
    assert sum(p.numel() for p in SampleSynthesizer(1024, 64).parameters()) == 65_664  # docs/method.md#synthesizer


def test_xavier_init_bounds() -> None:
    """xavier_uniform_(gain=1.414) with the code's shapes: bound = gain * sqrt(6 / (fan_in + fan_out))."""
    synth = SampleSynthesizer(1024, 64)
    for param, fans in ((synth.adapter, 1024 + 64), (synth.attention, 128 + 1)):
        bound = XAVIER_GAIN * math.sqrt(6.0 / fans)
        assert param.abs().max() <= bound
        assert param.abs().max() > 0.9 * bound  # uniform over [-bound, bound], not a narrow normal
    before = synth.adapter.detach().clone()
    synth.reset_parameters()
    assert not torch.equal(before, synth.adapter)


def test_hand_computed_tiny_case() -> None:
    """E = D = K = 2 with set parameters, against Eqs. 6–8 written out with Python floats (paper convention W h̃)."""
    synth = SampleSynthesizer(2, 2)
    w_code = [[1.0, -0.5], [0.25, 2.0]]  # stored (E, D), applied as h̃ @ W
    a = [0.5, -1.0, 1.5, 0.2]  # [a_query; a_key]
    with torch.no_grad():
        synth.adapter.copy_(torch.tensor(w_code))
        synth.attention.copy_(torch.tensor(a).view(4, 1))
    anchor = [1.0, 2.0]
    neighbours = [[0.5, -1.0], [2.0, 1.0]]
    hidden = [[1.0, 3.0], [-2.0, 0.5]]

    def project(h: list[float]) -> list[float]:  # W h̃ with W (D, E) = w_codeᵀ
        return [sum(h[i] * w_code[i][j] for i in range(2)) for j in range(2)]

    def leaky(x: float) -> float:
        return x if x > 0 else 0.2 * x

    wu = project(anchor)
    e = [leaky(sum(ai * xi for ai, xi in zip(a, wu + project(n), strict=True))) for n in neighbours]  # Eq. 6
    p = [math.exp(x) / sum(math.exp(y) for y in e) for x in e]  # Eq. 7
    h_plus = [sum(p[k] * hidden[k][j] for k in range(2)) for j in range(2)]  # Eq. 8
    assert min(e) < 0 < max(e)  # both LeakyReLU branches are exercised

    args = torch.tensor([anchor]), torch.tensor([neighbours])
    torch.testing.assert_close(synth.scores(*args), torch.tensor([e]))
    torch.testing.assert_close(synth.weights(*args), torch.tensor([p]))
    torch.testing.assert_close(synth(*args, torch.tensor([hidden])), torch.tensor([h_plus]))


def test_weights_are_a_distribution_without_dropout() -> None:
    synth = make_synthesizer().train()
    p = synth.weights(*make_inputs()[:2])
    assert (p > 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(B))


def test_dropout_active_in_train_mode_only() -> None:
    synth = make_synthesizer(attention_dropout=0.5)
    anchor, neighbours, _ = make_inputs(b=64, k=10)
    torch.manual_seed(1)
    p = synth.train().weights(anchor, neighbours)
    assert (p == 0).any()
    assert not torch.allclose(p.sum(-1), torch.ones(64))
    p_eval = synth.eval().weights(anchor, neighbours)
    torch.testing.assert_close(p_eval.sum(-1), torch.ones(64))
    kept = p != 0
    torch.testing.assert_close(p[kept], 2 * p_eval[kept])  # inverted dropout scales kept weights by 1 / (1 - 0.5)


def test_weights_depend_only_on_semantic_vectors() -> None:
    synth = make_synthesizer().eval()
    anchor, neighbours, hidden = make_inputs()
    p = synth.weights(anchor, neighbours)
    for h in (hidden, 10 * torch.randn_like(hidden)):
        torch.testing.assert_close(synth(anchor, neighbours, h), torch.einsum("bk,bkd->bd", p, h))
    # The synthesized positive is linear in the neighbour representations: changing them leaves p unchanged.
    out = synth(anchor, neighbours, hidden + 1.0)
    torch.testing.assert_close(out, synth(anchor, neighbours, hidden) + 1.0)


def test_gradients_reach_adapter_attention_and_hidden() -> None:
    synth = make_synthesizer()
    anchor, neighbours, hidden = make_inputs()
    hidden.requires_grad_(True)
    target = torch.randn(B, D, generator=torch.Generator().manual_seed(5))
    (synth(anchor, neighbours, hidden) * target).sum().backward()
    for name, grad in (("adapter", synth.adapter.grad), ("attention", synth.attention.grad), ("hidden", hidden.grad)):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert synth.attention.grad[:D].abs().sum() > 0 and synth.attention.grad[D:].abs().sum() > 0


def test_bf16_autocast_matches_fp32() -> None:
    synth = make_synthesizer().eval()
    anchor, neighbours, hidden = make_inputs(b=32, k=10)
    expected = synth(anchor, neighbours, hidden)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = synth.weights(anchor, neighbours)
        out = synth(anchor, neighbours, hidden.bfloat16())
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.sum(-1), torch.ones(32))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)


def test_mismatched_neighbour_shapes_raise() -> None:
    synth = make_synthesizer()
    anchor, neighbours, hidden = make_inputs()
    with pytest.raises(ValueError, match="disagree"):
        synth(anchor, neighbours, hidden[:, :-1])
    with pytest.raises(ValueError, match="attention_dropout"):
        SampleSynthesizer(E, D, attention_dropout=1.0)


def test_backbone_initialiser_does_not_touch_the_synthesizer() -> None:
    """The N(0, 0.02) initialiser applied via ``module.apply`` matches nn.Linear/nn.Embedding only."""
    synth = make_synthesizer()
    before = [p.detach().clone() for p in synth.parameters()]

    def init(module: torch.nn.Module) -> None:
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(module.weight, std=0.02)

    synth.apply(init)
    for old, new in zip(before, synth.parameters(), strict=True):
        assert torch.equal(old, new)
