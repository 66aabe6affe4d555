"""``build_model``: an ArchSpec (or its JSON dict) -> an ``nn.Module`` with ``stage_info``."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from study.config import ArchSpec
from study.models._registry import get_backbone
from study.models._stages import as_arch, describe_stages

__all__ = ["build_model", "released_arch"]


def build_model(arch: ArchSpec | Mapping[str, Any]) -> nn.Module:
    """Build the backbone ``arch`` describes, with one attention choice per stage.

    ``arch`` is an :class:`study.config.ArchSpec` or its JSON dict form, e.g.
    ``{"backbone": "resnet50", "stages": [{"kind": "eca", "k": 3}, {"kind": "eca", "gamma": 2,
    "b": 1}, {"kind": "se", "r": 16}, {"kind": "none"}]}``; stage entries must number exactly
    :func:`num_stages` of the backbone. The model carries ``model.stage_info`` (a tuple of
    :class:`StageInfo`, with each stage's C and ECA's resolved k) and ``model.arch``; every
    backbone exposes ``model.stem``, ``model.stages`` (an ``nn.Sequential`` of stages, each
    an ``nn.Sequential`` of blocks whose ``attention`` attribute is the block's attention
    module) and ``model.forward_features(x)``.
    Invalid input raises a ``ValueError`` (:class:`study.config.ConfigError`) naming it.
    """
    arch = as_arch(arch)
    stage_info = describe_stages(arch)
    model = get_backbone(arch.backbone).build(arch, stage_info)
    model.stage_info = stage_info
    model.arch = arch
    return model


def released_arch(backbone: str, **kwargs: Any) -> ArchSpec:
    """ECA with the authors' released per-stage k (:func:`study.attention.released_k`) in
    every stage of ``backbone``; ``kwargs`` are further :class:`ArchSpec` fields (stem, width,
    num_classes). The k are explicit, so they are used as they are at any width."""
    from study.attention import released_k
    from study.config import AttentionSpec

    get_backbone(backbone)
    return ArchSpec(backbone=backbone, stages=tuple(AttentionSpec.of("eca", k=k) for k in released_k(backbone)), **kwargs)
