"""``attention_nas``: which attention, with which parameters, in which stage?

Per stage the attention kind among none, SE (Hu et al., CVPR 2018), SE-Var2 and SE-Var3
(the ECA paper's variants without dimensionality reduction, Wang et al., CVPR 2020,
Sec. 3.2.1), ECA-NS and ECA (ECA-Net), CBAM (Woo et al., ECCV 2018) and Coordinate
Attention (Hou et al., CVPR 2021), each with its own parameters, sampled only where the
stage uses that kind: SE and CBAM reduction r in {2, 4, 8, 16, 32}; ECA and ECA-NS either
a fixed odd k or psi(C; gamma, b) (ECA-Net eq. 12); Coordinate Attention reduction r in
{8, 16, 32}. Parameter names carry the stage (``kind_s2``, ``se_r_s2``, ...).
"""

from __future__ import annotations

from typing import Any

from search_spaces._eca_kmap import B_RANGE, GAMMA_RANGE, K_CHOICES
from search_spaces._registry import Budget, make_config, register_space
from study.config import AttentionSpec

__all__ = ["define", "KINDS", "R_CHOICES", "COORD_R_CHOICES"]

KINDS = ("none", "se", "se_var2", "se_var3", "eca_ns", "eca", "cbam", "coord")
R_CHOICES = (2, 4, 8, 16, 32)
COORD_R_CHOICES = (8, 16, 32)


def stage_attention(trial: Any, i: int, kind: str) -> AttentionSpec:
    """Sample stage ``i``'s parameters for ``kind`` (conditional on the kind)."""
    if kind in ("se", "cbam"):
        return AttentionSpec.of(kind, r=trial.suggest_categorical(f"{kind}_r_s{i}", R_CHOICES))
    if kind == "coord":
        return AttentionSpec.of(kind, r=trial.suggest_categorical(f"coord_r_s{i}", COORD_R_CHOICES))
    if kind in ("eca", "eca_ns"):
        if trial.suggest_categorical(f"{kind}_mode_s{i}", ("fixed", "psi")) == "fixed":
            return AttentionSpec.of(kind, k=trial.suggest_categorical(f"{kind}_k_s{i}", K_CHOICES))
        return AttentionSpec.of(
            kind,
            gamma=trial.suggest_float(f"{kind}_gamma_s{i}", *GAMMA_RANGE),
            b=trial.suggest_float(f"{kind}_b_s{i}", *B_RANGE),
        )
    return AttentionSpec(kind)


@register_space(
    "attention_nas",
    description="per stage: none, se, se_var2, se_var3, eca_ns, eca, cbam or coord, each with its own parameters (r, k or gamma/b)",
    budget=Budget(trials=16, epochs=3),
)
def define(trial: Any, *, backbone: str, width: float | None = None, **settings: Any):
    """Per-stage attention kind and its parameters."""
    from study.models import num_stages

    stages = [stage_attention(trial, i, trial.suggest_categorical(f"kind_s{i}", KINDS)) for i in range(num_stages(backbone))]
    return make_config(stages, backbone=backbone, width=0.5 if width is None else width, **settings)
