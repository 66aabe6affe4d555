"""The fused path of a pooled gate: pool -> gate -> rescale in fused autograd nodes, and its
memory-lean form after batch norm. An opt-in wrapper beside the modules' plain ``forward``.

Every channel attention with a pooled gate (SE, the SE variants, SE-GC, ECA, ECA-NS, global
GE-theta-minus, and any kind derived from :class:`~study.attention.PooledGate`:
``pooled_gate`` true and a ``gate(y)`` method mapping the pooled (N, C) vector to the (N, C)
channel weights) computes y = x * s with s = gate(GAP(x)). Its ``forward`` is those plain
operations; the backbones call :func:`bn_attention` for a block's batch norm, attention and
residual sum, which takes this path for such a module (its ``fused_gate``, by default its
``gate``) and the plain ``attention(bn(c))`` for any other. A new kind gets the path by
deriving from ``PooledGate``, without knowing what is below.

**Fused nodes.** Written as plain operations, the backward pass writes a full-size copy of
dp / HW for the mean (then adds it to the product's gradient in another pass) and the
product's backward keeps x and s. Here the pooling is a node whose backward hands back
dp / HW as a broadcast view (autograd adds it in place into the rescale's gradient), and the
rescale is a node computing ds = sum_hw(g x) and dx = g s directly. The gate between them
stays ordinary autograd. Outputs and gradients equal the plain operations' within float
rounding.

**Memory-lean.** Autograd keeps x for that reduction - one extra activation per block, on top
of the BN input c that batch norm keeps itself. When x = BN(c), x = a c + b per channel with
a = gamma * invstd and b = beta - mean * a (the batch statistics BN used), so
sum_hw(g x) = a sum_hw(g c) + b sum_hw(g): :func:`bn_attention` runs BN as
``torch.native_batch_norm`` (the kernel ``nn.BatchNorm2d`` runs, with the same running-
statistics bookkeeping), which also returns the mean and invstd, and the rescale node keeps
c, a and b instead of x - and, since nothing else keeps x, scales it in place. x is freed
after the forward pass; c is the storage BN keeps anyway.

Both are on by default (in :func:`bn_attention` and :func:`fused_pooled_gate`) for feature
maps of at least :data:`LEAN_MIN_NUMEL` elements, where
they are faster or equal in time (:func:`set_lean`, :func:`lean_attention`: ``True`` always,
``False`` never, ``"auto"`` the default; measured by ``benchmarks/attention_memory.py`` and
``benchmarks/attention_overhead.py``). The
lean path applies after a plain ``nn.BatchNorm2d`` with affine parameters in training mode;
there the BN module's ``forward`` (and any hook on it) is not called. Under
``torch.compile`` and without autograd the plain operations are used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["set_lean", "lean_enabled", "lean_attention", "bn_attention", "fused_pooled_gate", "LEAN_MIN_NUMEL"]

#: "auto" takes the fused and lean paths for feature maps of at least this many elements
#: (256 KiB of float32). Timing one block's BN + ECA forward and backward alone on this
#: project's 2-core CPU (CPU time, 1 thread), the paths took 0.5-0.8x the plain operations'
#: time for maps of 400,000 elements and more, 0.9-1.1x around 131,072 and 1.1x at 32,768,
#: where the fixed cost of two Python-level autograd nodes outweighs the passes saved.
LEAN_MIN_NUMEL = 65536

_MODES = (True, False, "auto")
_LEAN = {"mode": "auto"}


def set_lean(mode: bool | str) -> None:
    """The fused and memory-lean channel-attention paths, process-wide: ``True`` (always),
    ``False`` (never: the plain operations) or ``"auto"`` (the default: for feature maps of at
    least :data:`LEAN_MIN_NUMEL` elements, where they are faster or equal in time)."""
    if mode not in _MODES or (mode != "auto" and not isinstance(mode, bool)):
        raise ValueError(f"lean: must be true, false or 'auto', got {mode!r}")
    _LEAN["mode"] = mode


def lean_enabled() -> bool | str:
    """The current mode: ``True``, ``False`` or ``"auto"`` (the default)."""
    return _LEAN["mode"]


@contextlib.contextmanager
def lean_attention(mode: bool | str = True) -> Iterator[None]:
    """``with lean_attention(False): ...`` runs the block with the paths off (``True``: on,
    ``"auto"``: the default), then restores the previous mode."""
    before = lean_enabled()
    set_lean(mode)
    try:
        yield
    finally:
        set_lean(before)


class _Pool(torch.autograd.Function):
    """p = mean_hw(x), whose backward hands back dp / HW broadcast as a stride-0 view: autograd
    adds it in place into the rescale's gradient instead of writing a full-size copy first."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean(dim=(2, 3))

    @staticmethod
    @once_differentiable
    def backward(ctx, dp):
        n, c, h, w = ctx.shape
        return (dp / (h * w))[:, :, None, None].expand(n, c, h, w)


def _sum_hw_product(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_hw(g x) per (n, c): for contiguous maps a batched dot product (no full-size
    temporary; the product and the sum in one pass over g and x), else the product summed."""
    n, c, h, w = g.shape
    if g.is_contiguous() and x.is_contiguous() and g.dtype == x.dtype:
        return torch.bmm(g.view(n * c, 1, h * w), x.view(n * c, h * w, 1)).view(n, c)
    return (g * x).sum(dim=(2, 3))


class _Scale(torch.autograd.Function):
    """y = x * s (+ r). Plain form: keeps x and s; ds = sum_hw(g x). Lean form (``c`` given, x =
    a c + b per channel): keeps c, s, a, b; ds = a sum_hw(g c) + b sum_hw(g). With a residual
    ``r`` the rescale and the residual sum are one pass (``torch.addcmul``) and dr = g; without
    one the lean form scales x in place (nothing else keeps x)."""

    @staticmethod
    def forward(ctx, x, s, c, a, b, r):
        s4 = s[:, :, None, None]
        ctx.save_for_backward(s, x) if c is None else ctx.save_for_backward(s, c, a, b)
        if r is not None:
            return torch.addcmul(r, x, s4)
        if c is None or torch.result_type(x, s4) != x.dtype:  # x kept, or a product of another dtype
            return x * s4
        ctx.mark_dirty(x)
        return x.mul_(s4)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        s, *kept = ctx.saved_tensors
        dx = g * s[:, :, None, None].to(g.dtype) if ctx.needs_input_grad[0] else None
        ds = None
        if ctx.needs_input_grad[1]:
            if len(kept) == 1:
                ds = _sum_hw_product(g, kept[0])
            else:
                c, a, b = kept  # x = a c + b: sum_hw(g x) = a sum_hw(g c) + b sum_hw(g)
                ds = _sum_hw_product(g, c.to(g.dtype)) * a + g.sum(dim=(2, 3)) * b
            ds = ds.to(s.dtype)
        dr = g if ctx.needs_input_grad[5] else None
        return dx, ds, None, None, None, dr


def _fuse(x: torch.Tensor) -> bool:
    mode = _LEAN["mode"]
    if mode is False or not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    return mode is True or x.numel() >= LEAN_MIN_NUMEL


def fused_pooled_gate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a pooled gate (``x * module.gate(x.mean((2, 3)))[:, :, None, None]``),
    through the fused nodes when the paths are on and autograd records (module docstring);
    any other module as its own ``forward``."""
    if not getattr(module, "pooled_gate", False) or not _fuse(x):
        return module(x)
    return _Scale.apply(x, module.fused_gate(_Pool.apply(x)), None, None, None, None)


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


def bn_attention(bn: nn.Module, attention: nn.Module, c: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``attention(bn(c))`` (``+ residual`` when given: the rescale and the residual sum in one
    pass), by the memory-lean path where it applies (module docstring)."""
    if not _lean_applies(bn, attention, c) or (residual is not None and residual.shape != c.shape):
        out = fused_pooled_gate(attention, bn(c))
        return out if residual is None else out + residual
    factor = 0.0 if bn.momentum is None else bn.momentum  # nn.BatchNorm2d.forward's bookkeeping
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    x, mean, invstd = torch.native_batch_norm(c, bn.weight, bn.bias, bn.running_mean, bn.running_var, True, factor, bn.eps)
    with torch.no_grad():
        a = bn.weight * invstd  # x = a c + b, per channel
        b = bn.bias - mean * a
    return _Scale.apply(x, attention.fused_gate(_Pool.apply(x)), c, a, b, residual)
