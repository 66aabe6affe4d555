"""Shared by the attention benchmarks: one attention kind in every stage, with the
parameters that depend on the feature map chosen to fit each stage at the benchmark's
resolution."""

from __future__ import annotations

from study.config import ArchSpec, AttentionSpec
from study.models import stage_sizes


def fitted_spec(kind: str, side: int) -> AttentionSpec:
    """``kind`` with its defaults, except what must fit a side x side map: BAM's dilation
    (default 4, must stay below the side; BAM cannot run on a 1x1 map) and the global
    parametric Gather-Excite gather, whose kernel covers the map."""
    if kind in ("ge_theta", "ge_theta_plus"):
        return AttentionSpec.of(kind, size=side)
    if kind == "bam" and side <= 4:
        return AttentionSpec.of(kind, dilation=max(1, side - 1))
    return AttentionSpec(kind)


def uniform_arch(backbone: str, kind: str, resolution: int, **kwargs) -> ArchSpec:
    """``kind`` in every stage of ``backbone`` (ArchSpec fields in ``kwargs``), fitted to
    the stages' maps at ``resolution`` px. A ValueError when the kind cannot run there."""
    base = ArchSpec.uniform(backbone, "none", **kwargs)
    sides = [max(hw) for hw in stage_sizes(base, resolution)]
    if kind == "bam" and min(sides) == 1:
        raise ValueError(f"bam cannot run on {backbone}'s 1x1 maps at {resolution} px")
    return base.with_stages([fitted_spec(kind, s) for s in sides])
