"""``attention_nas``: which attention, with which parameters, in which stage?

Per stage the attention kind among none, SE (Hu et al., CVPR 2018), SE-Var2 and SE-Var3
(the ECA paper's variants without dimensionality reduction, Wang et al., CVPR 2020,
Sec. 3.2.1), ECA-NS and ECA (ECA-Net), CBAM (Woo et al., ECCV 2018), Coordinate
Attention (Hou et al., CVPR 2021), and the rest of the ECA paper's comparison: BAM (Park et
al., BMVC 2018), GCNet's global context block (Cao et al., ICCVW 2019), Gather-Excite
theta-minus / theta / theta-plus (Hu et al., NeurIPS 2018), double attention A2 (Chen et
al., NeurIPS 2018) and GSoP (Gao et al., CVPR 2019). Each kind's own parameters are sampled
only where the stage uses that kind:

- SE and CBAM: reduction r in {2, 4, 8, 16, 32}; Coordinate Attention: r in {8, 16, 32};
- ECA and ECA-NS: a fixed odd k or psi(C; gamma, b) (ECA-Net eq. 12);
- BAM, GE-theta-plus: r in {2, 4, 8, 16, 32}, GC: r in the same set, A2: r in {2, 4, 8},
  GSoP: dim in {32, 64, 128} - each only where it fits the stage's C (r <= C, GC r <= C/2,
  dim <= C);
- BAM's dilation in {1, 2, 4} and Gather-Excite's extent in {global, 2, 4, 8}, only where
  they fit the stage's feature map at the study's resolution (dilation, extent < the map's
  side); a global parametric GE gather covers the stage's map (its ``size`` is set from it).

Parameter names carry the stage (``kind_s2``, ``se_r_s2``, ...). The choice lists depend only
on the study settings (backbone, stem, width, resolution), so they are fixed within a study.

``kinds`` restricts the kinds a study may choose (any registered kind; those without a row
above take their defaults), e.g. ``define(trial, ..., kinds=("none", "eca", "se"))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from search_spaces._eca_kmap import B_RANGE, GAMMA_RANGE, K_CHOICES
from search_spaces._registry import Budget, SpaceOption, make_config, register_space
from study.config import AttentionSpec
from study.validate import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["define", "check_kinds", "KINDS", "KINDS_OPTION", "R_CHOICES", "COORD_R_CHOICES", "A2_R_CHOICES", "GSOP_DIM_CHOICES", "DILATION_CHOICES", "EXTENT_CHOICES"]

KINDS = (
    "none", "se", "se_var2", "se_var3", "eca_ns", "eca", "cbam", "coord",
    "bam", "gc", "ge_theta_minus", "ge_theta", "ge_theta_plus", "a2", "gsop",
)
R_CHOICES = (2, 4, 8, 16, 32)
COORD_R_CHOICES = (8, 16, 32)
A2_R_CHOICES = (2, 4, 8)
GSOP_DIM_CHOICES = (32, 64, 128)
DILATION_CHOICES = (1, 2, 4)
#: Gather-Excite extents; 0 is the global extent
EXTENT_CHOICES = (0, 2, 4, 8)


def check_kinds(kinds: Sequence[str] | str | None) -> tuple[str, ...]:
    """The kinds a study may choose: ``None`` means :data:`KINDS`; otherwise registered kind
    names (a comma-separated string is accepted), in the order given, duplicates dropped."""
    from study.attention import list_attention

    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    out = tuple(dict.fromkeys(kinds))
    if not out:
        raise ConfigError("kinds", "expected at least one attention kind")
    valid = list_attention()
    for k in out:
        if k not in valid:
            raise ConfigError("kinds", f"unknown attention kind {k!r} (valid kinds: {', '.join(valid)})")
    return out


def _kind_list(text: str) -> list[str]:
    """``--kinds`` text, comma-separated, as its items (checked by :func:`check_kinds` when the space runs)."""
    return [k.strip() for k in text.split(",") if k.strip()]


#: ``--kinds KIND[,KIND...]``: the study's ``options["kinds"]``
KINDS_OPTION = SpaceOption(
    key="kinds", flag="--kinds", metavar="KIND[,KIND...]", parse=_kind_list,
    help="the attention kinds a study may choose (default: all of its kinds)",
    elsewhere="only the attention_nas space chooses among attention kinds",
)


def _fitting(choices: Sequence[int], limit: int) -> tuple[int, ...]:
    """The choices not above ``limit`` (just ``limit``, at least 1, when none is)."""
    fit = tuple(c for c in choices if c <= limit)
    return fit or (max(1, limit),)


def stage_attention(trial: optuna.Trial, i: int, kind: str, channels: int | None = None, side: int | None = None) -> AttentionSpec:
    """Sample stage ``i``'s parameters for ``kind`` (conditional on the kind); ``channels``
    and ``side`` (the stage's C and feature-map side) limit the choices that must fit them."""
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
    if kind == "bam":
        return AttentionSpec.of(
            kind,
            r=trial.suggest_categorical(f"bam_r_s{i}", _fitting(R_CHOICES, channels)),
            dilation=trial.suggest_categorical(f"bam_dilation_s{i}", _fitting(DILATION_CHOICES, side - 1)),
        )
    if kind == "gc":
        return AttentionSpec.of(kind, r=trial.suggest_categorical(f"gc_r_s{i}", _fitting(R_CHOICES, channels // 2)))
    if kind == "a2":
        return AttentionSpec.of(kind, r=trial.suggest_categorical(f"a2_r_s{i}", _fitting(A2_R_CHOICES, channels)))
    if kind == "gsop":
        return AttentionSpec.of(kind, dim=trial.suggest_categorical(f"gsop_dim_s{i}", _fitting(GSOP_DIM_CHOICES, channels)))
    if kind in ("ge_theta_minus", "ge_theta", "ge_theta_plus"):
        extents = tuple(e for e in EXTENT_CHOICES if e < side)  # 0 (global) always fits
        params: dict[str, Any] = {"extent": trial.suggest_categorical(f"{kind}_extent_s{i}", extents)}
        if kind != "ge_theta_minus" and params["extent"] == 0:
            params["size"] = side
        if kind == "ge_theta_plus":
            params["r"] = trial.suggest_categorical(f"{kind}_r_s{i}", _fitting(R_CHOICES, channels))
        return AttentionSpec.of(kind, **params)
    return AttentionSpec(kind)


@register_space(
    "attention_nas",
    description=(
        "per stage: none, se, se_var2, se_var3, eca_ns, eca, cbam, coord, bam, gc, ge_theta_minus/ge_theta/ge_theta_plus, a2 or gsop, "
        "each with its own parameters (r, k or gamma/b, dilation, extent, dim); kinds= restricts the set"
    ),
    budget=Budget(trials=16, epochs=3),
    options=(KINDS_OPTION,),
)
def define(trial: optuna.Trial, *, backbone: str, width: float | None = None, kinds: Sequence[str] | str | None = None,
           options: dict[str, Any] | None = None, **settings: Any):
    """Per-stage attention kind and its parameters (``kinds``, or the study's ``--kinds``
    in ``options``: the kinds a study may choose)."""
    from study.models import describe_stages, num_stages, stage_sizes

    choices = check_kinds(kinds if kinds is not None else (options or {}).get("kinds"))
    w = 0.5 if width is None else width
    plain = make_config([AttentionSpec("none")] * num_stages(backbone), backbone=backbone, width=w, **settings)
    channels = [s.channels for s in describe_stages(plain.arch)]
    sides = [max(hw) for hw in stage_sizes(plain.arch, plain.proxy.resolution)]
    stages = []
    for i, (c, side) in enumerate(zip(channels, sides)):
        # BAM's dilated convolutions cannot fit a 1x1 map; every other kind runs anywhere
        stage_choices = tuple(k for k in choices if not (k == "bam" and side == 1))
        if not stage_choices:
            raise ValueError(
                f"kinds: none of {', '.join(choices)} fits stage {i} (a 1x1 feature map at {plain.proxy.resolution} px); add a kind that runs anywhere, e.g. none"
            )
        stages.append(stage_attention(trial, i, trial.suggest_categorical(f"kind_s{i}", stage_choices), c, side))
    return make_config(stages, backbone=backbone, width=w, **settings)
