"""Per-stage description of an architecture, computed without building the model: the stages'
channels and feature maps from the backbone's plan (:mod:`study.catalogue`), the attention's
parameters resolved by its kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from study import record
from study.attention import get_attention
from study.catalogue import backbone_plan
from study.config import ArchSpec, ConfigError

__all__ = ["StageInfo", "describe_stages", "as_arch", "module_params", "stage_sizes"]

_FIXED = record.STAGE_KEYS


@dataclass(frozen=True)
class StageInfo:
    """One stage of a built (or described) backbone.

    ``stage``: index from 0; ``channels``: the C its attention acts on (a bottleneck's
    output, planes x 4; a basic block's or a MobileNetV2 block's output); ``planes``: the
    blocks' inner width (MobileNetV2: the output channels); ``blocks``: blocks in the
    stage, each with its own attention module; ``kind``: the attention key; ``params``:
    its completed parameters - for ECA the resolved ``k`` (and ``gamma``, ``b``, ``rule``
    when k came from psi).
    """

    stage: int
    channels: int
    planes: int
    blocks: int
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def k(self) -> int | None:
        """ECA's resolved kernel size (None for kinds without one)."""
        return self.params.get("k")

    def to_dict(self) -> dict[str, Any]:
        """``{"stage", "channels", "planes", "blocks", "kind", **params}``."""
        return {"stage": self.stage, "channels": self.channels, "planes": self.planes, "blocks": self.blocks, "kind": self.kind,
                **self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageInfo:
        missing = [k for k in _FIXED if k not in data]
        if missing:
            raise ValueError(f"stage info: missing key {missing[0]!r}")
        return cls(**{k: data[k] for k in _FIXED}, params={k: v for k, v in data.items() if k not in _FIXED})


def as_arch(arch: ArchSpec | Mapping[str, Any]) -> ArchSpec:
    if isinstance(arch, ArchSpec):
        return arch
    if isinstance(arch, Mapping):
        return ArchSpec.from_dict(arch)
    raise ConfigError("arch", f"expected an ArchSpec or its dict form, got {type(arch).__name__}")


def describe_stages(arch: ArchSpec | Mapping[str, Any], resolution: int | None = None) -> tuple[StageInfo, ...]:
    """The per-stage C, planes, blocks, attention kind and resolved parameters of ``arch``,
    validated exactly as :func:`build_model` validates it, without building anything.

    Parameters left at their default resolve per stage: the reductions from the stage's C,
    and, given the input ``resolution`` (px, square), the parameters that must fit the
    stage's feature map (:func:`study.models.stage_sizes`): BAM's dilation, Gather-Excite's
    global ``size``. Explicit values are never changed; with a ``resolution`` they are
    checked against the map here. For kinds whose k may come from psi(C) (``eca``,
    ``eca_ns``) given by ``gamma``/``b``, C is the attended channels (``arch.psi_input ==
    "channels"``, default) or the block's ``planes`` (``"planes"``). An explicit ``k`` is
    never changed.
    """
    arch = as_arch(arch)  # its backbone, stem and stage count checked (ArchSpec)
    plans = backbone_plan(arch.backbone).stages(arch.width, arch.stem)
    maps: tuple[tuple[int, int] | None, ...] = (None,) * len(plans)
    if resolution is not None:
        maps = stage_sizes(arch, resolution)
    infos = []
    for i, (plan, spec, feature_map) in enumerate(zip(plans, arch.stages, maps)):
        try:
            cls = get_attention(spec.kind)
            psi_channels = plan.planes if cls.USES_PSI and arch.psi_input == "planes" else plan.channels
            params = cls.resolve(psi_channels, feature_map=feature_map, **spec.kwargs)
            if psi_channels != plan.channels:  # the module itself must accept the attended C too
                cls.resolve(plan.channels, k=params["k"])
        except ConfigError as exc:
            raise exc.within(f"stages[{i}]") from None
        except ValueError as exc:  # an attention module's own check
            raise ConfigError(f"stages[{i}]", str(exc)) from None
        infos.append(StageInfo(i, plan.channels, plan.planes, plan.blocks, spec.kind, params))
    return tuple(infos)


def module_params(info: StageInfo) -> dict[str, Any]:
    """The keyword parameters that build ``info``'s attention module: for psi-capable kinds
    the already resolved ``k`` only, otherwise the completed parameters."""
    cls = get_attention(info.kind)
    if cls.USES_PSI:
        return {"k": info.params["k"]}
    return dict(info.params)


def stage_sizes(arch: ArchSpec | Mapping[str, Any], resolution: int) -> tuple[tuple[int, int], ...]:
    """The (H, W) of the feature map every attention of each stage sees, for square
    ``resolution`` px input: e.g. ``((8, 8), (4, 4), (2, 2), (1, 1))`` for a ResNet with the
    ImageNet stem at 32 px. Arithmetic on the backbone's plan (its stem's and stages' strides,
    :meth:`study.catalogue.BackbonePlan.feature_maps`), whatever the stages ask for.
    :func:`describe_stages` and :func:`build_model` given a resolution fit the attention
    parameters that depend on the map (BAM's dilation, Gather-Excite's global ``size``) to
    it, and check explicit ones (also Gather-Excite's extent) against it."""
    arch = as_arch(arch)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError("resolution", f"must be an integer >= 1, got {resolution!r}")
    return backbone_plan(arch.backbone).feature_maps(arch.width, arch.stem, resolution)
