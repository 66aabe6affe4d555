"""``paper_table2``: the ECA paper's Table 2 ablation, as a grid, on a proxy.

Wang et al., "ECA-Net", CVPR 2020, Table 2 compares, in every stage of the backbone:
vanilla (no attention), SE (r=16), SE-Var1 (no parameters: sigmoid of the pooled vector),
SE-Var2 (a per-channel weight), SE-Var3 (one C x C FC layer), SE-GC1/2/3 (a group
convolution over the pooled vector with 16, C/16 and C/8 groups), ECA-NS (unshared band
matrix, k=3) and ECA (k=3). Each trial is one variant (parameter ``variant``); the grid
sampler walks all ten once. Group counts are per stage, from the stage's channel count C
(the greatest common divisor with C, so a narrow stage still gets a valid count).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from search_spaces._context import SpaceContext
from search_spaces._registry import Budget, register_space
from study.catalogue import stage_plans
from study.config import AttentionSpec
from study.validate import ConfigError

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define", "grid", "VARIANTS", "DEFAULT_WIDTH"]

VARIANTS = ("vanilla", "se", "se_var1", "se_var2", "se_var3", "se_gc1", "se_gc2", "se_gc3", "eca_ns", "eca")
DEFAULT_WIDTH = 0.5


def grid(ctx: SpaceContext) -> dict[str, list[str]]:
    return {"variant": list(VARIANTS)}


def _groups(channels: int, variant: str) -> int:
    target = {"se_gc1": 16, "se_gc2": max(1, channels // 16), "se_gc3": max(1, channels // 8)}[variant]
    return math.gcd(channels, target)


def variant_stages(variant: str, channels: list[int]) -> list[AttentionSpec]:
    """The per-stage attention of one Table 2 row for stages with ``channels``."""
    if variant == "vanilla":
        return [AttentionSpec("none")] * len(channels)
    if variant == "se":
        return [AttentionSpec.of("se", r=16)] * len(channels)
    if variant in ("se_var1", "se_var2", "se_var3"):
        return [AttentionSpec(variant)] * len(channels)
    if variant.startswith("se_gc"):
        return [AttentionSpec.of("se_gc", groups=_groups(c, variant)) for c in channels]
    if variant in ("eca_ns", "eca"):
        return [AttentionSpec.of(variant, k=3)] * len(channels)
    raise ConfigError("variant", f"must be one of {', '.join(VARIANTS)}, got {variant!r}")


@register_space(
    "paper_table2",
    description="the ECA paper's Table 2 grid: vanilla, SE, SE-Var1/2/3, SE-GC1/2/3, ECA-NS, ECA (k=3)",
    budget=Budget(trials=len(VARIANTS), epochs=3),
    sampler="grid",
    grid=grid,
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """One row of the ECA paper's Table 2."""
    variant = trial.suggest_categorical("variant", VARIANTS)
    width = DEFAULT_WIDTH if ctx.width is None else ctx.width
    channels = [plan.channels for plan in stage_plans(ctx.backbone, width, ctx.stem)]
    return ctx.config(variant_stages(variant, channels), width=width)
