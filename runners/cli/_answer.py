"""``python -m study.run --space eca_kmap --design answer --delta D [--budget RUNS]``: one
resumable command from plan to decision.

The answer design runs four stages, each a study of its own in the run's storage and a folder
of its own in the run folder (``NAME.pilot-eE``, ``NAME.explore``, ``NAME.confirm``), so that
``--resume`` continues whichever stage a crash interrupted and trains nothing twice (every
stage resumes its own study; a finished one runs nothing):

1. **pilot**: the paper's psi and k = 3 at the confirmation's widths, paired by seed, for
   :data:`PILOT_ROUNDS` rounds at each fidelity (:data:`FIDELITIES`: the recipe's epochs times
   1 and 3). It measures the noise of a paired difference and the seconds a run takes, and
   the plan (:func:`analysis.confirm.choose_fidelity`) takes the fidelity with the least
   expected time to a decision;
2. **explore**: the inference design (random k per stage at five widths, two seeds each) on
   the first half of the validation images, and its k-vs-C answer (:func:`analysis.analyze_kmap`);
3. **confirm**: the paper's psi against k = 3, 5, 7, the released k, timm's rule and the
   exploration's fitted psi and k* per C, at the chosen fidelity, on the other half of the
   validation images, with seeds of its own, in rounds until every arm is decided or the
   budget is spent (:mod:`runners.cli._confirm`; the rule stored before its first run);
4. **decision**: ``decision.json``, ``decision.md`` and ``decision.png`` in the run folder.

The answer's own study (its settings, the workflow's record) holds no trials.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runners._progress import Progress
from runners._run import check_run, run_study, start_run
from runners._settings import StudySettings
from runners._study import study_exists
from runners.cli._confirm import CONFIRM_SEED_STREAM, confirm_options, confirm_rounds, write_decision
from search_spaces import CONFIRM_REFERENCE, CONFIRM_WIDTHS, DEFAULT_DELTA, default_arms
from study.config import ProxySpec

__all__ = ["FIDELITIES", "PILOT_ROUNDS", "run_answer", "plan_answer"]

#: rounds of paired seeds the pilot runs at each fidelity
PILOT_ROUNDS = 6
#: the fidelities the pilot compares: the recipe's epochs times these
FIDELITIES = (1, 3)
#: the validation images split in two: the exploration validates on one part, the confirmation on the other
EXPLORE_PART, CONFIRM_PART = "1/2", "2/2"


def _stage(settings: StudySettings, stage: str, **changes: Any) -> StudySettings:
    """A stage's settings: the answer's, as a study of its own in the run folder and storage."""
    given = {f: getattr(settings, f) for f in ("backbone", "stem", "storage", "runner", "address", "cpus_per_trial", "gpus_per_trial",
                                               "max_concurrent", "max_failures", "device", "stage_data", "timeout")}
    given.update(name=f"{settings.name}.{stage}", run_dir=str(Path(settings.run_dir) / stage), proxy=settings.proxy,
                 recipe=settings.recipe)
    given.update(changes)
    return StudySettings(**given)


def _run_stage(settings: StudySettings, progress: Any, **kw: Any) -> Any:
    """Create or resume the stage's study and run it (:func:`runners.run_study`)."""
    run = check_run(settings, resume=study_exists(settings.storage, settings.name))
    start_run(run, log=progress.line)
    return run_study(settings, progress=progress, run=run, **kw)


def _with_part(proxy: ProxySpec, part: str) -> ProxySpec:

    return dataclasses.replace(proxy, val_part=part)


def _pilot(settings: StudySettings, progress: Any, say: Callable[[str], Any], trainer: dict[str, Any]) -> tuple[Any, list[Any], str]:
    """Stage 1: the noise of a paired difference and the time of a run per fidelity, and the choice."""
    import analysis
    from analysis.confirm import Fidelity, Rule, choose_fidelity, paired_differences

    arms = {k: v for k, v in default_arms(settings.backbone).items() if k in (CONFIRM_REFERENCE, "k3")}
    widths = list(CONFIRM_WIDTHS)
    measured = []
    for factor in FIDELITIES:
        epochs = settings.recipe.epochs * factor
        rule = Rule(delta=1.0, arms=("k3",), widths=tuple(widths), budget=10**6, sigma=1.0)
        stage = _stage(settings, f"pilot-e{epochs}", space="kmap_confirm", design="confirm", seed=settings.seed + 2 * CONFIRM_SEED_STREAM,
                       recipe={**settings.recipe.to_dict(), "epochs": epochs}, proxy=_with_part(settings.proxy, CONFIRM_PART),
                       trials=PILOT_ROUNDS * 2 * len(widths), space_options={"arms": arms, "widths": widths, "rule": rule.to_dict()})
        say(f"[answer] pilot at {epochs} epochs: the paper's psi and k=3 at widths {', '.join(f'{w:g}' for w in widths)}, "
            f"{PILOT_ROUNDS} paired seeds")
        _run_stage(stage, progress, next_round=confirm_rounds(stage, log=say, rounds=PILOT_ROUNDS), **trainer)
        fr = analysis.load(stage.run_dir)
        pairs, _ = paired_differences(fr, rule)
        d = pairs["d"].dropna().to_numpy(float)
        done = fr.trials[fr.trials["state"] == "complete"]
        seconds = float(done["duration_s"].median()) if len(done) else math.nan
        sd = float(d.std(ddof=1)) if len(d) >= 2 else math.nan
        if not math.isfinite(sd) or sd <= 0 or not math.isfinite(seconds):
            continue
        measured.append(Fidelity(f"{epochs} epochs", sd, seconds, len(d) - 1))
        say(f"[answer] pilot at {epochs} epochs: paired differences spread {sd:.2f} points ({len(d)} pairs), {seconds:.1f} s a run")
    if not measured:
        raise ValueError("the pilot measured no noise: its runs failed (see the pilot studies' trials)")
    tested = len([a for a in default_arms(settings.backbone) if a != CONFIRM_REFERENCE]) + 2  # + the fitted psi and k* per C
    best, plans, why = choose_fidelity(measured, arms=tested, widths=len(widths), delta=_delta(settings))
    say(f"[answer] plan: {why}")
    return best, measured, why


def _planned_sigma(best: Any, an: Any, widths: int) -> tuple[float, float, str]:
    """The noise the confirmation is planned for: where its sequences are tightest (never their
    validity) and its budget. A pilot of a few pairs measures it loosely, and a budget planned
    for too little noise leaves arms undecided, while a generous one costs nothing when they
    decide early (the study stops there): the sequences are centred for the pilot's 80 % upper
    confidence bound and the budget planned for its 95 % one, neither above what the
    exploration's seed noise says a paired difference without common random numbers would have
    (sqrt(2 / widths) x sigma_seed, about 100 degrees of freedom) nor below the pilot's estimate."""
    from scipy import stats

    bound = lambda q: best.sigma_d * math.sqrt(best.df / stats.chi2.ppf(q, best.df)) if best.df >= 1 else 3 * best.sigma_d
    seed = an.effect.noise.sigma
    cap = math.sqrt(2.0 / widths) * seed if seed else math.inf
    centre, budget = (max(best.sigma_d, min(bound(q), cap)) for q in (0.2, 0.05))
    return centre, budget, (f"{centre:.2f} points (the budget planned for {budget:.2f}): the pilot at {best.name} measured "
                            f"{best.sigma_d:.2f} ({best.df} df; 80 % and 95 % upper bounds {bound(0.2):.2f}, {bound(0.05):.2f}); "
                            f"the exploration's seed noise allows at most {cap:.2f}")


def _delta(settings: StudySettings) -> float:
    return float(settings.space_options.get("delta") or DEFAULT_DELTA)


def run_answer(settings: StudySettings, progress: Any, *, say: Callable[[str], Any] = print, **trainer: Any) -> Path:
    """Run (or resume) the answer's stages (see the module doc); returns ``decision.md``.
    ``trainer``: ``train`` / ``load_proxy`` for the local runner (a simulation's planted truth)."""
    import analysis
    from analysis.confirm import confirmation_decision

    root = Path(settings.run_dir)
    best, measured, why = _pilot(settings, progress, say, trainer)
    epochs = int(best.name.split()[0])
    explore = _stage(settings, "explore", space="eca_kmap", design="inference", seed=settings.seed, trials=settings.trials,
                     replicates=settings.replicates, proxy=_with_part(settings.proxy, EXPLORE_PART))
    say(f"[answer] explore: the inference design, {explore.trials} configurations x {explore.replicates} seeds")
    _run_stage(explore, progress, **trainer)
    an = analysis.analyze_kmap(analysis.load(explore.run_dir), seed=settings.seed)
    say(f"[answer] explore: {an.effect.verdict()}")
    sigma, budget_sigma, sigma_from = _planned_sigma(best, an, len(CONFIRM_WIDTHS))
    options = confirm_options(an, backbone=settings.backbone, stem=settings.stem, delta=_delta(settings),
                              budget=settings.space_options.get("budget"), sigma=sigma, budget_sigma=budget_sigma,
                              sigma_from=sigma_from)
    options.update(validation=f"the second half of the validation images ({CONFIRM_PART}); the exploration used the first ({EXPLORE_PART})",
                   source=str(Path(explore.run_dir).resolve()), source_study=explore.name, source_verdict=an.effect.verdict(),
                   source_seeds=[])
    confirm = _stage(settings, "confirm", space="kmap_confirm", design="confirm", seed=settings.seed + CONFIRM_SEED_STREAM,
                     recipe={**settings.recipe.to_dict(), "epochs": epochs}, proxy=_with_part(settings.proxy, CONFIRM_PART),
                     trials=int(options["rule"]["budget"]), space_options=options)
    if study_exists(confirm.storage, confirm.name):  # a resumed confirmation keeps the rule it stored before its first run
        stored = analysis.load(confirm.run_dir).settings
        confirm = _stage(settings, "confirm", space="kmap_confirm", design="confirm", seed=settings.seed + CONFIRM_SEED_STREAM,
                         recipe=stored["recipe"], proxy=stored["proxy"], trials=stored["trials"], space_options=stored["space_options"])
    say(f"[answer] confirm: {len(options['arms']) - 1} arms against the paper's psi at {best.name}, margin "
        f"{options['rule']['delta']:g}, at most {confirm.trials} runs")
    bridge = _run_stage(confirm, progress, next_round=confirm_rounds(confirm, log=say), **trainer)
    fr = analysis.load(confirm.run_dir)
    decision = confirmation_decision(fr, stopped=bridge.done() or "")
    from analysis.kmap import mapping_lines

    evidence = [f"pilot: {why}", f"exploration ({explore.name}): {an.effect.verdict()}", *[f"exploration: {x}" for x in mapping_lines(an)]]
    commands = [f"python -m analysis.kmap {explore.run_dir}", f"python -m analysis.report {confirm.run_dir}",
                f"python -m study.run --out {root.parent} --name {settings.name} --resume"]
    path = write_decision(root, decision, frames=fr, settings=fr.settings, evidence=evidence, commands=commands)
    say(f"[answer] {decision.sentence()}")
    say(f"[answer] wrote {path}")
    return path


def _tested_arms(backbone: str) -> int:
    """The arms a confirmation of the answer tests: the fixed ones, the fitted psi and k* per C."""
    return len([a for a in default_arms(backbone) if a != CONFIRM_REFERENCE]) + 2


def plan_answer(settings: StudySettings, *, sigma: float | None = None, say: Callable[[str], Any] = print) -> list[str]:
    """``--plan`` of the answer design: the confirmation's plan (runs to a decision, mean and
    95th percentile, for every arm equal and for one arm 2 x delta better; the power at the
    budget; a fixed-size design's runs) for a paired-difference noise ``sigma``, or, without
    one, for what a pilot measures at each fidelity (run in a temporary folder, the answer's
    own first stage: nothing of the study is created), with the fidelity that decides cheapest."""
    from analysis.confirm import plan_confirmation

    delta, budget = _delta(settings), settings.space_options.get("budget")
    arms, widths = _tested_arms(settings.backbone), len(CONFIRM_WIDTHS)
    if sigma is not None:
        return plan_confirmation(arms=arms, widths=widths, sigma_d=sigma, delta=delta, budget=budget).lines()
    folder = Path(tempfile.mkdtemp(prefix="answer-plan-"))
    try:
        pilot = settings.replace(run_dir=str(folder / settings.name), storage=f"journal:{folder / 'pilot.log'}")
        best, measured, why = _pilot(pilot, _quiet(), say, {})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [f"pilot: {why}"]
    for f in measured:
        lines += [f"at {f.name} (a run {f.seconds:.0f} s):",
                  *plan_confirmation(arms=arms, widths=widths, sigma_d=f.sigma_d, delta=delta, budget=budget).lines()]
    return lines


def _quiet() -> Any:
    return Progress(quiet=True)
