"""The backbone registry: names -> (the stage plan in :mod:`study.catalogue`, a builder), with
wildcard listing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.catalogue import STEMS, StagePlan, backbone_plan
from study.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from study.config import ArchSpec
    from study.models._stages import StageInfo

__all__ = ["StagePlan", "Backbone", "register_backbone", "list_backbones", "get_backbone", "num_stages", "STEMS"]


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: ``plan(width, stem)`` gives its stages without building
    anything (its :class:`study.catalogue.BackbonePlan`); ``build(arch, stage_info)`` builds
    it with one attention per stage."""

    name: str
    plan: Callable[[float, str], tuple[StagePlan, ...]]
    build: Callable[[ArchSpec, tuple[StageInfo, ...]], nn.Module]
    description: str = ""

    @property
    def num_stages(self) -> int:
        return len(self.plan(1.0, "imagenet"))


_BACKBONES: Registry[Backbone] = Registry("backbone", same=lambda a, b: a == b)


def register_backbone(name: str, *, build: Callable[[ArchSpec, tuple[StageInfo, ...]], nn.Module]) -> Backbone:
    """Register the builder of backbone ``name``, whose plan :mod:`study.catalogue` holds (an
    error if the name has no plan there, or is taken by another builder)."""
    plan = backbone_plan(name)
    return _BACKBONES.register(name, Backbone(name, plan.stages, build, plan.description))


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the shell-style ``pattern`` (e.g. ``"resnet*"``)."""
    return _BACKBONES.names(pattern)


def get_backbone(name: str) -> Backbone:
    return _BACKBONES.get(name)


def num_stages(backbone: str) -> int:
    """How many stages (one attention choice each) ``backbone`` has: ResNets 4, MobileNetV2 7."""
    return get_backbone(backbone).num_stages
