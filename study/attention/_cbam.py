"""CBAM: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, register_attention
from study.attention._se import reduced_width, reduction_mlp_params, resolve_reduction
from study.catalogue import REDUCTIONS, AttentionKind, Param
from study.validate import check_int

CBAM_KIND = AttentionKind("cbam", params={"r": Param(16, choices=REDUCTIONS), "kernel_size": Param(7), "bias": Param(True)},
                          paper="Woo et al., CBAM, ECCV 2018")


@register_attention(CBAM_KIND)
class CBAM(AttentionModule):
    """CBAM (Woo et al., ECCV 2018, eqs. (1)-(3)): channel attention, then spatial attention.

    Channel: a shared MLP C -> C/r -> C (ReLU between; ``bias`` default True, as the
    authors' code) over the average- and the max-pooled vectors, summed, sigmoid, scale.
    Spatial: a ``kernel_size`` x ``kernel_size`` convolution (default 7, odd) over the
    channel-wise average and max maps, followed by BatchNorm as in the authors' released
    code, sigmoid, scale. ``r`` default 16; the reduced width is ``max(1, C // r)``.
    Parameters: ``2*C*h + (h + C if bias) + 2*kernel_size**2 + 2`` with ``h = max(1, C // r)``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        p = resolve_reduction({**cls.PARAMS, **params})
        p["kernel_size"] = check_int(p["kernel_size"], "kernel_size", 1, odd=True, whole=True)
        return p

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        hidden = reduced_width(channels, self.params["r"])
        bias = self.params["bias"]
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=bias), nn.ReLU(inplace=True), nn.Linear(hidden, channels, bias=bias))
        ks = self.params["kernel_size"]
        self.spatial = nn.Conv2d(2, 1, ks, padding=(ks - 1) // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(ca)[:, :, None, None]
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial_bn(self.spatial(s)))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return reduction_mlp_params(channels, p["r"], p["bias"]) + 2 * p["kernel_size"] ** 2 + 2
