"""``eca_kmap``: which ECA kernel size k does each stage prefer, as a function of its C?

ECA in every stage of the backbone (Wang et al., "ECA-Net", CVPR 2020). Each trial either
fixes k per stage (odd k in {1, 3, 5, 7, 9}, independently per stage; ``k_mode="fixed"``)
or takes it from the paper's mapping k = psi(C) = |log2(C)/gamma + b/gamma|_odd (eq. 12)
with gamma in [1, 4] and b in [0, 4] (``k_mode="psi"``). A width multiplier in
{0.25, 0.5, 1.0} spreads the channel counts C the stages see (unless the study fixes the
width). The resolved (C, k) of every stage is what the k-vs-C analysis fits.

The study starts from three reference points, enqueued as its first trials: the paper's
mapping (gamma=2, b=1), k=3 everywhere (the authors' code default) and the authors'
released per-stage k for the backbone (:func:`study.attention.released_k`).
"""

from __future__ import annotations

from typing import Any

from search_spaces._registry import Budget, make_config, register_space
from study.config import AttentionSpec

__all__ = ["define", "references", "K_CHOICES", "WIDTHS", "GAMMA_RANGE", "B_RANGE"]

K_CHOICES = (1, 3, 5, 7, 9)
WIDTHS = (0.25, 0.5, 1.0)
GAMMA_RANGE = (1.0, 4.0)
B_RANGE = (0.0, 4.0)
#: the width the reference points use when the study does not fix one
REFERENCE_WIDTH = 0.5


def _num_stages(backbone: str) -> int:
    from study.models import num_stages

    return num_stages(backbone)


def references(*, backbone: str, width: float | None = None, **_: Any) -> list[tuple[str, dict[str, Any]]]:
    """The reference points (name, params) enqueued first."""
    from study.attention import released_k

    n = _num_stages(backbone)
    base: dict[str, Any] = {} if width is not None else {"width": REFERENCE_WIDTH}
    points = [
        ("paper_psi", {**base, "k_mode": "psi", "gamma": 2.0, "b": 1.0}),
        ("k3", {**base, "k_mode": "fixed", **{f"k_s{i}": 3 for i in range(n)}}),
    ]
    try:
        released = released_k(backbone)
    except ValueError:
        released = None  # a backbone the authors released no ECA model for
    if released is not None and len(released) == n:
        points.append(("released", {**base, "k_mode": "fixed", **{f"k_s{i}": k for i, k in enumerate(released)}}))
    return points


@register_space(
    "eca_kmap",
    description="ECA in every stage: per-stage k in {1,3,5,7,9} or psi(C) with gamma in [1,4], b in [0,4], width in {0.25,0.5,1}",
    budget=Budget(trials=20, epochs=3),
    references=references,
)
def define(trial: Any, *, backbone: str, width: float | None = None, **settings: Any):
    """ECA in every stage with a per-stage fixed k or psi(C; gamma, b)."""
    n = _num_stages(backbone)
    w = trial.suggest_categorical("width", WIDTHS) if width is None else width
    mode = trial.suggest_categorical("k_mode", ("fixed", "psi"))
    if mode == "fixed":
        stages = [AttentionSpec.of("eca", k=trial.suggest_categorical(f"k_s{i}", K_CHOICES)) for i in range(n)]
    else:
        gamma = trial.suggest_float("gamma", *GAMMA_RANGE)
        b = trial.suggest_float("b", *B_RANGE)
        stages = [AttentionSpec.of("eca", gamma=gamma, b=b)] * n
    return make_config(stages, backbone=backbone, width=w, **settings)
