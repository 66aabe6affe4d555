"""Double attention: Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention
Networks", NeurIPS 2018."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, limited, register_attention
from study.catalogue import AttentionKind, Param

A2_KIND = AttentionKind("a2", params={"r": Param(4, choices=(2, 4, 8), at_most="channels")}, paper="Chen et al., A^2-Nets, NeurIPS 2018")


@register_attention(A2_KIND)
class DoubleAttention(AttentionModule):
    """A2 double-attention block (Chen et al., NeurIPS 2018, Sec. 3, eqs. (4)-(6), Fig. 2).

    Three 1x1 convolutions (with bias) map X (C channels) to A (c_m channels, the features),
    B (c_n channels, the gathering attention maps) and V (c_n channels, the distribution
    attention vectors). Gather, by second-order attention pooling: G = A softmax(B)^T, an
    c_m x c_n matrix of global descriptors, each a weighted sum over all positions with
    weights softmax-normalised over the H*W positions. Distribute: at each position i,
    z_i = G v_i with v_i the c_n-vector V_i softmax-normalised over its c_n entries. A 1x1
    convolution (with bias) maps Z back to C channels and the block adds it to X.

    Reduced dimensions: the paper keeps c_m and c_n below C to keep the block light; here
    c_m = c_n = C // r with ``r`` default 4 (a quarter of the channels; give ``r`` to match
    another setting). Left at its default ``r`` resolves to ``min(4, C)`` per stage (recorded);
    an explicit ``r`` must lie in [1, C]. The three input convolutions are computed as one
    1x1 convolution to C_m + 2 C_n channels (the same parameters).

    Parameters, with ``m = n = C // r``: ``C*(m + 2*n) + m + 2*n`` (the three input convs)
    ``+ m*C + C`` (the output conv) = ``4*C*m + 3*m + C``; weights only: ``4*C**2/r``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        return {"r": limited(cls, "r", channels, params)}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        m = channels // self.params["r"]
        self.m = self.n = m
        self.qkv = nn.Conv2d(channels, self.m + 2 * self.n, 1)  # A, B and V in one convolution
        self.proj = nn.Conv2d(self.m, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_, _, h, w = x.shape
        a, b, v = self.qkv(x).reshape(n_, self.m + 2 * self.n, h * w).split([self.m, self.n, self.n], dim=1)
        g = torch.bmm(a, torch.softmax(b, dim=2).transpose(1, 2))  # gather: (N, m, n)
        z = torch.bmm(g, torch.softmax(v, dim=1))  # distribute: (N, m, HW)
        return x + self.proj(z.reshape(n_, self.m, h, w))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        m = channels // cls.resolve(channels, **params)["r"]
        return 4 * channels * m + 3 * m + channels
