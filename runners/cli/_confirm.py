"""The sequential confirmation on the top floor: its arms and rule from a k-vs-C answer, its
rounds, and its decision files.

A confirmation study (``kmap_confirm``, the confirm design) runs in rounds
(:func:`runners.run_study`'s ``next_round``): before each round the decision so far is read
from the study (:func:`analysis.confirm.confirmation_decision`); the round trains every arm
still undecided and the paper's psi at every width from the round's one seed, or the study
stops - every arm decided, or the next round would pass the budget. The rule (margin, level,
arms, widths, budget, the planned noise) is fixed when the study is created, in its
``space_options["rule"]``, and the decision is written beside the study: ``decision.json``,
``decision.md`` (the decision first, then the chain of evidence) and ``decision.png`` (each
arm's confidence sequence).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runners._run import NextRound
from search_spaces import CONFIRM_REFERENCE as REFERENCE
from search_spaces import CONFIRM_WIDTHS, DEFAULT_DELTA, default_arms, identical_arms
from study import record
from study.io import write_json

if TYPE_CHECKING:
    import optuna

    from analysis.confirm import Decision
    from analysis.kmap import KmapAnalysis

__all__ = ["CONFIRM_SEED_STREAM", "confirm_options", "confirm_rounds", "confirm_seed", "write_decision"]

#: the confirmation's seed is the source study's plus this: its paired seeds (trial_seed of
#: the round) are then other numbers than the source's (checked, and said in the decision)
CONFIRM_SEED_STREAM = 1_000_003


def confirm_seed(source_seed: int) -> int:
    return int(source_seed) + CONFIRM_SEED_STREAM


def answer_arms(an: KmapAnalysis, backbone: str) -> dict[str, dict[str, Any]]:
    """The arms a confirmation of the answer ``an`` compares: the paper's psi, timm's rule,
    k = 3, 5, 7, the released k, the psi the exploration fitted and its k* per C as a mapping."""
    arms = default_arms(backbone)
    if an.fitted is not None:
        arms["fitted_psi"] = {"psi": {"gamma": float(an.fitted.gamma), "b": float(an.fitted.b), "rule": "paper"}}
    table = an.effect.table
    if len(table):
        arms["kstar"] = {"per_C": {str(int(r.C)): int(r.k_star) for r in table.itertuples()},
                         "else": {"psi": {"gamma": 2.0, "b": 1.0, "rule": "paper"}}}
    return arms


def planned_sigma(an: KmapAnalysis | None, widths: Sequence[float]) -> tuple[float, str]:
    """The planned standard deviation of a paired difference (averaged over ``widths``) and
    where it comes from: sqrt(2 / widths) x the source's seed noise (common random numbers
    make it smaller; it only sets where the sequences are tightest, never their validity)."""
    sigma = an.effect.noise.sigma if an is not None else None
    if sigma is None or not math.isfinite(sigma) or sigma <= 0:
        return 1.0, "1.0 point (the source measured no seed noise)"
    s = math.sqrt(2.0 / len(widths)) * float(sigma)
    return s, f"{s:.2f} points (sqrt(2 / {len(widths)} widths) x the source's seed noise {sigma:.2f})"


def confirm_options(an: KmapAnalysis, *, backbone: str, stem: str, delta: float | None = None, budget: int | None = None,
                    widths: Sequence[float] = CONFIRM_WIDTHS, alpha: float = 0.05, sigma: float | None = None,
                    budget_sigma: float | None = None, sigma_from: str = "") -> dict[str, Any]:
    """The space options of a confirmation of ``an``: its arms, widths and decision rule; the
    default budget is the plan's for ``budget_sigma`` (default ``sigma``)."""
    from analysis.confirm import Rule, plan_confirmation

    arms = answer_arms(an, backbone)
    identical, same_as = identical_arms(arms, backbone, stem, widths)
    if sigma is None:
        sigma, sigma_from = planned_sigma(an, widths)
    delta = DEFAULT_DELTA if delta is None else float(delta)
    tested = [a for a in arms if a != REFERENCE and a not in identical and a not in same_as]
    plan = plan_confirmation(arms=max(len(tested), 1), widths=len(widths), sigma_d=budget_sigma or sigma, delta=delta, alpha=alpha,
                             reps=200)
    rule = Rule(delta=delta, arms=tuple(a for a in arms if a != REFERENCE), widths=tuple(widths), budget=int(budget or plan.budget),
                sigma=sigma, alpha=alpha, identical=tuple(identical), same_as=same_as)
    return {"arms": arms, "widths": list(widths), "rule": rule.to_dict(), "sigma_from": sigma_from, "plan": plan.to_dict()}


def _next_index(study: optuna.Study) -> int:
    reps = [t.user_attrs.get(record.REPLICATE) for t in study.get_trials(deepcopy=False)]
    return max((int(r) for r in reps if r is not None), default=-1) + 1


def confirm_rounds(settings: Any, *, log: Callable[[str], Any] = print, rounds: int | None = None) -> NextRound:
    """``next_round`` of a confirmation study (see the module doc); ``rounds``: stop after that
    many rounds whatever the decision (a pilot)."""
    from analysis import frames_of
    from analysis.confirm import Rule, decide, paired_differences

    rule = Rule.from_dict(settings.space_options["rule"])

    def next_round(study: optuna.Study) -> list[tuple[dict[str, Any], dict[str, Any]]] | str:
        pairs, spent = paired_differences(frames_of(study, settings=settings.to_dict()), rule)
        r = _next_index(study)
        if rounds is not None:
            if r >= rounds:
                return f"the pilot's {rounds} rounds ran"
            active = list(rule.tested)
        else:
            dec = decide(pairs, rule, runs=spent)
            active = [a.arm for a in dec.arms if a.claim == "undecided" and a.arm in rule.tested]
            if not active:
                return "every arm is decided"
        cost = rule.round_runs(len(active))
        if spent + cost > rule.budget:
            return f"the budget of {rule.budget} runs is spent ({spent} used; the next round needs {cost})"
        log(f"[confirm] round {r}: {len(active)} arm{'s' if len(active) != 1 else ''} undecided ({', '.join(active)}), "
            f"{spent} of {rule.budget} runs spent")
        return [({"arm": arm, "width": w}, {record.REPLICATE: r, record.GROUP: r}) for arm in (rule.reference, *active)
                for w in rule.widths]

    return next_round


def _seeds_note(frames: Any, source_seeds: Sequence[int]) -> str:
    mine = {int(s) for s in frames.trials["seed"].dropna()} if "seed" in frames.trials else set()
    if not source_seeds:
        return f"{len(mine)} paired seeds"
    shared = mine & {int(s) for s in source_seeds}
    if shared:
        return f"{len(mine)} paired seeds, {len(shared)} of them also the source study's (its --seed was given so)"
    return f"{len(mine)} paired seeds, none of them the source study's ({len(set(source_seeds))} seeds): fresh"


def write_decision(run_dir: str | Path, decision: Decision, *, frames: Any, settings: Mapping[str, Any],
                   evidence: Sequence[str] = (), commands: Sequence[str] = ()) -> Path:
    """``decision.json``, ``decision.md`` and ``decision.png`` in ``run_dir``; returns the markdown's path."""
    from analysis import save_figure
    from analysis.confirm import plot_decision

    run_dir = Path(run_dir)
    options = dict(settings.get("space_options") or {})
    seeds = _seeds_note(frames, options.get("source_seeds") or [])
    validation = options.get("validation") or "the proxy's validation images"
    out = {**decision.to_dict(), "seeds": seeds, "validation": validation, "sigma_planned_from": options.get("sigma_from")}
    write_json(run_dir / "decision.json", json.loads(json.dumps(out, default=_plain)))
    save_figure(plot_decision(decision), run_dir / "decision")
    md = [f"# {decision.sentence()}.", "", f"- rule, stored before the first run: {decision.rule.text()}",
          f"- spent {decision.runs} of {decision.rule.budget} runs in {decision.rounds} rounds; stopped: {decision.stopped}",
          f"- seeds: {seeds}", f"- validation: {validation}", ""]
    md += ["## Each arm against the paper's psi", "", "| arm | claim | diff | lo | hi | pairs | note |", "|---|---|---|---|---|---|---|"]
    for a in decision.arms:
        fmt = lambda v: f"{v:+.2f}" if isinstance(v, float) and math.isfinite(v) else "n/a"
        md.append(f"| {a.arm} | {a.claim} | {fmt(a.diff)} | {fmt(a.lo)} | {fmt(a.hi)} | {a.pairs} | {a.note} |")
    md += ["", "![each arm's confidence sequence](decision.png)", ""]
    if evidence:
        md += ["## The chain of evidence", "", *[f"- {e}" for e in evidence], ""]
    if commands:
        md += ["## Reproduce each stage", "", "```bash", *commands, "```", ""]
    path = run_dir / "decision.md"
    path.write_text("\n".join(md))
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v) if math.isfinite(v) else None
    return str(v)
