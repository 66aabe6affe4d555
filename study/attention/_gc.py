"""Global context block: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", ICCV Workshops 2019."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, limited, register_attention
from study.catalogue import REDUCTIONS, AttentionKind, Param

GC_KIND = AttentionKind("gc", params={"r": Param(16, choices=REDUCTIONS, at_most="channels // 2")}, paper="Cao et al., GCNet, ICCVW 2019")


@register_attention(GC_KIND)
class GlobalContext(AttentionModule):
    """GC block (Cao et al., ICCVW 2019, Fig. 4(d) and eq. (3)):
    z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k x_j) x_j)).

    Context modelling: a 1x1 conv C -> 1 (with bias) gives one logit per position, softmax
    over the H*W positions, and the context is the attention-weighted sum of the features
    (a C-vector). Transform: a bottleneck 1x1 conv C -> C/r, LayerNorm over the C/r channels
    (with affine), ReLU, 1x1 conv C/r -> C, both convs with bias. Fusion: broadcast addition to
    every position. ``r`` default 16 (the paper's GC-r16). The bottleneck needs at least two
    channels - LayerNorm over a single channel outputs its bias whatever the context, so the
    block would ignore its input - hence ``r`` left at its default resolves to
    ``min(16, C // 2)`` per stage (recorded) and an explicit ``r`` must lie in [1, C // 2]. As in the
    authors' code, the mask conv has Kaiming (fan-in) initialisation and the last conv starts
    at zero, so the block starts as the identity.

    Parameters, with ``p = C // r``: ``(C + 1) + (C*p + p) + 2*p + (p*C + C) =
    2*C*p + 3*p + 2*C + 1``; weights only (no bias, no LayerNorm, p = C/r): ``2*C**2/r + C``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        why = f"channels // 2 = {channels // 2}: LayerNorm over a single bottleneck channel ignores the context"
        return {"r": limited(cls, "r", channels, params, why=why)}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        p = channels // self.params["r"]
        self.mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(nn.Linear(channels, p), nn.LayerNorm(p), nn.ReLU(inplace=True), nn.Linear(p, channels))
        nn.init.kaiming_normal_(self.mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.mask.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        weights = torch.softmax(self.mask(x).reshape(n, 1, -1), dim=2)  # (N, 1, HW)
        context = torch.bmm(x.reshape(n, c, -1), weights.transpose(1, 2)).reshape(n, c)  # (N, C)
        return x + self.transform(context)[:, :, None, None]

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = channels // cls.resolve(channels, **params)["r"]
        return 2 * channels * p + 3 * p + 2 * channels + 1
