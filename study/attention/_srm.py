"""SRM: Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural
Networks", ICCV 2019.

Style pooling (Sec. 3.1, eq. (1)-(3)): each channel's mean and standard deviation over the
map, t_c = (mu_c, sigma_c). Style integration (Sec. 3.2, eq. (4)-(6)): a channel-wise fully
connected layer z_c = w_c . t_c (two weights per channel, no bias), batch normalisation and a
sigmoid gate, x * sigmoid(BN(z)). As the authors' code: the weights ``cfc`` (C x 2) start at
zero, the standard deviation is the unbiased one without eps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.attention._registry import AttentionModule, register_attention
from study.catalogue import AttentionKind

SRM_KIND = AttentionKind("srm", paper="Lee et al., SRM, ICCV 2019")


@register_attention(SRM_KIND)
class SRM(AttentionModule):
    """SRM (Lee et al., ICCV 2019, eq. (1)-(6), the authors' ``SRMLayer``): (mean, std) per
    channel -> z_c = cfc[c, 0] mean_c + cfc[c, 1] std_c -> BatchNorm -> sigmoid -> scale.
    The channel-wise FC runs as a grouped 1D convolution (C groups, kernel 2), so its 2C
    multiply-adds are counted as the other kinds' products; the parameter keeps the authors'
    name and shape. On a 1x1 map the standard deviation of one value is 0 (the authors'
    unbiased one divides 0 by 0). Parameters: ``cfc`` 2C + BN's affine 2C = ``4 C``; BN's
    running mean and variance (2C) and its batch counter are buffers, not parameters."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (N, C, HW)
        std = flat.std(dim=2) if flat.shape[2] > 1 else torch.zeros_like(flat[:, :, 0])
        t = torch.stack((flat.mean(dim=2), std), dim=2)  # (N, C, 2)
        z = F.conv1d(t, self.cfc[:, None, :], groups=self.channels)  # (N, C, 1)
        return x * torch.sigmoid(self.bn(z[..., None]))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        cls.resolve(channels, **params)
        return 4 * channels
