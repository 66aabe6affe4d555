"""The backbone registry: names -> (per-stage plan, builder), with wildcard listing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from study.config import ArchSpec
    from study.models._stages import StageInfo

__all__ = ["StagePlan", "Backbone", "register_backbone", "list_backbones", "get_backbone", "num_stages", "STEMS"]

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


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: ``plan(width, stem)`` gives its stages without building
    anything; ``build(arch, stage_info)`` builds it with one attention per stage."""

    name: str
    plan: Callable[[float, str], tuple[StagePlan, ...]]
    build: Callable[[ArchSpec, tuple[StageInfo, ...]], nn.Module]
    description: str = ""

    @property
    def num_stages(self) -> int:
        return len(self.plan(1.0, "imagenet"))


_BACKBONES: Registry[Backbone] = Registry("backbone", same=lambda a, b: a == b)


def register_backbone(name: str, *, plan: Callable[[float, str], tuple[StagePlan, ...]],
                      build: Callable[[ArchSpec, tuple[StageInfo, ...]], nn.Module], description: str = "") -> Backbone:
    """Register a backbone under ``name`` (an error if the name is taken by another one)."""
    return _BACKBONES.register(name, Backbone(name, plan, build, description))


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the shell-style ``pattern`` (e.g. ``"resnet*"``)."""
    return _BACKBONES.names(pattern)


def get_backbone(name: str) -> Backbone:
    return _BACKBONES.get(name)


def num_stages(backbone: str) -> int:
    """How many stages (one attention choice each) ``backbone`` has: ResNets 4, MobileNetV2 7."""
    return get_backbone(backbone).num_stages
