"""BAM: Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, limited, register_attention
from study.catalogue import REDUCTIONS, AttentionKind, Param
from study.validate import check_int

#: BAM's dilated 3x3 convolutions need a map larger than 1x1 (``min_side``)
BAM_KIND = AttentionKind("bam", params={"r": Param(16, choices=REDUCTIONS, at_most="channels"),
                                        "dilation": Param(4, choices=(1, 2, 4), at_most="side - 1")},
                         map_params=("dilation",), min_side=2, paper="Park et al., BAM, BMVC 2018")


def check_dilation(kind: str, dilation: int, h: int, w: int) -> None:
    """A 3x3 convolution with dilation d and padding d reaches beyond its centre only when
    d < max(H, W); otherwise it is a 1x1 convolution in disguise, so refuse it."""
    side = max(h, w)
    if side == 1:
        raise ValueError(f"attention {kind!r}: dilation cannot fit a 1x1 feature map (the dilated 3x3 convolutions need a map larger than "
                         f"1x1), got {dilation}")
    if dilation >= side:
        raise ValueError(
            f"attention {kind!r}: dilation must be an integer in [1, {side - 1}] on a {h}x{w} feature map "
            f"(a larger one leaves only the centre tap of the dilated 3x3 convolutions inside the map), got {dilation}"
        )


def fitted_dilation(kind: str, default: int, feature_map: tuple[int, int] | None) -> int:
    """The dilation a stage takes when none is given: the paper's ``default`` (4) where the
    map allows it, else the largest that fits, ``max(H, W) - 1``; ``default`` when the map
    is not known (then checked at forward time). No dilation fits a 1x1 map."""
    if feature_map is None:
        return default
    h, w = feature_map
    if max(h, w) == 1:
        raise ValueError(f"attention {kind!r}: no dilation fits a 1x1 feature map (the dilated 3x3 convolutions need a map larger than "
                         f"1x1)")
    return min(default, max(h, w) - 1)


@register_attention(BAM_KIND)
class BAM(AttentionModule):
    """BAM (Park et al., BMVC 2018, Sec. 3, eqs. (1)-(4)): F' = F * (1 + sigma(M_c(F) + M_s(F))).

    Channel branch M_c (eq. 3): GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C) -> BN, a C-vector.
    Spatial branch M_s (eq. 4): 1x1 conv C -> C/r, then two 3x3 convolutions with dilation
    ``dilation`` on C/r channels, then a 1x1 conv C/r -> 1 and BN, an H x W map; BN and ReLU
    follow each inner convolution, as in the authors' released code. The two are broadcast
    to C x H x W and added before the sigmoid, as the paper's eq. (1)-(2) state (the released
    code multiplies them instead). Defaults from the paper's ablation of the two (Sec. 4.1):
    ``r=16`` and ``dilation=4``.

    ``r`` left at its default resolves to ``min(16, C)`` per stage (recorded); an explicit
    ``r`` must lie in [1, C]. The dilation must let the 3x3 taps reach inside the feature
    map, ``dilation < max(H, W)``. Left at its default it resolves per stage from the
    stage's feature map when that is known (``feature_map``; the model built for an input
    resolution): the paper's 4 where ``max(H, W) > 4``, else ``max(H, W) - 1``, the largest
    that fits (recorded); a 1x1 map takes no dilation (an error). An explicit dilation is
    checked against a known map at once, and against the actual map at forward time.

    Parameters, with ``h = C // r``: channel ``2*C*h + h + C`` (FCs with bias) ``+ 2*C`` (BN);
    spatial ``C*h + h + 2*(9*h*h + h) + h + 1`` (convs with bias) ``+ 2*h + 2*2*h + 2`` (BN):
    in all ``3*C*h + 18*h*h + 11*h + 3*C + 3``. In the weights-only convention of the
    attention papers' tables (no bias, no BN, h = C/r): ``C/r * (3*C + 2*3**2*C/r + 1)``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        r = limited(cls, "r", channels, params)
        if "dilation" not in params:
            return {"r": r, "dilation": fitted_dilation(cls.kind, cls.PARAMS["dilation"], feature_map)}
        dilation = check_int(params["dilation"], "dilation", 1, whole=True)
        if feature_map is not None:
            check_dilation(cls.kind, dilation, *feature_map)
        return {"r": r, "dilation": dilation}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        h = channels // self.params["r"]
        d = self.params["dilation"]
        self.channel = nn.Sequential(nn.Linear(channels, h), nn.ReLU(inplace=True), nn.Linear(h, channels), nn.BatchNorm1d(channels))
        layers: list[nn.Module] = [nn.Conv2d(channels, h, 1), nn.BatchNorm2d(h), nn.ReLU(inplace=True)]
        for _ in range(2):
            layers += [nn.Conv2d(h, h, 3, padding=d, dilation=d), nn.BatchNorm2d(h), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(h, 1, 1), nn.BatchNorm2d(1)]
        self.spatial = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_dilation(self.kind, self.params["dilation"], x.shape[2], x.shape[3])
        m_c = self.channel(x.mean(dim=(2, 3)))[:, :, None, None]  # (N, C, 1, 1)
        m_s = self.spatial(x)  # (N, 1, H, W)
        return x * (1 + torch.sigmoid(m_c + m_s))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        h = channels // cls.resolve(channels, **params)["r"]
        return 3 * channels * h + 18 * h * h + 11 * h + 3 * channels + 3
