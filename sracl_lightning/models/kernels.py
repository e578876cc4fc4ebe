"""Faster computations of the training step's hot spots, in plain PyTorch (docs/method.md#kernels).

A profile of the eager step (``bench/profile_step.py``: SASRec on Beauty, batch 256, a 2-core AVX2 CPU) puts
about a third of its time in the output layer with its cross-entropy (the ``(B, N)`` logits are written, read
by ``log_softmax``, read again by its backward, zero-filled and scattered by ``nll_loss``'s backward) and a sixth
in dropout (``bernoulli_`` draws about 5 ns per element on this CPU). Each function here computes the same
quantity differently:

* :func:`linear_cross_entropy`: the output layer, the loss *and its gradients* in one pass over the logits, chunk
  by chunk of 64 users so that each ``(N, 64)`` block stays in cache; the backward only scales the saved
  gradients. Values and gradients equal ``F.cross_entropy(h @ weight.T, target)`` to rounding.
* :func:`dropout` (and the :class:`Dropout` module): one uniform draw per element compared with ``p`` (a third of
  ``bernoulli_``'s time here), then one multiply; each element is kept with probability ``1 - p`` and scaled by
  ``1 / (1 - p)``, as ``F.dropout``. Only the random stream differs, so results are equal in distribution, not
  bit for bit.
* :func:`attention`: scaled dot-product attention whose probability dropout is :func:`dropout`; without dropout it
  is ``F.scaled_dot_product_attention`` itself.
* :func:`fused_optimizer`: the optimizer stepping with torch's own fused kernel (``fused=True``: one pass over each
  parameter for the whole Adam update instead of about ten elementwise ops; 0.6 ms against 6.9 ms per step for
  SASRec on Beauty, one CPU thread). The same update rule; results agree to rounding.

They are on by default. ``with fused_kernels(False):`` (the module's ``fused_kernels`` argument, which also decides
whether the module's optimizers are built by :func:`fused_optimizer`) restores the eager PyTorch ops bit for bit,
e.g. to retrain a run made before they existed. On a CUDA device dropout and attention always use PyTorch's own
fused kernels, which are faster there.

Shapes: B batch, N classes (items), D hidden, A heads, L window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

#: Users per block of :func:`linear_cross_entropy`: an ``(N, 64)`` fp32 block of Beauty's 12,101 items is 3 MB.
CHUNK = 64

_state = threading.local()


def fused_kernels_enabled() -> bool:
    """Whether :func:`dropout`, :func:`attention` and :func:`linear_cross_entropy` take their faster path (the
    default) or PyTorch's eager ops."""
    return getattr(_state, "enabled", True)


@contextmanager
def fused_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block, take the faster paths (``True``) or PyTorch's eager ops (``False``); restored after."""
    previous = fused_kernels_enabled()
    _state.enabled = bool(enabled)
    try:
        yield
    finally:
        _state.enabled = previous


def native_bf16(device: str = "cpu") -> bool:
    """Whether bf16 matmuls run natively on ``device`` ("cpu" or "cuda"): a GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX tiles. Elsewhere they are emulated, many times slower than fp32 (about 10x on an AVX2 CPU)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


# ----------------------------------------------------------------------------------------------------- optimizer
def fused_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """``optimizer`` rebuilt over the same parameter groups with ``fused=True``, where torch has a fused kernel for it
    (Adam, AdamW, SGD, Adagrad on CPU and CUDA) and its arguments leave the implementation unchosen; otherwise
    ``optimizer`` itself. An explicit ``fused``, ``foreach`` or ``differentiable`` in the optimizer's arguments is
    kept as given.

    Call it before any step: the optimizer's state is not carried over. A checkpoint's optimizer state loads into
    either implementation (the state has the same tensors), and its saved groups bring their own ``fused`` flag.
    """
    defaults = optimizer.defaults
    if "fused" not in defaults or defaults["fused"] is not None or defaults.get("foreach") or defaults.get(
            "differentiable"):
        return optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not params or any(p.device.type not in ("cpu", "cuda") or not p.is_floating_point() for p in params):
        return optimizer
    groups = [{**group, "fused": True} for group in optimizer.param_groups]  # a group's own None would win
    return type(optimizer)(groups, **{**defaults, "fused": True})


# ------------------------------------------------------------------------------------------------------- dropout
def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``: zero each element with probability ``p``, scale the others by ``1 / (1 - p)``.

    On a CPU with :func:`fused_kernels` enabled the mask comes from one fp32 uniform draw per element compared with
    ``p`` (fp32 also under autocast, so a bf16 ``x`` does not coarsen the keep probability); elsewhere it is
    ``F.dropout``.
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0 or x.device.type != "cpu" or not fused_kernels_enabled():
        return F.dropout(x, p, training)
    mask = torch.rand(x.shape, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))  # 0 or 1/(1-p), fp32
    return x * mask.to(x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout` (same argument, no parameters, same ``state_dict``)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


# ----------------------------------------------------------------------------------------------------- attention
def attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, dropout_p: float = 0.0) -> Tensor:
    """``softmax(q k^T / sqrt(Dh) + bias)`` with dropout ``dropout_p`` on the probabilities, times ``v``.

    Args:
        q: (B, A, Lq, Dh) queries.
        k: (B, A, L, Dh) keys.
        v: (B, A, L, Dh) values.
        bias: additive mask broadcastable to (B, A, Lq, L), in ``q``'s dtype.
        dropout_p: Dropout on the attention probabilities (pass 0 in eval mode).

    Returns:
        (B, A, Lq, Dh).
    """
    if dropout_p == 0.0 or q.device.type != "cpu" or not fused_kernels_enabled():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    # SDPA's math path, written out so that its dropout is dropout()'s (CPU SDPA has no fused kernel with dropout).
    scores = torch.baddbmm(bias.expand(*q.shape[:-1], k.shape[-2]).flatten(0, 1), q.flatten(0, 1),
                           k.flatten(0, 1).transpose(1, 2), alpha=q.shape[-1] ** -0.5)  # (B·A, Lq, L)
    probs = dropout(scores.softmax(-1), dropout_p)
    return torch.bmm(probs, v.flatten(0, 1)).view_as(q)


# ------------------------------------------------------------------------------------------- output layer + loss
def linear_cross_entropy(h: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    """``F.cross_entropy(h @ weight.T, target)``, the mean over rows, without a ``(B, N)`` logits tensor in autograd.

    Args:
        h: (B, D) inputs.
        weight: (N, D) class vectors (the item embeddings).
        target: (B,) class indices in ``0..N-1``.

    Returns:
        The scalar mean cross-entropy. Under autocast the matmuls run in the autocast dtype and the softmax in
        fp32, as autocast runs ``F.cross_entropy``; with :func:`fused_kernels` disabled it *is* that expression.
    """
    if not fused_kernels_enabled():
        return F.cross_entropy(h @ weight.T, target)
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.promote_types(
        h.dtype, weight.dtype)
    return _LinearCrossEntropy.apply(h, weight, target, dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and, when needed, both gradients block by block; backward scales them."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, target: Tensor, dtype: torch.dtype) -> Tensor:
        with torch.autocast(h.device.type, enabled=False):
            b = h.shape[0]
            hc_all, w = h.to(dtype), weight.to(dtype)
            acc = torch.promote_types(dtype, torch.float32)  # softmax and gradients: fp32, or fp64 for fp64
            grads = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
            losses = torch.empty(b, dtype=acc, device=h.device)  # (B,)
            grad_h = torch.empty(h.shape, dtype=acc, device=h.device) if grads else None  # (B, D)
            grad_w = torch.zeros(weight.shape, dtype=acc, device=h.device) if grads else None  # (N, D)
            block_cols = torch.arange(min(b, CHUNK), device=h.device)  # (C,) column of each user in its block
            for lo in range(0, b, CHUNK):
                hc, tc = hc_all[lo:lo + CHUNK], target[lo:lo + CHUNK]  # (C, D), (C,)
                cols = block_cols[:len(tc)]
                # Column-major block (N, C): w @ hc^T is about twice as fast on a CPU as hc @ w^T for D = 64.
                z = (w @ hc.T).to(acc)  # (N, C) logits
                picked = z[tc, cols]  # (C,) the target's logit
                top = z.amax(0)  # (C,)
                z.sub_(top).exp_()
                total = z.sum(0)  # (C,)
                losses[lo:lo + CHUNK] = total.log() + top - picked  # logsumexp - z_target
                if grads:
                    z.div_(total)  # softmax
                    z[tc, cols] -= 1.0  # d loss_c / d logits = softmax - onehot, (N, C)
                    if dtype == acc:
                        torch.mm(z.T, w, out=grad_h[lo:lo + CHUNK])  # (C, N) @ (N, D)
                        grad_w.addmm_(z, hc)  # (N, C) @ (C, D)
                    else:
                        zd = z.to(dtype)
                        grad_h[lo:lo + CHUNK] = zd.T @ w
                        grad_w.add_(zd @ hc)
            if grads:
                grad_h.div_(b)
                grad_w.div_(b)
                ctx.save_for_backward(grad_h, grad_w)
            ctx.dtypes = (h.dtype, weight.dtype)
            return losses.mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        return (grad_h.mul(grad_out).to(h_dtype) if ctx.needs_input_grad[0] else None,
                grad_w.mul(grad_out).to(w_dtype) if ctx.needs_input_grad[1] else None, None, None)
