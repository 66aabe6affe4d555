"""Circular ECA: ECA whose channel convolution wraps around the channel axis.

ECA (Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020) weights channel i by a 1D convolution of size k over the pooled
channels i-(k-1)/2 .. i+(k-1)/2, zero outside 0..C-1 (eq. (6)-(9)), with k an explicit odd
integer or the paper's psi(C; gamma, b) (eq. (12), :func:`study.catalogue.psi`). The channels
have no order that makes the first and the last ones far apart, so timm's ``CecaModule``
(``timm/layers/eca.py``, by Chris Ha) pads the pooled vector circularly instead: every channel,
the edge ones included, interacts with k channels. This kind is that module: the same k
weights (a ``Conv1d(1, 1, k)`` without bias, so state dicts match timm's), the same parameters
as ``eca`` (``k``, or ``gamma`` and ``b`` with ``rule``; ``rule="timm"`` is timm's floor of 3),
the same search.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from study.attention._eca import KernelSized
from study.attention._registry import register_attention
from study.catalogue import PSI_MODES, PSI_PARAMS, AttentionKind

ECA_CIRCULAR_KIND = AttentionKind("eca_circular", params=PSI_PARAMS, psi=True, modes=PSI_MODES,
                                  paper="Wang et al., ECA-Net, CVPR 2020, with timm's circular padding (CecaModule)")


@register_attention(ECA_CIRCULAR_KIND)
class CircularECA(KernelSized):
    """Circular ECA: GAP -> z_i = sum_j w_j y_((i + j - (k-1)/2) mod C) -> sigmoid -> scale.
    Exactly ``k`` parameters. See the module docstring for ``k`` / ``gamma``, ``b``, ``rule``."""

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        k = self.k
        self.conv = nn.Conv1d(1, 1, k, bias=False)
        # window j of channel i reads channel (i + j - (k-1)/2) mod C: any k wraps around, however small C is
        window = torch.arange(channels)[:, None] + torch.arange(k)[None, :] - (k - 1) // 2
        self.register_buffer("window", window % channels, persistent=False)

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        """The channel weights (N, C) for the pooled vector ``y`` (N, C)."""
        return torch.sigmoid(y[:, self.window] @ self.conv.weight.reshape(-1).to(y.dtype))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return cls.resolve(channels, **params)["k"]
