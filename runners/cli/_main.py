"""``python -m study.run``: run a named search space as an Optuna study, on Ray Tune or locally.

    python -m study.run --space eca_kmap                 # ~4 min on a 2-core CPU, synthetic proxy
    python -m study.run --list-spaces
    python -m study.run --space se_ratio --proxy in100-32 --trials 40 --epochs 10 --gpus-per-trial 0.5
    python -m study.run --space eca_kmap --address auto --storage postgresql://user@db/optuna
    python -m study.run --space eca_kmap --address auto --storage journal:/shared/studies.log
    python -m study.run --space eca_kmap --address auto --proxy in100-32 --stage-data   # ship the cache to every node
    python -m study.run --name eca_kmap --resume         # continue after the driver died
    python -m study.run --space my_spaces.py:define --runner local --trials 4
    python -m study.run --space eca_kmap --mlflow sqlite:///mlflow.db        # each trial also an MLflow run

A study lives in ``<out>/<name>/`` (default ``runs/<name>``): ``study.db`` (the Optuna
storage, unless ``--storage`` names another), ``settings.json`` (the resolved settings),
``trials/<number>/config.json`` and ``history.json``, and Ray's result folder ``ray/``.
The name defaults to the space's name (``eca_kmap``, then ``eca_kmap-2``, ...).
Progress: a line when a trial starts, one per epoch as it reaches the driver, one when it
ends (``--quiet``: only that one). ``--mlflow URI`` also shows the study in MLflow
(:mod:`runners._tracking`; the ``mlflow`` extra): a run per trial under the study's run.

The default proxy is the built-in synthetic one at 32 px shrunk to 10 classes x 50 training
and 20 validation images, so the default budget (see ``--list-spaces``) finishes in a few
minutes on two CPU cores; ``--proxy NAME`` picks a preset (``synthetic-small``: 10 classes at
16 px for smoke tests), ``--data DIR`` a cache from ``python -m study.data prepare``, and
``--set proxy.KEY=VALUE`` / ``--set recipe.KEY=VALUE`` change one field of the proxy or the
training recipe (e.g. ``--set proxy.images_per_class=8 --set recipe.batch_size=32``).

The flags are made from the settings' declarations (:mod:`runners.cli._flags`; their
defaults are the settings' own, the same as a Python caller's), resolved to a checked run
(:mod:`runners.cli._resolve`), started and run by the functions a Python caller uses
(:func:`runners.start_run`, :func:`runners.run_study`); this module maps the outcome to
output and exit status. Bad input is one line on stderr and exit status 2; everything is
checked before anything is created (a damaged ``--data`` cache included). A run's exit
status says how it ended (:func:`runners.run_outcome`): 0 when it ended as asked and the
study has a finished trial, 3 when failed trials stopped it, 4 when no trial of the study has
finished, 130 when interrupted; a non-zero status ends with a line naming the first
failure's error. The study's module :mod:`study.run` hands its command line to :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from runners._outcome import run_outcome
from runners._progress import Progress
from runners._run import StudyRun, run_study, start_run
from runners.cli._answer import plan_answer, run_answer
from runners.cli._confirm import confirm_rounds, write_decision
from runners.cli._flags import PROG, build_parser, usage_error
from runners.cli._plan import budget_warning, plan_study
from runners.cli._resolve import refuse_on_resume, resolve_run
from search_spaces import list_spaces
from study.cli import EXIT_INTERRUPTED, EXIT_NOTHING_FINISHED, UsageError, run_cli
from study.storage import redact

if TYPE_CHECKING:  # annotations only
    from runners._bridge import StudyBridge
    from runners._settings import StudySettings
    from search_spaces import Space


__all__ = ["main", "PROG"]


# ----------------------------------------------------------------------------- output


def _list_spaces() -> None:
    infos = list_spaces()
    width = max(len(i.name) for i in infos)
    for i in infos:
        other = "".join(f" [--design {d}: {i.budget_for(d)}]" for d in i.designs[1:])
        print(f"{i.name:<{width}}  {str(i.budget):<22}  sampler {i.sampler:<5}  {i.description}{other}")


def _summary(bridge: StudyBridge, settings: StudySettings, started: float) -> None:
    c = bridge.counts()
    took = time.monotonic() - started
    print()
    print(f"study {settings.name!r}: {c['complete'] + c['pruned']} finished ({c['complete']} complete, {c['pruned']} pruned), "
          f"{c['failed']} failed; this run took {int(took // 60)}m{int(took % 60):02d}s")
    reason = bridge.done()
    if reason:
        print(f"stopped: {reason}")
    best = bridge.best()
    if not best:
        print("no completed trial")
    elif settings.multi_objective:
        print(f"Pareto front ({', '.join(settings.objectives)}): " + "; ".join(
            f"trial {t.number}: " + ", ".join(f"{o}={v:.4g}" for o, v in zip(settings.objectives, t.values)) for t in best[:8]))
    else:
        t = best[0]
        print(f"best trial {t.number}: top1 {t.value:.2f}  "
              f"{' '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in t.params.items())}")
        stages = t.user_attrs.get("stages") or []
        if stages:
            desc = ", ".join(
                f"s{s['stage']}: C={s['channels']} {s['kind']}" + "".join(f" {k}={s[k]}" for k in ("k", "r", "groups")
                                                                           if s.get(k) is not None)
                for s in stages
            )
            print(f"  stages: {desc}")
        config_path = Path(settings.run_dir) / "trials" / str(t.number) / "config.json"
        print(f"  config: {config_path if config_path.exists() else json.dumps(t.user_attrs.get('config'))}")
    print(f"study lives in {settings.run_dir} (storage {redact(settings.storage)}, study name {settings.name!r})")
    print(f"next: python -m analysis.report {_relative(settings.run_dir)}")


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _headline(settings: StudySettings, space: Space, created: bool) -> str:
    s = settings
    runs = f"{s.trials} configurations x {s.replicates} replicates" if s.replicates > 1 else f"{s.trials} trials"
    line = (f"{'study' if created else 'resuming'} {s.name!r}: space {space.name} ({s.design} design), {runs} x {s.recipe.epochs} epochs, "
            f"{s.backbone}, proxy {s.proxy.source} {s.proxy.resolution}px/{s.proxy.num_classes} classes, "
            f"sampler {s.sampler}, pruner {s.pruner}, runner {s.runner}")
    if s.runner == "ray":
        gpus = f" + {s.gpus_per_trial:g} GPU" if s.gpus_per_trial else ""
        line += f" ({s.concurrency} at once, {s.cpus_per_trial:g} CPU{gpus} each)"
    return line


def _plan(args: argparse.Namespace, settings: StudySettings, space: Space) -> int:
    if settings.design in ("answer", "confirm"):
        return _plan_decision(args, settings)
    try:
        plan = plan_study(settings, space, effect=args.effect, sigma=args.sigma, log=lambda s: print(s, file=sys.stderr))
    except ValueError as exc:
        raise usage_error(exc) from None
    print(plan.text(settings, space.name))
    return 0


def _plan_decision(args: argparse.Namespace, settings: StudySettings) -> int:
    """``--plan`` of a design that decides: the confirmation's plan (its runs to a decision and
    power), for ``--sigma`` (the noise of a paired difference) or a pilot's measurement."""
    if settings.design == "confirm":
        from analysis.confirm import ConfirmPlan

        plan = settings.space_options.get("plan")
        lines = ConfirmPlan(**plan).lines() if plan else ["no plan: the confirmation's arms come from --from RUN"]
    else:
        try:
            lines = plan_answer(settings, sigma=args.sigma, say=lambda s: print(s, file=sys.stderr))
        except ValueError as exc:
            raise usage_error(exc) from None
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- main


def _process_state() -> None:
    """The process-wide state of the study command line, set at its boundary (the library
    sets none): Optuna logs warnings and errors only (the command line prints its own
    progress), and Optuna's ExperimentalWarnings (metric names, ...) are not shown."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _check_flags(args: argparse.Namespace) -> None:
    """The command's own flags that do not go together."""
    if args.plan and args.mlflow is not None:
        raise UsageError("--mlflow: logs a study's trials; not with --plan")
    if args.mlflow_system_metrics and args.mlflow is None:
        raise UsageError("--mlflow-system-metrics: logs to the study's MLflow run; give --mlflow URI too")
    if args.plan and args.resume:
        raise UsageError("--plan: plans a new study; drop --resume")
    if args.resume:
        refuse_on_resume(args)
    if not args.plan and args.sigma is not None:
        raise UsageError("--sigma: only with --plan")


def _check_design_options(settings: StudySettings) -> None:
    """The margin and budget of a decision belong to the designs that decide (the answer,
    a confirmation)."""
    if settings.design in ("answer", "confirm"):
        return
    for key, flag in (("delta", "--delta"), ("budget", "--budget")):
        if settings.space_options.get(key) is not None:
            raise UsageError(f"{flag}: only with --design answer (or --space kmap_confirm), which decide; this study's design is "
                             f"{settings.design}")


def _start(run: StudyRun, *, verbose: bool = False) -> None:
    """Before anything trains: a budget the k-vs-C analysis cannot fit is said; then the run
    starts (:func:`runners.start_run`; Ray's errors as one line, nothing created)."""
    if run.create:
        warning = budget_warning(run.settings, run.space)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    try:
        start_run(run, log=print, verbose=verbose)
    except ValueError as exc:
        raise usage_error(exc, run.space) from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m study.run``: resolve the flags, then ``--plan``, or create (resume) and run the study."""
    args = build_parser().parse_args(argv)
    _process_state()
    if args.list_spaces:
        _list_spaces()
        return 0
    _check_flags(args)
    run = resolve_run(args, note=lambda text: print(text, file=sys.stderr))
    settings, space = run.settings, run.space
    _check_design_options(settings)
    if args.plan:
        return _plan(args, settings, space)
    _start(run, verbose=args.verbose)
    progress = Progress(brief=args.quiet)
    progress.line(_headline(settings, space, run.create))
    started = time.monotonic()
    run_dir = Path(settings.run_dir)
    resume_cmd = f"python -m study.run --out {_relative(str(run_dir.parent))} --name {settings.name} --resume"
    if settings.design == "answer":
        return _answer(settings, progress, resume_cmd)
    next_round = confirm_rounds(settings, log=progress.line) if settings.design == "confirm" else None
    try:
        bridge = run_study(settings, progress=progress, run=run, next_round=next_round)
    except KeyboardInterrupt:
        print(f"interrupted; trials in flight were recorded failed and enqueued again. Continue with: {resume_cmd}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _summary(bridge, settings, started)
    if bridge.interrupted:
        print(f"interrupted; continue with: {resume_cmd}")
        return EXIT_INTERRUPTED
    if settings.design == "confirm":
        _decision(settings, bridge)
    return _exit_status(bridge)


def _decision(settings: StudySettings, bridge: StudyBridge) -> None:
    """A confirmation's decision, in words and in its files (:mod:`runners.cli._confirm`)."""
    import analysis
    from analysis.confirm import confirmation_decision

    fr = analysis.frames_of(bridge.study, settings=settings.to_dict(), run_dir=Path(settings.run_dir))
    decision = confirmation_decision(fr, stopped=bridge.done() or "")
    path = write_decision(settings.run_dir, decision, frames=fr, settings=settings.to_dict(),
                          evidence=[f"the study it confirms ({settings.space_options.get('source')}): "
                                    f"{settings.space_options.get('source_verdict', 'n/a')}"])
    print("\n".join(decision.lines()))
    print(f"decision: {_relative(str(path))} (and decision.json, decision.png)")


def _answer(settings: StudySettings, progress: Progress, resume_cmd: str) -> int:
    """The answer design's stages (:mod:`runners.cli._answer`)."""
    try:
        run_answer(settings, progress, say=progress.line)
    except KeyboardInterrupt:
        print(f"interrupted; what ran is kept. Continue with: {resume_cmd}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as exc:
        print(f"{PROG}: {' '.join(str(exc).split())} (exit status {EXIT_NOTHING_FINISHED})", file=sys.stderr)
        return EXIT_NOTHING_FINISHED
    return 0


def _exit_status(bridge: StudyBridge) -> int:
    """The run's exit status (:func:`runners.run_outcome`: 0, or 3 when failed trials stopped
    it, 4 when no trial of the study finished), a non-zero one said on the last line."""
    outcome = run_outcome(bridge)
    if outcome.line:
        sys.stdout.flush()
        print(f"{PROG}: {outcome.line} (exit status {outcome.status})", file=sys.stderr, flush=True)
    return outcome.status


if __name__ == "__main__":
    run_cli(main, prog=PROG)
