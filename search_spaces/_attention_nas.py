"""``attention_nas``: which attention, with which parameters, in which stage?

Per stage an attention kind, and then that kind's own parameters, sampled only where the
stage uses it, as the kind declares them (:class:`study.catalogue.AttentionKind`, in the
kind's own module): each searched parameter over its ``choices`` (those within its limit on
the stage: a reduction at most the stage's C, or half of it; a dilation or extent below the
side of the stage's feature map at the study's resolution) or its float ``span``; a kind
with ``modes`` first picks one (ECA: a fixed odd k or psi(C; gamma, b), ECA-Net eq. 12).
Parameters that resolve from the feature map and were not sampled are written into the
config (a global Gather-Excite gather's ``size``: the map's side), so it builds at any
resolution. A kind that needs a larger map than a stage has (BAM: more than 1x1) is not
offered there.

The kinds a study chooses among: by default every kind its declaration marks ``searched``
(all of them but ``se_var1``, the same function as the global ``ge_theta_minus``, and
``se_gc``, whose groups must divide C); ``kinds`` (the study's ``--kinds``) restricts them
to any registered kinds. A new kind module is searched here with no other edit.

Parameter names carry the stage (``kind_s2``, ``se_r_s2``, ``eca_mode_s2``, ...). The choice
lists depend only on the study settings (backbone, stem, width, resolution), so they are
fixed within a study.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from search_spaces._context import SpaceContext
from search_spaces._registry import Budget, SpaceOption, register_space
from study.catalogue import feature_maps, get_kind, kind_names, searched_kinds, stage_plans
from study.config import AttentionSpec
from study.validate import ConfigError

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define", "check_kinds", "KINDS_OPTION", "suggest_attention", "DEFAULT_WIDTH"]

#: the width the study trains at unless it fixes one
DEFAULT_WIDTH = 0.5


def check_kinds(kinds: Sequence[str] | str | None) -> tuple[str, ...]:
    """The kinds a study may choose: ``None`` means every searched kind
    (:func:`study.catalogue.searched_kinds`); otherwise declared kind names (a comma-separated
    string is accepted), in the order given, duplicates dropped."""
    if kinds is None:
        return searched_kinds()
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    out = tuple(dict.fromkeys(kinds))
    if not out:
        raise ConfigError("kinds", "expected at least one attention kind")
    valid = kind_names()
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
    help="the attention kinds a study may choose (default: every kind its declaration marks searched)",
    elsewhere="only the attention_nas space chooses among attention kinds",
)


def suggest_attention(trial: optuna.Trial, stage: int, kind: str, channels: int, side: int) -> AttentionSpec:
    """Sample stage ``stage``'s parameters of ``kind`` as its declaration says, for a stage of
    ``channels`` and a square feature map of ``side`` (see the module doc)."""
    declared = get_kind(kind)
    names = [name for name, p in declared.params.items() if p.searched]
    if declared.modes:
        names = list(declared.modes[trial.suggest_categorical(f"{kind}_mode_s{stage}", tuple(declared.modes))])
    params: dict[str, Any] = {}
    for name in names:
        p, label = declared.params[name], f"{kind}_{name}_s{stage}"
        params[name] = trial.suggest_categorical(label, p.fitting(channels, side)) if p.choices else trial.suggest_float(label, *p.span)
    if declared.map_params:  # what the map resolves, written down
        from study.attention import resolve_attention  # the kind's own resolution: torch, when a trial is drawn

        _, resolved = resolve_attention(kind, channels, feature_map=(side, side), **params)
        params.update({n: resolved[n] for n in declared.map_params if n not in params and resolved.get(n) is not None})
    return AttentionSpec.of(kind, **params)


@register_space(
    "attention_nas",
    description="per stage an attention kind (every kind declared searched: none, se, eca, cbam, bam, gc, ge_theta, a2, gsop, ...) "
                "and its own parameters as the kind declares them (r, k or gamma/b, dilation, extent, dim); --kinds restricts the set",
    budget=Budget(trials=16, epochs=3),
    options=(KINDS_OPTION,),
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """Per-stage attention kind and its parameters (the study's ``--kinds``, its option
    ``kinds``: the kinds it may choose)."""
    choices = check_kinds(ctx.options.get("kinds"))
    width = DEFAULT_WIDTH if ctx.width is None else ctx.width
    plans = stage_plans(ctx.backbone, width, ctx.stem)
    sides = [max(hw) for hw in feature_maps(ctx.backbone, ctx.stem, width, ctx.proxy.resolution)]
    stages = []
    for i, (plan, side) in enumerate(zip(plans, sides)):
        stage_choices = tuple(k for k in choices if side >= get_kind(k).min_side)
        if not stage_choices:
            raise ValueError(
                f"kinds: none of {', '.join(choices)} fits stage {i} (a {side}x{side} feature map at {ctx.proxy.resolution} px); "
                "add a kind that runs anywhere, e.g. none"
            )
        stages.append(suggest_attention(trial, i, trial.suggest_categorical(f"kind_s{i}", stage_choices), plan.channels, side))
    return ctx.config(stages, width=width)
