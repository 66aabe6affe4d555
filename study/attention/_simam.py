"""SimAM: Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for
Convolutional Neural Networks", ICML 2021.

Each neuron t of a channel gets the inverse of its minimal energy (eq. (5)-(6)): with the
channel's mean mu and variance sigma^2 = sum_i (x_i - mu)^2 / n over its n + 1 = H W positions,
1 / e_t* = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2, and the map is refined as
x * sigmoid(1 / E) (eq. (7)): a 3-D weight, no parameters. ``e_lambda`` is the paper's lambda
(default 1e-4, Sec. 4, the authors' module; their ImageNet commands pass 0.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from study.attention._registry import AttentionModule, register_attention
from study.catalogue import AttentionKind, Param
from study.validate import check_number

#: lambda: the paper's 1e-4 and the grid of its sensitivity study (1e-1 .. 1e-6)
SIMAM_KIND = AttentionKind("simam", params={"e_lambda": Param(1e-4, choices=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6))},
                           paper="Yang et al., SimAM, ICML 2021")


@register_attention(SIMAM_KIND)
class SimAM(AttentionModule):
    """SimAM (Yang et al., ICML 2021, eq. (5)-(7) and the authors' code): d = (x - mean_hw x)^2,
    y = d / (4 (sum_hw d / n + lambda)) + 0.5 with n = H W - 1, out = x * sigmoid(y). No
    parameters. On a 1x1 map the variance of one value is taken as 0 (n = 1, d = 0: every
    weight is sigmoid(0.5)), where the authors' n = 0 divides 0 by 0."""

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        value = check_number(params.get("e_lambda", cls.PARAMS["e_lambda"]), "e_lambda", positive=True)
        return {"e_lambda": float(value)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(math.prod(x.shape[2:]) - 1, 1)
        d = (x - x.mean(dim=(2, 3), keepdim=True)).square()
        y = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.params["e_lambda"])) + 0.5
        return x * torch.sigmoid(y)

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        cls.resolve(channels, **params)
        return 0
