"""The pool -> gate -> rescale step shared by the channel-attention kinds, fused, and its
memory-lean form after batch norm.

Every channel attention with a pooled gate (SE, the SE variants, SE-GC, ECA, ECA-NS, global
GE-theta-minus; ``pooled_gate = True`` and a ``gate(y)`` method mapping the pooled (N, C)
vector to the (N, C) channel weights) computes y = x * s with s = gate(GAP(x)).

**Fused.** Written as plain operations, autograd runs it as five full-size passes forward and
backward beyond the pooling and the product themselves: the product's backward writes g * s
and a temporary g * x, the mean's backward writes a full-size copy of dp / HW and the two
gradients of x are added in another pass. :class:`_PooledGateScale` does the same arithmetic
as one autograd node: the backward reduces sum_hw(g x) without a temporary (``einsum``),
back-propagates it through the small gate graph, and writes dx = g s + dp / HW in a single
``addcmul``. Outputs and gradients equal the plain operations' within float rounding.

**Memory-lean.** Autograd keeps x for that reduction - one extra activation per block, on top
of the BN input c that batch norm keeps itself. When x = BN(c), x = a c + b per channel with
a = gamma * invstd and b = beta - mean * a (the batch statistics BN used), so
sum_hw(g x) = a sum_hw(g c) + b sum_hw(g): :func:`bn_attention` runs BN as
``torch.native_batch_norm`` (the kernel ``nn.BatchNorm2d`` runs, with the same running-
statistics bookkeeping; it also returns the mean and invstd) and hands c, a and b to the
fused node instead of x. x is freed after the forward pass; c is the storage BN saved anyway.

Both are on by default (:func:`set_lean`, :func:`lean_attention` switch them off, e.g. to
measure them: ``benchmarks/attention_memory.py``, ``benchmarks/attention_overhead.py``). The
lean path applies after a plain ``nn.BatchNorm2d`` with affine parameters in training mode;
there the BN module's ``forward`` (and any hook on it) is not called. Under
``torch.compile`` the plain operations are used (the compiler fuses them itself).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["set_lean", "lean_enabled", "lean_attention", "bn_attention", "pooled_gate_scale"]

_LEAN = {"enabled": True}


def set_lean(enabled: bool) -> None:
    """Turn the fused and memory-lean channel-attention paths on or off (process-wide)."""
    if not isinstance(enabled, bool):
        raise ValueError(f"lean: must be true or false, got {enabled!r}")
    _LEAN["enabled"] = enabled


def lean_enabled() -> bool:
    """Whether the fused and memory-lean paths are on (the default: on)."""
    return _LEAN["enabled"]


@contextlib.contextmanager
def lean_attention(enabled: bool = True) -> Iterator[None]:
    """``with lean_attention(False): ...`` runs the block with the paths off (or on), then
    restores the previous setting."""
    before = lean_enabled()
    set_lean(enabled)
    try:
        yield
    finally:
        set_lean(before)


class _PooledGateScale(torch.autograd.Function):
    """y = x * gate(mean_hw(x)) as one node. With ``c`` given (the memory-lean form), x = a c + b
    per channel and c, a, b are kept instead of x. The gate's parameters are inputs, so that
    autograd routes their gradients through the node."""

    @staticmethod
    def forward(ctx, x, c, a, b, gate, *params):
        with torch.enable_grad():  # the gate's own small graph, back-propagated by hand below
            p = x.detach().mean(dim=(2, 3)).requires_grad_()
            s = gate(p)
        ctx.gate_graph = (p, s)
        ctx.hw = x.shape[2] * x.shape[3]
        ctx.lean = c is not None
        ctx.save_for_backward(*((c, a, b) if ctx.lean else (x,)), *params)
        if ctx.lean:  # nothing keeps x (BN saved its input c): rescale it in place, no new tensor
            ctx.mark_dirty(x)
            return x.mul_(s.detach()[:, :, None, None])
        return x * s.detach()[:, :, None, None]

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        p, s = ctx.gate_graph
        saved = ctx.saved_tensors
        if ctx.lean:
            (c, a, b), params = saved[:3], saved[3:]
            common = torch.promote_types(g.dtype, c.dtype)  # mixed precision: e.g. a bf16 c and a float32 g
            gx = torch.einsum("nchw,nchw->nc", g.to(common), c.to(common)) * a + g.sum(dim=(2, 3)).to(common) * b
        else:
            (x,), params = saved[:1], saved[1:]
            common = torch.promote_types(g.dtype, x.dtype)
            gx = torch.einsum("nchw,nchw->nc", g.to(common), x.to(common))  # sum over H, W of g * x, no temporary
        wanted = [i for i, need in enumerate(ctx.needs_input_grad[5:]) if need]
        grads = torch.autograd.grad(s, [p, *(params[i] for i in wanted)], gx.to(s.dtype), retain_graph=True, allow_unused=True)
        param_grads: list[torch.Tensor | None] = [None] * len(params)
        for i, grad in zip(wanted, grads[1:]):
            param_grads[i] = grad
        dx = None
        if ctx.needs_input_grad[0]:
            dp = grads[0] if grads[0] is not None else torch.zeros_like(p)
            # dx = g s + dp / HW: the rescale's and the pooling's gradients in one pass
            dx = torch.addcmul((dp / ctx.hw).to(g.dtype)[:, :, None, None], g, s.detach().to(g.dtype)[:, :, None, None])
        return (dx, None, None, None, None, *param_grads)


def _fuse(x: torch.Tensor) -> bool:
    return _LEAN["enabled"] and torch.is_grad_enabled() and not torch.compiler.is_compiling()


def pooled_gate_scale(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x * module.gate(x.mean((2, 3)))[:, :, None, None]``, as the fused node when the paths
    are on and autograd records (module docstring)."""
    if not _fuse(x):
        return x * module.gate(x.mean(dim=(2, 3)))[:, :, None, None]
    return _PooledGateScale.apply(x, None, None, None, module.gate, *module.parameters())


def _lean_applies(bn: nn.Module, attention: nn.Module, c: torch.Tensor) -> bool:
    return (
        bn.training
        and getattr(attention, "pooled_gate", False)
        and type(bn) is nn.BatchNorm2d
        and bn.affine
        and c.dim() == 4
        and c.shape[0] * c.shape[2] * c.shape[3] > 1  # else BN's own error ("more than 1 value per channel")
        and _fuse(c)
    )


def bn_attention(bn: nn.Module, attention: nn.Module, c: torch.Tensor) -> torch.Tensor:
    """``attention(bn(c))``, by the memory-lean path where it applies (module docstring)."""
    if not _lean_applies(bn, attention, c):
        return attention(bn(c))
    factor = 0.0 if bn.momentum is None else bn.momentum  # nn.BatchNorm2d.forward's bookkeeping
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    x, mean, invstd = torch.native_batch_norm(c, bn.weight, bn.bias, bn.running_mean, bn.running_var, True, factor, bn.eps)
    with torch.no_grad():
        a = bn.weight * invstd  # x = a c + b, per channel
        b = bn.bias - mean * a
    return _PooledGateScale.apply(x, c, a, b, attention.gate, *attention.parameters())
