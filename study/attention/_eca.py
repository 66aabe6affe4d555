"""Efficient Channel Attention (ECA) and its unshared-weights variant ECA-NS.

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020. Eq. (6)-(7): the band matrix W_k of local cross-channel
interaction - channel i interacts with its k neighbours; ECA-NS keeps a separate row of k
weights per channel (C * k parameters), ECA shares them (k parameters), which is a 1D
convolution of size k over the pooled channel vector. Eq. (12): the adaptive kernel size
k = psi(C) (:func:`study.attention.psi`).

Parameters (both kinds): either an explicit ``k`` (odd integer >= 1, never overridden) or
``gamma`` and ``b`` (defaults 2 and 1) from which ``k = psi(C, gamma, b, rule)`` is
computed, with ``rule`` "paper" (default) or "timm". Giving ``k`` together with ``gamma``,
``b`` or ``rule`` is a ValueError. A search tries a fixed odd k in {1, ..., 9} or psi with
gamma in [1, 4] and b in [0, 4].
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from study.attention._registry import PooledGate, register_attention
from study.catalogue import PSI_MODES, PSI_PARAMS, PSI_RULES, AttentionKind, psi
from study.validate import check_choice, check_int, check_number

ECA_KIND = AttentionKind("eca", params=PSI_PARAMS, psi=True, modes=PSI_MODES, paper="Wang et al., ECA-Net, CVPR 2020")
ECA_NS_KIND = AttentionKind("eca_ns", params=PSI_PARAMS, psi=True, modes=PSI_MODES, paper="Wang et al., ECA-Net, CVPR 2020, eq. (6)-(7)")

#: ``_ChannelConv`` takes the shifted sums from this many elements of the windows (N * C * k) on,
#: the unfolded windows below: timed forward and backward on this project's CPU (1 thread,
#: ``benchmarks/attention_overhead.py --gate``), the windows took 0.7-0.9x the shifted sums'
#: time at N 32, C 64-128 (k sums cost k small operations each way), 0.9-1.1x at C 256 and
#: 1.3-4x at C 512-2048 (k 5-7)
WINDOWS_MAX_NUMEL = 32768


class _ChannelConv(torch.autograd.Function):
    """z = Conv1d(1, 1, k, padding (k-1)/2, no bias) over the channel axis of y (N, C), without
    ``F.conv1d`` (2-5x slower here forward and backward on CPU): small sizes as the unfolded
    (N*C, k) windows of y times the k weights, large ones (:data:`WINDOWS_MAX_NUMEL`) as k
    shifted multiply-adds of the zero-padded y, z = sum_j w_j y_pad[:, j:j+C], which writes
    nothing of size N*C*k. The FLOP counter counts the same C*k multiply-adds. Keeps only y and
    the weight for the backward pass: dy is the same conv of dz with the flipped weight,
    dw_j = sum(dz * y_pad[:, j:j+C]). ``form`` "windows" or "shifted" fixes the form (None: by
    size), for the benchmark."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, weight: torch.Tensor, form: str | None = None) -> torch.Tensor:
        ctx.save_for_backward(y, weight)
        ctx.shifted = form == "shifted" or (form is None and y.numel() * weight.numel() >= WINDOWS_MAX_NUMEL)
        return _conv(y, weight.reshape(-1).to(y.dtype), ctx.shifted)

    @staticmethod
    @once_differentiable
    def backward(ctx, dz: torch.Tensor):
        y, weight = ctx.saved_tensors
        w = weight.reshape(-1).to(dz.dtype)  # under autocast the forward ran in a lower precision than the weight
        k = w.numel()
        dy = _conv(dz, w.flip(0), ctx.shifted).to(y.dtype) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            if ctx.shifted:
                c = y.shape[1]
                padded = F.pad(y.to(dz.dtype), ((k - 1) // 2, (k - 1) // 2))
                dw = torch.stack([(dz * padded[:, j:j + c]).sum() for j in range(k)])
            else:
                dw = dz.reshape(1, -1) @ _windows(y.to(dz.dtype), k)
            dw = dw.view_as(weight).to(weight.dtype)
        return dy, dw, None


def channel_conv(y: torch.Tensor, weight: torch.Tensor, form: str | None = None) -> torch.Tensor:
    """ECA's channel convolution of the pooled ``y`` (N, C) with the (1, 1, k) ``weight``, as
    the module computes it (:class:`_ChannelConv`); ``form`` "windows" or "shifted" fixes its
    form (None: by size, :data:`WINDOWS_MAX_NUMEL`), so a benchmark can time each."""
    if form not in (None, "windows", "shifted"):
        raise ValueError(f"form: must be None, 'windows' or 'shifted', got {form!r}")
    return _ChannelConv.apply(y, weight, form)


def _windows(y: torch.Tensor, k: int) -> torch.Tensor:
    """The (N*C, k) zero-padded windows of length k around every channel of y (N, C)."""
    pad = (k - 1) // 2
    return F.pad(y, (pad, pad)).unfold(1, k, 1).reshape(-1, k)


def _conv(y: torch.Tensor, w: torch.Tensor, shifted: bool) -> torch.Tensor:
    """sum_j w[j] y_pad[:, j:j+C] for y (N, C) zero-padded by (k-1)/2 on both sides, k = len(w):
    as k shifted multiply-adds, or as the windows times the weights."""
    k, c = w.numel(), y.shape[1]
    if not shifted:
        return (_windows(y, k) @ w.reshape(k, 1)).view_as(y)
    padded = F.pad(y, ((k - 1) // 2, (k - 1) // 2))
    z = padded[:, 0:c] * w[0]
    for j in range(1, k):
        z.addcmul_(padded[:, j:j + c], w[j])
    return z


class KernelSized(PooledGate):
    """Shared parameter handling of the kinds whose kernel size k may come from psi(C):
    ``k`` XOR (``gamma``, ``b``[, ``rule``]); the backbone builder resolves k per stage."""

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        k = params.get("k")
        if k is not None:
            clash = sorted(set(params) & {"gamma", "b", "rule"})
            if clash:
                raise ValueError(
                    f"attention {cls.kind!r}: give either k or gamma/b (with rule), not both "
                    f"(got k={k!r} and {clash[0]}={params[clash[0]]!r})"
                )
            return {"k": check_int(k, "k", 1, odd=True, whole=True)}
        gamma = check_number(params.get("gamma", cls.PARAMS["gamma"]), "gamma", positive=True)
        b = check_number(params.get("b", cls.PARAMS["b"]), "b")
        rule = check_choice(params.get("rule", cls.PARAMS["rule"]), "rule", PSI_RULES)
        return {"k": psi(channels, gamma, b, rule), "gamma": gamma, "b": b, "rule": rule}

    @property
    def k(self) -> int:
        """The resolved kernel size."""
        return self.params["k"]


@register_attention(ECA_KIND)
class ECA(KernelSized):
    """ECA (Wang et al., CVPR 2020, Fig. 2 and eq. (9)): GAP -> 1D convolution of size k over
    the channel axis (k weights shared by all channels, no bias, "same" zero padding) ->
    sigmoid -> scale. Exactly ``k`` parameters. See the module docstring for ``k`` /
    ``gamma``, ``b``, ``rule``; the resolved kernel size is :attr:`k`."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        k = self.k
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        """The channel weights (N, C) for the pooled vector ``y`` (N, C): sigmoid of the
        Conv1d(1, 1, k) over the channel axis (the authors' module, so state dicts match)."""
        return torch.sigmoid(self.conv(y[:, None, :])[:, 0, :])

    def fused_gate(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`gate` by :class:`_ChannelConv` (2-5x faster than ``F.conv1d`` here)."""
        return torch.sigmoid(_ChannelConv.apply(y, self.conv.weight))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return cls.resolve(channels, **params)["k"]


@register_attention(ECA_NS_KIND)
class ECANS(KernelSized):
    """ECA-NS (Wang et al., CVPR 2020, eq. (6)-(7)): the band matrix W_k without weight
    sharing - channel i is weighted by its own k weights over channels i-(k-1)/2 ..
    i+(k-1)/2 (zero outside 0..C-1). ``C * k`` parameters, no bias."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        k = self.k
        bound = 1.0 / math.sqrt(k)  # the default init of the shared Conv1d(1, 1, k) in ECA
        self.weight = nn.Parameter(torch.empty(channels, k).uniform_(-bound, bound))

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        k = self.k
        windows = F.pad(y, ((k - 1) // 2, (k - 1) // 2)).unfold(1, k, 1)  # (N, C, k)
        return torch.sigmoid(torch.einsum("nck,ck->nc", windows, self.weight))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return channels * cls.resolve(channels, **params)["k"]
