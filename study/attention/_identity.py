"""``none``: no attention (identity)."""

from __future__ import annotations

import torch

from study.attention._registry import AttentionModule, register_attention


@register_attention("none")
class NoAttention(AttentionModule):
    """Identity: the baseline without attention; adds no parameters and no operations."""

    PARAMS = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @classmethod
    def expected_params(cls, channels: int, /, **params) -> int:
        return 0
