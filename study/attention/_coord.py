"""Coordinate Attention: Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile
Network Design", CVPR 2021."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.attention._registry import AttentionModule, register_attention
from study.catalogue import AttentionKind, Param
from study.validate import check_int

COORD_KIND = AttentionKind("coord", params={"r": Param(32, choices=(8, 16, 32))}, paper="Hou et al., Coordinate Attention, CVPR 2021")


@register_attention(COORD_KIND)
class CoordAttention(AttentionModule):
    """Coordinate Attention (Hou et al., CVPR 2021, Fig. 2(c), eqs. (4)-(9)).

    Average-pool along W (-> C x H x 1) and along H (-> C x 1 x W), concatenate along the
    spatial axis, shared 1x1 conv C -> mip with ``mip = max(8, C // r)`` (``r`` default 32,
    as the authors' code), BatchNorm, h-swish, split back, two 1x1 convs mip -> C, sigmoids,
    and multiply x by both the height and the width attention maps.
    Parameters: ``3*C*mip + 3*mip + 2*C`` (1x1 convs with bias, BN affine).
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        p = {**cls.PARAMS, **params}
        p["r"] = check_int(p["r"], "r", 1, whole=True)
        return p

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        mip = max(8, channels // self.params["r"])
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        x_h = x.mean(dim=3, keepdim=True)  # (N, C, H, 1)
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
        y = F.hardswish(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # (N, C, H, 1)
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (N, C, 1, W)
        return x * a_h * a_w

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        mip = max(8, channels // p["r"])
        return 3 * channels * mip + 3 * mip + 2 * channels
