"""Squeeze-and-Excitation and the ECA paper's SE variants without dimensionality reduction.

SE: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018.
Variants (SE-Var1/2/3, SE-GC): Wang et al., "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", CVPR 2020, Sec. 3.2.1 and Table 2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import PooledGate, register_attention
from study.catalogue import REDUCTIONS, AttentionKind, Param
from study.validate import check_bool, check_int

SE_KIND = AttentionKind("se", params={"r": Param(16, choices=REDUCTIONS), "bias": Param(True)}, paper="Hu et al., SENet, CVPR 2018")
SE_VAR1_KIND = AttentionKind("se_var1", searched=False,  # the same function as the global ge_theta_minus, which a search has
                             paper="Wang et al., ECA-Net, CVPR 2020, Table 2")
SE_VAR2_KIND = AttentionKind("se_var2", paper="Wang et al., ECA-Net, CVPR 2020, Table 2")
SE_VAR3_KIND = AttentionKind("se_var3", paper="Wang et al., ECA-Net, CVPR 2020, Table 2")
SE_GC_KIND = AttentionKind("se_gc", params={"groups": Param(16)}, searched=False,  # its groups must divide C: Table 2's grid sets them
                           paper="Wang et al., ECA-Net, CVPR 2020, Sec. 3.2.1")


def reduced_width(channels: int, r: int) -> int:
    """The hidden width of an SE-style reduction MLP: ``max(1, C // r)`` (never rounded up)."""
    return max(1, channels // r)


def reduction_mlp_params(channels: int, r: int, bias: bool) -> int:
    """Parameters of FC(C -> h) + FC(h -> C) with ``h = reduced_width(C, r)``."""
    h = reduced_width(channels, r)
    return 2 * channels * h + ((h + channels) if bias else 0)


def resolve_reduction(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the ``r`` and ``bias`` parameters shared by SE and CBAM in place."""
    params["r"] = check_int(params["r"], "r", 1, whole=True)
    params["bias"] = check_bool(params["bias"], "bias")
    return params


@register_attention(SE_KIND)
class SE(PooledGate):
    """Squeeze-and-Excitation (Hu et al., CVPR 2018, Fig. 1 and eqs. (2)-(4)).

    GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C) -> sigmoid -> scale. ``r``: reduction ratio
    (default 16, integer >= 1); the reduced width is ``max(1, C // r)`` - never rounded up
    to a multiple of 8 as timm does. ``bias`` (default True, as in SENet); the ECA paper's
    SE-ResNet-50 figure of 26.77 "M" parameters is the bias-free count.
    Parameters: ``2 * C * (C // r) + (C // r + C if bias else 0)``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        return resolve_reduction({**cls.PARAMS, **params})

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        hidden = reduced_width(channels, self.params["r"])
        bias = self.params["bias"]
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        """The channel weights (N, C) for the pooled vector ``y`` (N, C)."""
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(y))))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return reduction_mlp_params(channels, p["r"], p["bias"])


@register_attention(SE_VAR1_KIND)
class SEVar1(PooledGate):
    """SE-Var1 (ECA-Net, Wang et al. CVPR 2020, eq. (3)-(4) with y' = y): sigma(GAP(x)) * x.
    No parameters."""

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return 0


@register_attention(SE_VAR2_KIND)
class SEVar2(PooledGate):
    """SE-Var2 (ECA-Net, Wang et al. CVPR 2020, eq. (4)): sigma(w * y), a diagonal W with one
    independent weight per channel. ``C`` parameters."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.weight = nn.Parameter(torch.ones(channels))

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y * self.weight)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return channels


@register_attention(SE_VAR3_KIND)
class SEVar3(PooledGate):
    """SE-Var3 (ECA-Net, Wang et al. CVPR 2020, eq. (4)): sigma(W y) with a full C x C matrix
    W and no dimensionality reduction. ``C * C`` parameters."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.fc = nn.Linear(channels, channels, bias=False)

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(y))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return channels * channels


@register_attention(SE_GC_KIND)
class SEGC(PooledGate):
    """SE-GC (ECA-Net, Wang et al. CVPR 2020, Sec. 3.2.1): sigma(G y), a block-diagonal W
    realised as a grouped 1x1 convolution over the pooled vector with ``groups`` groups.
    ``C * C / groups`` parameters.

    ``groups`` defaults to 16 (SE-GC1 of Table 2). Left at its default it resolves per stage
    to the largest divisor of C not above 16 (16 on every C divisible by 16; 8 on an
    8-channel stage; 12 on 24 channels), and the resolved value is recorded in the
    completed parameters. An explicit ``groups`` must divide C.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        if "groups" not in params:
            default = cls.PARAMS["groups"]
            return {"groups": max(g for g in range(1, min(default, channels) + 1) if channels % g == 0)}
        g = check_int(params["groups"], "groups", 1, whole=True)
        if channels % g:
            raise ValueError(f"attention {cls.kind!r}: groups must be an integer >= 1 dividing channels={channels}, got {g!r}")
        return {"groups": g}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.conv = nn.Conv2d(channels, channels, 1, groups=self.params["groups"], bias=False)

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(y[:, :, None, None])).flatten(1)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return channels * channels // p["groups"]
