"""The facts the layers share, without torch: the attention kinds' declarations, the ECA
paper's psi and the authors' released k, and the backbones' stage plans.

    >>> from study.catalogue import num_stages, psi, psi_kinds, released_k, stage_plans
    >>> num_stages("resnet18"), psi(256), released_k("resnet50")
    (4, 5, (3, 5, 5, 7))
    >>> [p.channels for p in stage_plans("resnet50")]
    [256, 512, 1024, 2048]

Configs (:mod:`study.config`), spaces, runners and analysis import these at the top of a
module; :mod:`study.attention` and :mod:`study.models` (which import torch) build on them:
an attention kind is declared in its own module (:class:`AttentionKind`, read here from the
source) and a backbone's layout is its plan here (:class:`BackbonePlan`).
"""

from study.catalogue._backbones import (
    MOBILENETV2_SETTINGS,
    RESNET_BASE_PLANES,
    RESNET_LAYOUTS,
    STEMS,
    BackbonePlan,
    StagePlan,
    backbone_names,
    backbone_plan,
    feature_maps,
    make_divisible,
    num_stages,
    register_plan,
    scaled,
    stage_plans,
)
from study.catalogue._kinds import (
    ATTENTION_PARAMS,
    LIMITS,
    PSI_MODES,
    PSI_PARAMS,
    REDUCTIONS,
    VOCABULARY,
    AttentionKind,
    Param,
    declare,
    get_kind,
    kind_modules,
    kind_names,
    psi_kinds,
    searched_kinds,
)
from study.catalogue._psi import B_RANGE, GAMMA_RANGE, K_CHOICES, PSI_RULES, RELEASED_K, psi, released_k

__all__ = [
    "AttentionKind", "Param", "VOCABULARY", "REDUCTIONS", "LIMITS", "ATTENTION_PARAMS",
    "kind_names", "get_kind", "psi_kinds", "searched_kinds", "kind_modules", "declare",
    "PSI_PARAMS", "PSI_MODES", "psi", "PSI_RULES", "RELEASED_K", "released_k", "K_CHOICES", "GAMMA_RANGE", "B_RANGE",
    "STEMS", "StagePlan", "BackbonePlan", "RESNET_LAYOUTS", "RESNET_BASE_PLANES", "MOBILENETV2_SETTINGS",
    "register_plan", "backbone_plan", "backbone_names", "num_stages", "stage_plans", "feature_maps",
    "scaled", "make_divisible",
]
