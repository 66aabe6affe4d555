"""``kmap_confirm``: confirm a k-vs-C study's fitted mapping at a higher fidelity, paired by seed.

``python -m study.run --space kmap_confirm --from runs/NAME`` trains, in every stage of the
source study's backbone (at width 1.0 unless ``--width`` says otherwise), one configuration
per *arm*:

- ``fitted``: ECA with k = psi(C; gamma, b), the (gamma, b) the source study's analysis
  fitted by predicted top-1 (:func:`analysis.fit_psi_by_top1`);
- ``paper_psi``: psi(C; 2, 1), the ECA paper's mapping (Wang et al., CVPR 2020, eq. 12);
- ``k3``: k = 3 everywhere, the authors' code default;
- ``released``: the authors' released per-stage k (where the backbone has them);
- ``none``: no attention.

The confirm design runs every arm ``--replicates`` times (3 by default) with paired seeds:
replicate r of every arm trains from the same seed, so the report compares each arm with the
paper's psi pair by pair. The decision rule is fixed when the study is created, before any
trial runs ("the fitted mapping is better if the 95 % interval of its paired top-1
difference against the paper's psi lies above 0") and stored in the study's settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces._context import SpaceContext
from search_spaces._registry import Budget, SpaceOption, register_space
from study.catalogue import num_stages, released_k
from study.config import AttentionSpec

if TYPE_CHECKING:
    import optuna

    from study.config import TrialConfig

__all__ = ["define", "arms", "ARMS", "DECISION", "SOURCE"]

ARMS = ("fitted", "paper_psi", "k3", "released", "none")
#: the decision the report applies, stated before the run
DECISION = ("the fitted mapping is better than the paper's psi if the 95 % interval of its paired top-1 difference "
            "against the paper's psi lies above 0, worse if it lies below 0, and not shown different otherwise")
#: the width the arms are trained at unless the study fixes one
CONFIRM_WIDTH = 1.0
#: ``--from RUN``: the study to confirm. Reading it (its analysis's fitted mapping, and the
#: backbone, proxy and recipe the confirmation takes from it) is a workflow of the study CLI,
#: which alone may use both runners and analysis: its preparation of this space's options.
SOURCE = SpaceOption(
    key="source", flag="--from", metavar="RUN",
    help="the k-vs-C study (run folder) whose fitted mapping to confirm",
    required="kmap_confirm confirms the mapping a k-vs-C study fitted; give that study with --from runs/NAME",
    elsewhere="only the kmap_confirm space confirms a study (python -m study.run --space kmap_confirm --from runs/NAME)",
    on_resume="a resumed confirmation keeps the study it checks; drop --from",
)


def arms(backbone: str) -> list[str]:
    """The arms for ``backbone`` (``released`` only where the authors released k for it)."""
    try:
        released_k(backbone)
    except ValueError:
        return [a for a in ARMS if a != "released"]
    return list(ARMS)


def _grid(ctx: SpaceContext) -> dict[str, list[Any]]:
    return {"arm": arms(ctx.backbone)}


def _stages(arm: str, backbone: str, fitted: dict[str, Any]) -> list[AttentionSpec]:
    n = num_stages(backbone)
    if arm == "fitted":
        return [AttentionSpec.of("eca", gamma=float(fitted["gamma"]), b=float(fitted["b"]))] * n
    if arm == "paper_psi":
        return [AttentionSpec.of("eca", gamma=2.0, b=1.0)] * n
    if arm == "k3":
        return [AttentionSpec.of("eca", k=3)] * n
    if arm == "released":
        return [AttentionSpec.of("eca", k=k) for k in released_k(backbone)]
    return [AttentionSpec("none")] * n


@register_space(
    "kmap_confirm",
    description="confirm a k-vs-C study (--from runs/NAME): its fitted psi, the paper's psi, k=3, the released k and no attention, "
                "paired by seed at a higher fidelity",
    budget=Budget(trials=len(ARMS), epochs=9),
    sampler="grid",
    grid=_grid,
    default_design="confirm",
    options=(SOURCE,),
)
def define(trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
    """One arm of the confirmation (see the module doc)."""
    fitted = ctx.options.get("fitted")
    if not fitted or "gamma" not in fitted or "b" not in fitted:
        raise ValueError("kmap_confirm needs the mapping to confirm: run it with --from runs/NAME (a k-vs-C study)")
    arm = trial.suggest_categorical("arm", arms(ctx.backbone))
    return ctx.config(_stages(arm, ctx.backbone, fitted), width=CONFIRM_WIDTH)
