"""``build_model``: an ArchSpec (or its JSON dict) -> an ``nn.Module`` with ``stage_info``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from study.catalogue import released_k
from study.config import ArchSpec, AttentionSpec
from study.models._registry import get_backbone
from study.models._stages import as_arch, describe_stages

__all__ = ["build_model", "released_arch"]


def build_model(arch: ArchSpec | Mapping[str, Any], resolution: int | None = None) -> nn.Module:
    """Build the backbone ``arch`` describes, with one attention choice per stage.

    ``resolution``: the square input size in px the model is built for (a TrialConfig's
    ``proxy.resolution``). Given it, parameters that must fit a stage's feature map and are
    left at their default resolve from that map (BAM's dilation: 4, or the largest below
    the map's side; Gather-Excite's global gather ``size``: the map's side), as the
    reductions resolve from the stage's C, and are recorded in ``stage_info``; explicit
    values are checked against the maps (:func:`describe_stages`). Without it those
    defaults are the papers' (BAM: 4, checked at forward time) and a global parametric
    Gather-Excite needs an explicit ``size``.

    ``arch`` is an :class:`study.config.ArchSpec` or its JSON dict form, e.g.
    ``{"backbone": "resnet50", "stages": [{"kind": "eca", "k": 3}, {"kind": "eca", "gamma": 2,
    "b": 1}, {"kind": "se", "r": 16}, {"kind": "none"}]}``; stage entries must number exactly
    :func:`num_stages` of the backbone. The model carries ``model.stage_info`` (a tuple of
    :class:`StageInfo`, with each stage's C and resolved parameters such as ECA's k),
    ``model.arch`` and ``model.resolution`` (None when not given); every
    backbone exposes ``model.stem``, ``model.stages`` (an ``nn.Sequential`` of stages, each
    an ``nn.Sequential`` of blocks whose ``attention`` attribute is the block's attention
    module) and ``model.forward_features(x)``.
    Invalid input raises a ``ValueError`` (:class:`study.config.ConfigError`) naming it.
    """
    arch = as_arch(arch)
    stage_info = describe_stages(arch, resolution)
    model = get_backbone(arch.backbone).build(arch, stage_info)
    model.stage_info = stage_info
    model.arch = arch
    model.resolution = resolution
    return model


def released_arch(backbone: str, **kwargs: Any) -> ArchSpec:
    """ECA with the authors' released per-stage k (:func:`study.attention.released_k`) in
    every stage of ``backbone``; ``kwargs`` are further :class:`ArchSpec` fields (stem, width,
    num_classes). The k are explicit, so they are used as they are at any width."""
    get_backbone(backbone)
    return ArchSpec(backbone=backbone, stages=tuple(AttentionSpec.of("eca", k=k) for k in released_k(backbone)), **kwargs)
