"""Global second-order pooling: Gao, Xie, Wang, Li, "Global Second-order Pooling
Convolutional Networks", CVPR 2019."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._registry import AttentionModule, limited, register_attention
from study.catalogue import AttentionKind, Param

GSOP_KIND = AttentionKind("gsop", params={"dim": Param(128, choices=(32, 64, 128), at_most="channels")},
                          paper="Gao et al., GSoP-Net, CVPR 2019")


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Channel covariance of every sample over its H*W positions: (N, d, H, W) -> (N, d, d),
    ``(1/M) sum_i (x_i - mean)(x_i - mean)^T`` with M = H*W (the biased estimate, as in the
    authors' covariance pooling layer)."""
    n, d = x.shape[:2]
    flat = x.reshape(n, d, -1)
    centred = flat - flat.mean(dim=2, keepdim=True)
    return torch.bmm(centred, centred.transpose(1, 2)) / flat.shape[2]


@register_attention(GSOP_KIND)
class GSoP(AttentionModule):
    """GSoP block in its channel-attention form (Gao et al., CVPR 2019, Sec. 3.1 and Fig. 2;
    GSoP-Net1, the form the ECA paper compares against).

    Squeeze: ReLU, a 1x1 conv (with bias) reducing C to ``dim`` channels, BN, ReLU; then the
    ``dim`` x ``dim`` channel-wise covariance matrix over the H*W positions. Excitation:
    BN over the covariance rows, a row-wise convolution - every row of the covariance is
    convolved on its own into 4 outputs (a grouped ``dim`` x 1 convolution with ``dim``
    groups and ``4*dim`` outputs, with bias) - ReLU, a 1x1 conv 4*dim -> C (with bias) and a
    sigmoid give one weight per channel, which scales the input.

    ``dim`` default 128 (the paper's reduction); left at its default it resolves to
    ``min(128, C)`` per stage (recorded); an explicit ``dim`` must lie in [1, C] (a
    "reduction" to more channels than C is refused).

    Parameters, with ``d = dim``: ``C*d + d`` (reduction conv) ``+ 2*d`` (BN) ``+ 2*d``
    (row BN) ``+ 4*d*d + 4*d`` (row-wise conv) ``+ 4*d*C + C`` (final conv)
    = ``5*C*d + 4*d*d + 9*d + C``; weights only: ``5*C*d + 4*d**2``.
    """

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        return {"dim": limited(cls, "dim", channels, params)}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        d = self.params["dim"]
        self.reduce = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, d, 1), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
        self.row_bn = nn.BatchNorm2d(d)
        self.row_conv = nn.Conv2d(d, 4 * d, (d, 1), groups=d)
        self.fc = nn.Conv2d(4 * d, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cov = covariance(self.reduce(x)).unsqueeze(3)  # (N, d, d, 1): row i of the covariance is channel i
        gate = torch.sigmoid(self.fc(torch.relu(self.row_conv(self.row_bn(cov)))))  # (N, C, 1, 1)
        return x * gate

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        d = cls.resolve(channels, **params)["dim"]
        return 5 * channels * d + 4 * d * d + 9 * d + channels
