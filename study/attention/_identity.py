"""``none``: no attention (identity)."""

from __future__ import annotations

import torch

from study.attention._registry import AttentionModule, register_attention
from study.catalogue import AttentionKind

NONE_KIND = AttentionKind("none", paper="the baseline")


@register_attention(NONE_KIND)
class NoAttention(AttentionModule):
    """Identity: the baseline without attention; adds no parameters and no operations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @classmethod
    def expected_params(cls, channels: int, /, **params) -> int:
        return 0
