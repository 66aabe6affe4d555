"""``kmap_confirm``: the paper's psi against other mappings, round after round of paired seeds.

A confirmation's trial is one *arm* (a mapping k = m(C), or no attention) at one of the
design's *widths*: ECA in every stage of the study's backbone with the k the arm gives each
stage's channels C at that width, fixed (so two arms that give the same k everywhere train the
same network). The arms and widths are the study's options (``options["arms"]``: arm ->
spec, ``options["widths"]``); a spec is one of

- ``{"k": [k0, k1, ...]}``: one k per stage (k = 3 everywhere, the authors' released k);
- ``{"psi": {"gamma": G, "b": B, "rule": "paper" | "timm"}}``: psi(C; G, B) (Wang et al.,
  "ECA-Net", CVPR 2020, eq. 12; timm's rule floors it at 3);
- ``{"per_C": {"C": k, ...}, "else": PSI}``: a k per channel count (the k* an exploration
  found), psi (``else``) at a C it does not name;
- ``{"none": true}``: no attention.

Its trials are never sampled: the study runs in rounds (:func:`runners.run_study`'s
``next_round``), round r training every arm still undecided and the paper's psi at every
width from the round's one seed (the confirm design's paired seeds: replicate r), so the arms
of a round differ only in their attention (common random numbers). Which arms a round trains,
and when the study stops, is the decision rule the study stores before its first run
(``options["rule"]``; :mod:`analysis.confirm`); ``python -m study.run --space kmap_confirm
--from RUN`` makes the arms from the k-vs-C study RUN's answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from search_spaces._context import SpaceContext
from search_spaces._registry import Budget, SpaceOption, register_space
from study.catalogue import num_stages, psi, released_k, stage_plans
from study.config import AttentionSpec

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define", "arm_ks", "default_arms", "identical_arms", "SOURCE", "DELTA", "BUDGET", "CONFIRM_WIDTHS", "REFERENCE",
           "DEFAULT_DELTA"]

#: the equivalence margin when the study states none (top-1 points per network)
DEFAULT_DELTA = 0.5

#: the arm every other is compared with: the paper's psi (gamma=2, b=1)
REFERENCE = "paper_psi"
#: the widths a confirmation trains unless its options say otherwise: on a ResNet they put
#: psi's break from k=3 to k=5 (at C=128) in the last, the third and the second stage
CONFIRM_WIDTHS = (0.25, 0.5, 1.0)
PAPER = {"psi": {"gamma": 2.0, "b": 1.0, "rule": "paper"}}

#: ``--from RUN``: the study to confirm. Reading it (its analysis's fitted mapping and k* per
#: C, and the backbone, proxy and recipe the confirmation takes from it) is a workflow of the
#: study CLI, which alone may use both runners and analysis: its preparation of this space's options.
SOURCE = SpaceOption(
    key="source", flag="--from", metavar="RUN",
    help="the k-vs-C study (run folder) whose answer to confirm: its fitted psi and k* per C become arms beside k=3, 5, 7, the "
         "released k and timm's rule",
    required="kmap_confirm confirms the answer of a k-vs-C study; give that study with --from runs/NAME",
    elsewhere="only the kmap_confirm space confirms a study (python -m study.run --space kmap_confirm --from runs/NAME)",
    on_resume="a resumed confirmation keeps the study it checks; drop --from",
)


def _positive(text: str) -> float:
    v = float(text)
    if not 0 < v <= 100:
        raise ValueError(f"expected a margin of top-1 points in (0, 100], got {text}")
    return v


#: ``--delta``: the equivalence margin, stated before the first run
DELTA = SpaceOption(
    key="delta", flag="--delta", metavar="POINTS", parse=_positive,
    help="the equivalence margin in top-1 points per network, stated before the first run: an arm within +-delta of the "
         "paper's psi is called equivalent (default 0.5)",
    on_resume="a resumed confirmation keeps the margin it stated before its first run; drop --delta",
)


def _runs(text: str) -> int:
    v = int(text)
    if v < 1:
        raise ValueError(f"expected a number of runs >= 1, got {text}")
    return v


#: ``--budget``: the most runs (trainings) the confirmation may spend, stated before the first run
BUDGET = SpaceOption(
    key="budget", flag="--budget", metavar="RUNS", parse=_runs,
    help="the most runs (trainings) the sequential confirmation may spend (default: the plan's, the 95th percentile of the runs "
         "an every-arm-equal truth takes to a decision)",
    on_resume="a resumed confirmation keeps the budget it stated before its first run; drop --budget",
)


def _k_at(spec: Mapping[str, Any], C: int) -> int:
    if "psi" in spec:
        p = spec["psi"]
        return psi(C, float(p["gamma"]), float(p["b"]), p.get("rule", "paper"))
    if "per_C" in spec:
        table = {int(c): int(k) for c, k in spec["per_C"].items()}
        return table[C] if C in table else _k_at(spec.get("else", PAPER), C)
    raise ValueError(f"kmap_confirm: an arm is one of k, psi, per_C or none, got {dict(spec)!r}")


def arm_ks(spec: Mapping[str, Any], backbone: str, stem: str, width: float) -> list[int] | None:
    """The k per stage an arm ``spec`` gives ``backbone`` at ``width`` (None: no attention)."""
    if spec.get("none"):
        return None
    if "k" in spec:
        ks = [int(k) for k in spec["k"]]
        if len(ks) != num_stages(backbone):
            raise ValueError(f"kmap_confirm: {len(ks)} k for the {num_stages(backbone)} stages of {backbone}")
        return ks
    return [_k_at(spec, plan.channels) for plan in stage_plans(backbone, width, stem)]


def default_arms(backbone: str) -> dict[str, dict[str, Any]]:
    """The arms every confirmation has: the paper's psi, timm's rule, k = 3, 5, 7 everywhere and
    the authors' released k (where they released k for ``backbone``)."""
    n = num_stages(backbone)
    arms: dict[str, dict[str, Any]] = {REFERENCE: PAPER, "timm_rule": {"psi": {"gamma": 2.0, "b": 1.0, "rule": "timm"}},
                                       "k3": {"k": [3] * n}, "k5": {"k": [5] * n}, "k7": {"k": [7] * n}}
    try:
        arms["released"] = {"k": list(released_k(backbone))}
    except ValueError:
        pass
    return arms


def identical_arms(arms: Mapping[str, Mapping[str, Any]], backbone: str, stem: str, widths: Sequence[float]
                   ) -> tuple[list[str], dict[str, str]]:
    """Arms whose networks equal the paper's psi's at every width (``identical``), and arms
    that share another arm's networks at every width (``same_as``: arm -> the first such arm)."""
    key = {a: tuple(None if (ks := arm_ks(s, backbone, stem, w)) is None else tuple(ks) for w in widths) for a, s in arms.items()}
    identical, same_as, first = [], {}, {}
    for a in arms:
        if a == REFERENCE:
            continue
        if key[a] == key.get(REFERENCE):
            identical.append(a)
        elif key[a] in first:
            same_as[a] = first[key[a]]
        else:
            first[key[a]] = a
    return identical, same_as


@register_space(
    "kmap_confirm",
    description="confirm a k-vs-C study's answer (--from runs/NAME): the paper's psi against k=3, 5, 7, the released k, timm's rule, "
                "the fitted psi and k* per C, in rounds of paired seeds until each arm is decided (--delta)",
    budget=Budget(trials=600, epochs=9),
    sampler="random",
    default_design="confirm",
    options=(SOURCE, DELTA, BUDGET),
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """One arm at one width (see the module doc)."""
    arms = ctx.options.get("arms")
    if not arms:
        raise ValueError("kmap_confirm needs the arms to compare: run it with --from runs/NAME (a k-vs-C study)")
    widths = [float(w) for w in ctx.options.get("widths") or CONFIRM_WIDTHS]
    arm = trial.suggest_categorical("arm", sorted(arms))
    width = float(trial.suggest_categorical("width", widths))
    ks = arm_ks(arms[arm], ctx.backbone, ctx.stem, width)
    n = num_stages(ctx.backbone)
    stages = [AttentionSpec("none")] * n if ks is None else [AttentionSpec.of("eca", k=k) for k in ks]
    return ctx.config(stages, width=width)
