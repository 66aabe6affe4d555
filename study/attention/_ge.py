"""Gather-Excite: Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature
Context in Convolutional Neural Networks", NeurIPS 2018.

A gather operator xi_G aggregates the responses over a spatial extent; an excite operator
xi_E rescales the features with the gathered context: y = x * sigma(interp(xi_G(x))). The
extent ratio e sets how far a gathered value reaches: a local extent e gives a map of
ceil(H/e) x ceil(W/e) (each value seeing a (2e-1) x (2e-1) window, stride e) that is
upsampled back by nearest-neighbour interpolation; the *global* extent (``extent=0`` here)
gathers one value per channel over the whole map.

**Default extent: global (0) for all three kinds.** The paper's extent study (Sec. 4, the
tables of GE-theta-minus and GE-theta on ResNet-50 over e = 2, 4, 8 and global) finds the
global extent best, and its ImageNet results for GE-theta-minus, GE-theta and GE-theta-plus
use it. For the parametric kinds a global gather is a depthwise convolution whose kernel
covers the whole map (Sec. 3: a depthwise convolution with the spatial size of the map), so
its ``size`` is the side of the stage's square feature map. Left at its default it resolves
per stage from that map when it is known (``feature_map``: the model built for an input
resolution, e.g. 7 for the last ResNet stage at 224 px), and is recorded; when the map is not
known the global parametric gather needs an explicit ``size`` (a one-line error otherwise).
A local extent needs no size. The extent (and an explicit ``size``) is checked against a
known map at once and against the actual H and W at forward time: a local extent must be
smaller than max(H, W) (otherwise it gathers globally; say ``extent=0``), a global ``size``
must equal the side of the square map.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.attention._registry import AttentionModule, limited, register_attention
from study.catalogue import REDUCTIONS, AttentionKind, Param
from study.validate import check_int

#: the extents a search tries (0: global), each where it is smaller than the stage's map side
GE_THETA_MINUS_KIND = AttentionKind("ge_theta_minus", params={"extent": Param(0, choices=(0, 2, 4, 8), at_most="side - 1")},
                                    paper="Hu et al., Gather-Excite, NeurIPS 2018")
GE_THETA_KIND = AttentionKind("ge_theta", params={"extent": Param(0, choices=(0, 2, 4, 8), at_most="side - 1"), "size": Param(None)},
                              map_params=("size",), paper="Hu et al., Gather-Excite, NeurIPS 2018")
GE_THETA_PLUS_KIND = AttentionKind("ge_theta_plus", params={"extent": Param(0, choices=(0, 2, 4, 8), at_most="side - 1"),
                                                            "size": Param(None), "r": Param(16, choices=REDUCTIONS, at_most="channels")},
                                   map_params=("size",), paper="Hu et al., Gather-Excite, NeurIPS 2018")


def _check_extent(kind: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not (value == 0 or (value >= 2 and value & (value - 1) == 0)):
        raise ValueError(f"attention {kind!r}: extent must be 0 (global) or a power of two >= 2, got {value!r}")
    return value


class _GatherExcite(AttentionModule):
    """Shared parameter handling and excite step of the three Gather-Excite kinds."""

    #: whether the gather has parameters (depthwise convolutions)
    PARAMETRIC = False

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        p = {"extent": _check_extent(cls.kind, params.get("extent", 0))}
        size = params.get("size")
        if cls.PARAMETRIC:
            if p["extent"] == 0:
                if size is None:
                    size = _fitted_size(cls.kind, feature_map)
                p["size"] = check_int(size, "size", 1, whole=True)
            elif size is not None:
                raise ValueError(f"attention {cls.kind!r}: size applies to the global extent only (extent=0), got size={size!r} with "
                                 f"extent={p['extent']}")
            else:
                p["size"] = None
        if feature_map is not None:
            cls._check_fit(p, *feature_map)
        return p

    @classmethod
    def _check_fit(cls, params: dict[str, Any], h: int, w: int) -> None:
        extent = params["extent"]
        side = max(h, w)
        if extent and extent >= side:
            largest = 2 ** math.floor(math.log2(side - 1)) if side > 2 else 0
            valid = f"0 (global) or a power of two in [2, {largest}]" if largest >= 2 else "0 (global)"
            raise ValueError(f"attention {cls.kind!r}: extent must be {valid} on a {h}x{w} feature map (a larger extent gathers "
                             f"globally), got {extent}")
        size = params.get("size")
        if extent == 0 and size is not None and (h, w) != (size, size):
            raise ValueError(
                f"attention {cls.kind!r}: size must equal the side of the square feature map the global gather covers "
                f"(this one is {h}x{w}), got size={size}"
            )

    def _check_map(self, h: int, w: int) -> None:
        self._check_fit(self.params, h, w)

    def _excite(self, x: torch.Tensor, gathered: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(gathered)
        if gate.shape[2:] != x.shape[2:]:
            gate = F.interpolate(gate, size=x.shape[2:], mode="nearest")
        return x * gate


def _fitted_size(kind: str, feature_map: tuple[int, int] | None) -> int:
    """The global gather's kernel side: the side of the square feature map it covers."""
    if feature_map is None:
        raise ValueError(
            f"attention {kind!r}: size is required with extent=0 when the feature map is not known (the global gather is a "
            f"depthwise size x size convolution over the whole map: give the stage's feature-map side, e.g. size=7, or build "
            f"the model for its input resolution), or choose a local extent 2, 4, 8, ..."
        )
    h, w = feature_map
    if h != w:
        raise ValueError(f"attention {kind!r}: the global gather (extent=0) needs a square feature map, got {h}x{w}; choose a local "
                         f"extent 2, 4, 8, ...")
    return h


def _parametric_gather(channels: int, extent: int, size: int | None) -> nn.Sequential:
    """GE-theta's gather: one depthwise size x size convolution (global) or log2(e) depthwise
    3x3 stride-2 convolutions (local extent e), each followed by BN, ReLU between them."""
    if extent == 0:
        return nn.Sequential(nn.Conv2d(channels, channels, size, groups=channels, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    for i in range(int(math.log2(extent))):
        if i:
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False), nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


def _parametric_gather_params(channels: int, extent: int, size: int | None) -> int:
    if extent == 0:
        return channels * size * size + 2 * channels
    return int(math.log2(extent)) * (9 * channels + 2 * channels)


@register_attention(GE_THETA_MINUS_KIND)
class GEThetaMinus(_GatherExcite):
    """GE-theta-minus (Hu et al., NeurIPS 2018, Sec. 3): parameter-free gather by average
    pooling (global mean for ``extent=0``, the default; for a local extent e a (2e-1) x (2e-1)
    average pool with stride e, padding e-1, padded cells not counted), excite by
    nearest-neighbour upsampling and a sigmoid. No parameters. With the global extent it is
    the ECA paper's SE-Var1, sigma(GAP(x)) * x."""

    @property
    def pooled_gate(self) -> bool:
        """With the global extent the gate is a function of the pooled vector (memory-lean path)."""
        return self.params["extent"] == 0

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y)

    def fused_gate(self, y: torch.Tensor) -> torch.Tensor:
        return self.gate(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_map(x.shape[2], x.shape[3])
        e = self.params["extent"]
        if e == 0:
            return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]
        return self._excite(x, F.avg_pool2d(x, 2 * e - 1, stride=e, padding=e - 1, count_include_pad=False))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        cls.resolve(channels, **params)
        return 0


@register_attention(GE_THETA_KIND)
class GETheta(_GatherExcite):
    """GE-theta (Hu et al., NeurIPS 2018, Sec. 3): a parametric gather of depthwise
    convolutions, each followed by BN - for a local extent e, log2(e) 3x3 stride-2 convolutions
    with ReLU between them; for the global extent (``extent=0``, the default) one size x size
    convolution covering the map, ``size`` by default the map's side - then
    nearest-neighbour upsampling and a sigmoid. Parameters: ``log2(e) * 11 * C`` (local),
    ``C * size**2 + 2*C`` (global)."""

    PARAMETRIC = True

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        self.gather = _parametric_gather(channels, self.params["extent"], self.params["size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_map(x.shape[2], x.shape[3])
        return self._excite(x, self.gather(x))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        return _parametric_gather_params(channels, p["extent"], p["size"])


@register_attention(GE_THETA_PLUS_KIND)
class GEThetaPlus(_GatherExcite):
    """GE-theta-plus (Hu et al., NeurIPS 2018, Sec. 3): GE-theta's parametric gather followed
    by an SE-style excite - 1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C (both with bias) - before
    upsampling and the sigmoid. ``r`` default 16 as in SENet; left at its default it resolves to
    ``min(16, C)`` per stage (recorded); an explicit ``r`` must lie in [1, C]. Parameters: the
    gather's (see GE-theta) plus ``2*C*h + h + C`` with ``h = C // r``."""

    PARAMETRIC = True

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        p = super()._resolve(channels, params, feature_map)
        p["r"] = limited(cls, "r", channels, params)
        return p

    def __init__(self, channels: int, /, **params: Any):
        super().__init__(channels, **params)
        h = channels // self.params["r"]
        self.gather = _parametric_gather(channels, self.params["extent"], self.params["size"])
        self.excite = nn.Sequential(nn.Conv2d(channels, h, 1), nn.ReLU(inplace=True), nn.Conv2d(h, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_map(x.shape[2], x.shape[3])
        return self._excite(x, self.excite(self.gather(x)))

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        p = cls.resolve(channels, **params)
        h = channels // p["r"]
        return _parametric_gather_params(channels, p["extent"], p["size"]) + 2 * channels * h + h + channels
