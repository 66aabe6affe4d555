"""``se_ratio``: SE in every stage with a per-stage reduction ratio r.

Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, Sec. 3.2
and the r ablation of its Table 10) in every stage, the reduction ratio r among the ones SE's
declaration searches ({2, 4, 8, 16, 32}) chosen independently per stage (``r_s0``, ``r_s1``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces._context import SpaceContext
from search_spaces._registry import Budget, register_space
from study.catalogue import get_kind, num_stages
from study.config import AttentionSpec

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define"]

#: the width the study trains at unless it fixes one
DEFAULT_WIDTH = 0.5


@register_space(
    "se_ratio",
    description="SE in every stage with a per-stage reduction ratio r in {2,4,8,16,32}",
    budget=Budget(trials=12, epochs=3),
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """SE with a per-stage reduction ratio."""
    ratios = get_kind("se").params["r"].choices
    stages = [AttentionSpec.of("se", r=trial.suggest_categorical(f"r_s{i}", ratios)) for i in range(num_stages(ctx.backbone))]
    return ctx.config(stages, width=DEFAULT_WIDTH)
