"""``eca_kmap``: which ECA kernel size k does each stage prefer, as a function of its C?

ECA in every stage of the backbone (Wang et al., "ECA-Net", CVPR 2020). Two designs:

- **search** (the default): each trial either fixes k per stage (odd k in {1, 3, 5, 7, 9},
  independently per stage; ``k_mode="fixed"``) or takes it from the paper's mapping
  k = psi(C) = |log2(C)/gamma + b/gamma|_odd (eq. 12) with gamma in [1, 4] and b in [0, 4]
  (``k_mode="psi"``). A width multiplier in {0.25, 0.5, 1.0} spreads the channel counts C
  the stages see (unless the study fixes the width).
- **inference**: built to measure what k does, not to find a good network. Every trial fixes
  k per stage from the one set {1, 3, 5, 7, 9} (so that no k value is seen only under psi, and
  a model over k never extrapolates); the width comes from {0.25, 0.375, 0.5, 0.75, 1.0},
  so that in a ResNet, whose stage s attends to C = 64 x 2^s x width channels, the C values
  from 32 to 256 each arise from two or more (stage, width) cells and the test of "k* depends
  on C alone, not on the stage" has something to compare (16, 24, 384 and 512 arise once:
  the end points of a doubling series always do). The paper's psi is run only as a
  reference point, as its per-stage k.

The resolved (C, k) of every stage is what the k-vs-C analysis (:mod:`analysis.kmap`) uses.
A study starts from reference points, enqueued as its first trials: the paper's mapping
(gamma=2, b=1), k=3 everywhere (the authors' code default) and the authors' released
per-stage k for the backbone (:func:`study.catalogue.released_k`), the latter at width 1.0,
the width those k were chosen for (search: psi and k=3 at width 0.5; inference: all at 1.0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces._context import SpaceContext
from search_spaces._kmap_confirm import BUDGET, DELTA
from search_spaces._registry import Budget, register_space
from study.catalogue import B_RANGE, GAMMA_RANGE, K_CHOICES, num_stages, psi, released_k, stage_plans
from study.config import AttentionSpec

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define", "references", "K_CHOICES", "WIDTHS", "INFERENCE_WIDTHS", "GAMMA_RANGE", "B_RANGE", "INFERENCE_BUDGET"]

WIDTHS = (0.25, 0.5, 1.0)
INFERENCE_WIDTHS = (0.25, 0.375, 0.5, 0.75, 1.0)
#: the width of the search design's psi and k=3 reference points when the study does not fix one
REFERENCE_WIDTH = 0.5
#: the width the authors' released k were chosen for (and the inference design's references)
RELEASED_WIDTH = 1.0
#: the inference design's default budget: 100 configurations (x 2 replicates by default); its
#: power against a planted k effect of 0.5 points at a per-trial noise of 0.5 points, and the
#: coverage of every interval of the answer, are measured by ``python
#: benchmarks/kmap_calibration.py`` (its figures, with the command, are in docs/benchmarks.md, generated from
#: benchmarks/results/kmap_calibration.json; the method in docs/kmap.md)
INFERENCE_BUDGET = Budget(trials=100, epochs=3)


def _psi_ks(backbone: str, stem: str, width: float) -> list[int]:
    """The paper's psi (gamma=2, b=1) k per stage of ``backbone`` at ``width``, on the channels
    each stage attends to."""
    return [psi(plan.channels, 2.0, 1.0) for plan in stage_plans(backbone, width, stem)]


def references(ctx: SpaceContext) -> list[tuple[str, dict[str, Any]]]:
    """The reference points (name, params) enqueued first."""
    backbone, width, design = ctx.backbone, ctx.width, ctx.design
    n = num_stages(backbone)
    fixed = width is not None
    base: dict[str, Any] = {} if fixed else {"width": RELEASED_WIDTH if design in ("inference", "answer") else REFERENCE_WIDTH}
    try:
        released = released_k(backbone)
    except ValueError:
        released = None  # a backbone the authors released no ECA model for
    if design in ("inference", "answer"):
        w = width if fixed else RELEASED_WIDTH
        paper = _psi_ks(backbone, ctx.stem, w)
        points = [("k3", {**base, **{f"k_s{i}": 3 for i in range(n)}})]
        if all(k in K_CHOICES for k in paper):
            points.insert(0, ("paper_psi", {**base, **{f"k_s{i}": k for i, k in enumerate(paper)}}))
        if released is not None and len(released) == n and all(k in K_CHOICES for k in released):
            points.append(("released", {**base, **{f"k_s{i}": k for i, k in enumerate(released)}}))
        return points
    points = [
        ("paper_psi", {**base, "k_mode": "psi", "gamma": 2.0, "b": 1.0}),
        ("k3", {**base, "k_mode": "fixed", **{f"k_s{i}": 3 for i in range(n)}}),
    ]
    if released is not None and len(released) == n:
        at = {} if fixed else {"width": RELEASED_WIDTH}
        points.append(("released", {**at, "k_mode": "fixed", **{f"k_s{i}": k for i, k in enumerate(released)}}))
    return points


@register_space(
    "eca_kmap",
    description="ECA in every stage: per-stage k in {1,3,5,7,9} or psi(C) with gamma in [1,4], b in [0,4], width in {0.25,0.5,1} "
                "(inference design: fixed k only, widths {0.25,0.375,0.5,0.75,1})",
    budget=Budget(trials=20, epochs=3),
    references=references,
    designs={"inference": INFERENCE_BUDGET, "answer": INFERENCE_BUDGET},
    options=(DELTA, BUDGET),
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """ECA in every stage with a per-stage fixed k or psi(C; gamma, b)."""
    n = num_stages(ctx.backbone)
    if ctx.design in ("inference", "answer"):  # the answer's exploration is the inference design
        w = trial.suggest_categorical("width", INFERENCE_WIDTHS) if ctx.width is None else None
        stages = [AttentionSpec.of("eca", k=trial.suggest_categorical(f"k_s{i}", K_CHOICES)) for i in range(n)]
        return ctx.config(stages, width=w)
    w = trial.suggest_categorical("width", WIDTHS) if ctx.width is None else None
    mode = trial.suggest_categorical("k_mode", ("fixed", "psi"))
    if mode == "fixed":
        stages = [AttentionSpec.of("eca", k=trial.suggest_categorical(f"k_s{i}", K_CHOICES)) for i in range(n)]
    else:
        gamma = trial.suggest_float("gamma", *GAMMA_RANGE)
        b = trial.suggest_float("b", *B_RANGE)
        stages = [AttentionSpec.of("eca", gamma=gamma, b=b)] * n
    return ctx.config(stages, width=w)
