"""GCT: Yang, Zhu, Wu, Yang, "Gated Channel Transformation for Visual Recognition", CVPR 2020.

Global context embedding s_c = alpha_c ||x_c||_2 (eq. (1), with eps inside the root as the
authors' code), channel normalisation s^_c = sqrt(C) s_c / ||s||_2 (eq. (2); the code's
gamma_c / sqrt(mean_c s_c^2 + eps) folds sqrt(C) and gamma into one), gating
x^_c = x_c (1 + tanh(gamma_c s^_c + beta_c)) (eq. (3)). alpha starts at 1, gamma and beta at 0
(Sec. 3.4), so the module starts as the identity. 3C parameters.

Placement: the paper puts GCT before every convolution; the harness places every kind at one
place per block (after the block's last BN, before the residual sum), and so does this one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, register_attention
from study.catalogue import AttentionKind, Param
from study.validate import check_number

GCT_KIND = AttentionKind("gct", params={"eps": Param(1e-5)}, paper="Yang et al., GCT, CVPR 2020")


@register_attention(GCT_KIND)
class GCT(AttentionModule):
    """Gated Channel Transformation (Yang et al., CVPR 2020, eq. (1)-(3), the authors' l2 mode):
    ``embedding = alpha * sqrt(sum_hw x^2 + eps)``, ``norm = gamma / sqrt(mean_c embedding^2 +
    eps)``, ``x * (1 + tanh(embedding * norm + beta))``. ``eps`` default 1e-5 (the authors'
    code). Parameters ``alpha``, ``gamma``, ``beta``, C each (named as the authors'): ``3 C``.
    ``beta``, the gating bias, gets no weight decay: the authors' README ("we propose not to
    apply weight decay on the gating bias (beta parameter) of GCT"; z-x-yang/GCT)."""

    no_weight_decay = ("beta",)

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        return {"eps": float(check_number(params.get("eps", cls.PARAMS["eps"]), "eps", positive=True))}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.params["eps"]
        embedding = (x.square().sum(dim=(2, 3), keepdim=True) + eps).sqrt() * self.alpha
        norm = self.gamma / (embedding.square().mean(dim=1, keepdim=True) + eps).sqrt()
        return x * (1 + torch.tanh(embedding * norm + self.beta))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        cls.resolve(channels, **params)
        return 3 * channels
