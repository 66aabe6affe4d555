"""FcaNet: Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks", ICCV 2021.

Multi-spectral channel attention (Sec. 3.3, eq. (7)-(9)): the channels are split into n
groups, group i is pooled by the 2-D DCT basis of its own frequency (u_i, v_i) (eq. (2); the
(0, 0) basis is global average pooling up to a factor, Theorem 1), and the pooled vector goes
through SE's excitation, sigmoid(W2 relu(W1 y)) with both FCs bias-free, as the authors' code.

Frequencies are indices on a 7x7 grid (Sec. 3.4, Fig. 4): ``freq`` names a selection as the
authors' ``get_freq_indices`` does, ``top``/``low``/``bot`` followed by n in 1, 2, 4, 8, 16, 32
(``top16``, the paper's default: the 16 best single frequencies of its Fig. 4 study). On a map
of side L >= 7 the filters are L x L and the indices scale by L // 7, as the authors' code does
for its 56/28/14/7 maps (identical to it where 7 divides L); a map that is not the filters'
size is first average-pooled to it (adaptive pooling, the authors' one-line fallback), which
on a map smaller than 7x7 spreads it over the 7x7 grid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.attention._registry import AttentionModule, register_attention
from study.attention._se import reduced_width, reduction_mlp_params
from study.catalogue import REDUCTIONS, AttentionKind, Param
from study.validate import check_int

FCA_KIND = AttentionKind("fca", params={"r": Param(16, choices=REDUCTIONS), "freq": Param("top16"), "size": Param(None)},
                         map_params=("size",), paper="Qin et al., FcaNet, ICCV 2021")

#: the authors' frequency orders on the 7x7 grid (u, v), best first (``get_freq_indices``)
FREQUENCIES = {
    "top": tuple(zip((0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1),
                     (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3))),
    "low": tuple(zip((0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4),
                     (0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3))),
    "bot": tuple(zip((6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6),
                     (6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3))),
}
#: the selections' sizes the authors offer
COUNTS = (1, 2, 4, 8, 16, 32)
#: the side of the frequency grid
GRID = 7
SELECTIONS = tuple(f"{family}{n}" for family in FREQUENCIES for n in COUNTS)


def _check_freq(kind: str, freq: Any, channels: int) -> tuple[str, int]:
    if freq not in SELECTIONS:
        raise ValueError(f"attention {kind!r}: freq must be top, low or bot followed by one of 1, 2, 4, 8, 16, 32 (e.g. top16), "
                         f"got {freq!r}")
    n = int(freq[3:])
    if channels % n:
        raise ValueError(f"attention {kind!r}: freq {freq!r} splits the channels into {n} groups, which must divide channels={channels}")
    return freq, n


def _dct_1d(pos: torch.Tensor, freq: int, length: int) -> torch.Tensor:
    """The orthonormal DCT-II basis of frequency ``freq`` on ``length`` points (eq. (1))."""
    basis = torch.cos(math.pi * freq * (pos + 0.5) / length) / math.sqrt(length)
    return basis * math.sqrt(2) if freq else basis


def dct_filters(channels: int, freq: str, size: int) -> torch.Tensor:
    """(C, size, size): the filter of every channel, group i (C / n consecutive channels) with
    the basis of the selection's i-th frequency, its indices scaled by ``size // 7``."""
    n, scale = int(freq[3:]), size // GRID
    pos = torch.arange(size, dtype=torch.float64)
    filters = torch.empty(channels, size, size, dtype=torch.float64)
    for i, (u, v) in enumerate(FREQUENCIES[freq[:3]][:n]):
        block = slice(i * channels // n, (i + 1) * channels // n)
        filters[block] = torch.outer(_dct_1d(pos, u * scale, size), _dct_1d(pos, v * scale, size))
    return filters.float()


@register_attention(FCA_KIND)
class FCA(AttentionModule):
    """Multi-spectral channel attention (Qin et al., ICCV 2021, eq. (9), the authors'
    ``MultiSpectralAttentionLayer``): DCT pooling per channel group -> FC(C -> C/r) -> ReLU ->
    FC(C/r -> C) -> sigmoid -> scale. See the module docstring for ``freq`` and ``size``.

    ``r`` default 16 (reduced width ``max(1, C // r)``, as SE's). ``freq`` default ``top16``;
    left at its default it resolves per stage to the largest top-n (n <= 16) whose groups
    divide C (the authors' code requires C divisible by n), recorded; an explicit one must
    divide C. ``size`` (the filters' side, at least 7) left at its default resolves from the
    stage's feature map: its side, or 7 below 7x7; without a known map, 7. The filters are a
    buffer, not parameters: ``2 C (C // r)``, SE's bias-free count. The DCT pooling is
    elementwise work (a weighted sum, counted as pooling is: not at all), so the MACs are SE's,
    as the paper states (the same parameters and computation as SENet)."""

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        r = check_int(params.get("r", cls.PARAMS["r"]), "r", 1, whole=True)
        if "freq" in params:
            freq, _ = _check_freq(cls.kind, params["freq"], channels)
        else:
            freq = f"top{min(16, channels & -channels)}"  # the largest power of two <= 16 dividing C
        if params.get("size") is not None:
            size = check_int(params["size"], "size", GRID, whole=True)
        else:
            size = GRID if feature_map is None else max(GRID, *feature_map)
        return {"r": r, "freq": freq, "size": size}

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        p = self.params
        self.register_buffer("weight", dct_filters(channels, p["freq"], p["size"]))
        hidden = reduced_width(channels, p["r"])
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.params["size"]
        pooled = x if x.shape[2:] == (size, size) else F.adaptive_avg_pool2d(x, size)
        y = (pooled * self.weight.to(x.dtype)).sum(dim=(2, 3))
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(y))))[:, :, None, None]

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        return reduction_mlp_params(channels, cls.resolve(channels, **params)["r"], False)
