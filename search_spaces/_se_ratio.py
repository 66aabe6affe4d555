"""``se_ratio``: SE in every stage with a per-stage reduction ratio r.

Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, Sec. 3.2
and the r ablation of its Table 10) in every stage, the reduction ratio r in
{2, 4, 8, 16, 32} chosen independently per stage (``r_s0``, ``r_s1``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces._attention_nas import R_CHOICES
from search_spaces._registry import Budget, make_config, register_space
from study.config import AttentionSpec

if TYPE_CHECKING:
    import optuna

__all__ = ["define"]


@register_space(
    "se_ratio",
    description="SE in every stage with a per-stage reduction ratio r in {2,4,8,16,32}",
    budget=Budget(trials=12, epochs=3),
)
def define(trial: optuna.Trial, *, backbone: str, width: float | None = None, **settings: Any):
    """SE with a per-stage reduction ratio."""
    from study.models import num_stages

    stages = [AttentionSpec.of("se", r=trial.suggest_categorical(f"r_s{i}", R_CHOICES)) for i in range(num_stages(backbone))]
    return make_config(stages, backbone=backbone, width=0.5 if width is None else width, **settings)
