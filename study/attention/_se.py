"""Squeeze-and-Excitation and the ECA paper's SE variants without dimensionality reduction.

SE: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018.
Variants (SE-Var1/2/3, SE-GC): Wang et al., "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", CVPR 2020, Sec. 3.2.1 and Table 2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._check import check_bool, check_int
from study.attention._registry import AttentionModule, register_attention
from study.attention._rescale import pooled_gate_scale


def reduced_width(channels: int, r: int) -> int:
    """The hidden width of an SE-style reduction MLP: ``max(1, C // r)`` (never rounded up)."""
    return max(1, channels // r)


def reduction_mlp_params(channels: int, r: int, bias: bool) -> int:
    """Parameters of FC(C -> h) + FC(h -> C) with ``h = reduced_width(C, r)``."""
    h = reduced_width(channels, r)
    return 2 * channels * h + ((h + channels) if bias else 0)


def resolve_reduction(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the ``r`` and ``bias`` parameters shared by SE and CBAM in place."""
    params["r"] = check_int(kind, "r", params["r"])
    params["bias"] = check_bool(kind, "bias", params["bias"])
    return params


@register_attention("se")
class SE(AttentionModule):
    """Squeeze-and-Excitation (Hu et al., CVPR 2018, Fig. 1 and eqs. (2)-(4)).

    GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C) -> sigmoid -> scale. ``r``: reduction ratio
    (default 16, integer >= 1); the reduced width is ``max(1, C // r)`` - never rounded up
    to a multiple of 8 as timm does. ``bias`` (default True, as in SENet); the ECA paper's
    SE-ResNet-50 figure of 26.77 "M" parameters is the bias-free count.
    Parameters: ``2 * C * (C // r) + (C // r + C if bias else 0)``.
    """

    PARAMS = {"r": 16, "bias": True}

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        return resolve_reduction(cls.kind, {**cls.PARAMS, **params})

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        hidden = reduced_width(channels, self.params["r"])
        bias = self.params["bias"]
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        """The channel weights (N, C) for the pooled vector ``y`` (N, C)."""
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(y))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_gate_scale(self, x)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return reduction_mlp_params(channels, p["r"], p["bias"])


@register_attention("se_var1")
class SEVar1(AttentionModule):
    """SE-Var1 (ECA-Net, Wang et al. CVPR 2020, eq. (3)-(4) with y' = y): sigma(GAP(x)) * x.
    No parameters."""

    PARAMS = {}

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_gate_scale(self, x)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return 0


@register_attention("se_var2")
class SEVar2(AttentionModule):
    """SE-Var2 (ECA-Net, Wang et al. CVPR 2020, eq. (4)): sigma(w * y), a diagonal W with one
    independent weight per channel. ``C`` parameters."""

    PARAMS = {}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.weight = nn.Parameter(torch.ones(channels))

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y * self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_gate_scale(self, x)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return channels


@register_attention("se_var3")
class SEVar3(AttentionModule):
    """SE-Var3 (ECA-Net, Wang et al. CVPR 2020, eq. (4)): sigma(W y) with a full C x C matrix
    W and no dimensionality reduction. ``C * C`` parameters."""

    PARAMS = {}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.fc = nn.Linear(channels, channels, bias=False)

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_gate_scale(self, x)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return channels * channels


@register_attention("se_gc")
class SEGC(AttentionModule):
    """SE-GC (ECA-Net, Wang et al. CVPR 2020, Sec. 3.2.1): sigma(G y), a block-diagonal W
    realised as a grouped 1x1 convolution over the pooled vector with ``groups`` groups.
    ``C * C / groups`` parameters.

    ``groups`` defaults to 16 (SE-GC1 of Table 2). Left at its default it resolves per stage
    to the largest divisor of C not above 16 (16 on every C divisible by 16; 8 on an
    8-channel stage; 12 on 24 channels), and the resolved value is recorded in the
    completed parameters. An explicit ``groups`` must divide C.
    """

    PARAMS = {"groups": 16}

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        if "groups" not in params:
            default = cls.PARAMS["groups"]
            return {"groups": max(g for g in range(1, min(default, channels) + 1) if channels % g == 0)}
        g = check_int(cls.kind, "groups", params["groups"])
        if channels % g:
            raise ValueError(f"attention {cls.kind!r}: groups must be an integer >= 1 dividing channels={channels}, got {g!r}")
        return {"groups": g}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.conv = nn.Conv2d(channels, channels, 1, groups=self.params["groups"], bias=False)

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(y[:, :, None, None])).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_gate_scale(self, x)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return channels * channels // p["groups"]
