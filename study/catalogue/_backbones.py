"""What every stage of a backbone is, at a width and a stem, without building anything.

A backbone's plan gives, per stage, the channels C its attention acts on, the blocks' inner
width (``planes``), the number of blocks and the first block's stride, and the strides of its
stems, from which the side of the feature map every stage's attention sees follows by
arithmetic (:meth:`BackbonePlan.feature_maps`). The modules that build the backbones
(:mod:`study.models`) read their layouts from here: one home for each layout.

- ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks): He, Zhang, Ren, Sun, "Deep
  Residual Learning for Image Recognition", CVPR 2016, Table 1, with torchvision's layout.
- MobileNetV2: Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and
  Linear Bottlenecks", CVPR 2018, Table 2, with torchvision's width rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from study.registry import Registry

__all__ = [
    "STEMS", "StagePlan", "BackbonePlan", "RESNET_LAYOUTS", "RESNET_BASE_PLANES", "MOBILENETV2_SETTINGS",
    "register_plan", "backbone_plan", "backbone_names", "num_stages", "stage_plans", "feature_maps",
    "scaled", "make_divisible",
]

#: "imagenet": 7x7/2 conv + 3x3/2 max-pool (ResNets) or a 3x3/2 first conv (MobileNetV2),
#: for 224-px input. "lowres": a 3x3/1 first conv and no max-pool, for 32-64 px proxies.
STEMS = ("imagenet", "lowres")


@dataclass(frozen=True)
class StagePlan:
    """One stage of a backbone at a given width: the channels C its attention acts on, the
    blocks' inner width ``planes``, the number of blocks and the first block's stride."""

    channels: int
    planes: int
    blocks: int
    stride: int


def _side(side: int, stride: int) -> int:
    """The output side of a convolution or pooling of stride ``stride`` that keeps the map
    ("same" padding: a 3x3 with padding 1, a 7x7 with padding 3, a 1x1, a 3x3 max-pool with
    padding 1): ceil(side / stride)."""
    return (side - 1) // stride + 1


@dataclass(frozen=True)
class BackbonePlan:
    """A backbone's plan: ``stages(width, stem)`` and the strides its ``stem_strides`` name
    before the first stage, per stem."""

    name: str
    stages: Callable[[float, str], tuple[StagePlan, ...]]
    stem_strides: Mapping[str, tuple[int, ...]]
    description: str = ""

    @property
    def num_stages(self) -> int:
        return len(self.stages(1.0, "imagenet"))

    def feature_maps(self, width: float, stem: str, resolution: int) -> tuple[tuple[int, int], ...]:
        """The (H, W) of the feature map each stage's attention sees for square ``resolution``
        px input: the stem's strides, then each stage's first stride."""
        side = resolution
        for stride in self.stem_strides[stem]:
            side = _side(side, stride)
        out = []
        for plan in self.stages(width, stem):
            side = _side(side, plan.stride)
            out.append((side, side))
        return tuple(out)


_PLANS: Registry[BackbonePlan] = Registry("backbone", same=lambda a, b: a == b)


def register_plan(plan: BackbonePlan) -> BackbonePlan:
    """Register a backbone's plan under its name (an error if the name is taken by another)."""
    return _PLANS.register(plan.name, plan)


def backbone_plan(name: str) -> BackbonePlan:
    """The plan of backbone ``name``; a ValueError lists the valid backbones."""
    return _PLANS.get(name)


def backbone_names(pattern: str = "*") -> list[str]:
    """Backbone names matching the shell-style ``pattern`` (e.g. ``"resnet*"``), sorted."""
    return _PLANS.names(pattern)


def num_stages(backbone: str) -> int:
    """How many stages (one attention choice each) ``backbone`` has: ResNets 4, MobileNetV2 7."""
    return backbone_plan(backbone).num_stages


def stage_plans(backbone: str, width: float = 1.0, stem: str = "imagenet") -> tuple[StagePlan, ...]:
    """The stages of ``backbone`` at ``width`` with ``stem``."""
    return backbone_plan(backbone).stages(width, stem)


def feature_maps(backbone: str, stem: str, width: float, resolution: int) -> tuple[tuple[int, int], ...]:
    """The (H, W) each stage's attention sees (:meth:`BackbonePlan.feature_maps`)."""
    if stem not in STEMS:
        raise ValueError(f"stem: must be one of {', '.join(STEMS)}, got {stem!r}")
    return backbone_plan(backbone).feature_maps(width, stem, resolution)


# ----------------------------------------------------------------------------- ResNet

#: the planes of the four stages at width 1.0
RESNET_BASE_PLANES = (64, 128, 256, 512)
#: name -> (block: "basic" (expansion 1) or "bottleneck" (expansion 4), blocks per stage)
RESNET_LAYOUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}


def scaled(channels: int, width: float) -> int:
    """A ResNet's channel count at ``width``: rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _resnet(name: str, block: str, layers: tuple[int, ...]) -> BackbonePlan:
    def stages(width: float, stem: str = "imagenet") -> tuple[StagePlan, ...]:
        return tuple(
            StagePlan(channels=scaled(p, width) * _EXPANSION[block], planes=scaled(p, width), blocks=n, stride=1 if i == 0 else 2)
            for i, (p, n) in enumerate(zip(RESNET_BASE_PLANES, layers))
        )

    blocks = "basic blocks" if block == "basic" else "bottlenecks"
    description = f"ResNet with {blocks}, stages of {'-'.join(map(str, layers))} blocks"
    return BackbonePlan(name, stages, {"imagenet": (2, 2), "lowres": ()}, description)


for _name, (_block, _layers) in RESNET_LAYOUTS.items():
    register_plan(_resnet(_name, _block, _layers))


# ----------------------------------------------------------------------------- MobileNetV2

#: expansion t, output channels c, blocks n, first stride s (Sandler et al., Table 2)
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going 10% below it
    (torchvision / the TF MobileNet reference)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _mobilenetv2_stages(width: float, stem: str = "imagenet") -> tuple[StagePlan, ...]:
    return tuple(StagePlan(channels=make_divisible(c * width), planes=make_divisible(c * width), blocks=n, stride=s)
                 for t, c, n, s in MOBILENETV2_SETTINGS)


register_plan(BackbonePlan("mobilenetv2", _mobilenetv2_stages, {"imagenet": (2,), "lowres": ()},
                           "MobileNetV2, one stage per row of its inverted-residual table"))
