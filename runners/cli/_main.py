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

Bad input is one line on stderr and exit status 2; everything is checked before anything
is created (a damaged ``--data`` cache included). A run's exit status says how it ended
(:func:`runners.run_outcome`): 0 when it ended as asked and the study has a finished trial,
3 when failed trials stopped it, 4 when no trial of the study has finished, 130 when
interrupted; a non-zero status ends with a line naming the first failure's error. The
study's module :mod:`study.run` hands its command line to :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from argparse import ArgumentTypeError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners._algorithms import MULTI_OBJECTIVE_PRUNERS, MULTI_OBJECTIVE_SAMPLERS, PRUNERS, SAMPLERS, option_help
from runners._outcome import EXIT_STATUS_HELP
from runners._settings import DESIGNS, RESUMABLE, RUNNERS, SEED_MODES
from runners.cli._resolve import DEFAULT_PROXY, DEFAULT_RECIPE, refuse_on_resume, resolve_settings, space_flags, usage_error
from study.cli import EXIT_INTERRUPTED, ArgumentParser, UsageError, run_cli
from study.io import write_json

if TYPE_CHECKING:  # annotations only
    from runners._bridge import StudyBridge
    from runners._settings import StudySettings
    from search_spaces import Space


__all__ = ["main", "build_parser", "resolve_settings", "DEFAULT_PROXY", "DEFAULT_RECIPE", "RESUMABLE", "PROG"]

PROG = "python -m study.run"


def _number_at_least(lo: float, *, integer: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite number (an integer with ``integer``) of at least ``lo``."""
    what = "an integer" if integer else "a number"

    def parse(text: str) -> Any:
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or v < lo:
            raise ArgumentTypeError(f"must be >= {lo:g}, got {text}" if integer else f"expected a number >= {lo:g}, got {text!r}")
        return v

    return parse


def _add_space_flags(p: ArgumentParser) -> None:
    """The options the registered spaces declare, each as its flag, help prefixed by the
    spaces that take it; the value lands in ``args.<key>`` (None when not given)."""
    taken = set(vars(p.parse_args([])))
    g = p.add_argument_group("the spaces' own options")
    for flag, (option, owners) in space_flags().items():
        if option.key in taken:
            raise ValueError(f"space option {option.key!r} ({flag}): the command line already has a value of that name")
        g.add_argument(flag, dest=option.key, metavar=option.metavar, help=f"{', '.join(owners)}: {option.help}")


def build_parser() -> ArgumentParser:
    """The flags of ``python -m study.run`` (those of the spaces' own options from their declarations)."""
    p = ArgumentParser(
        prog=PROG,
        description="Run a search space as an Optuna study (sampling and pruning by Optuna, trials on Ray Tune or locally).",
        epilog=EXIT_STATUS_HELP,
    )
    count, natural = _number_at_least(1, integer=True), _number_at_least(0, integer=True)
    p.add_argument("--space", help="a registered space (see --list-spaces) or path/to/file.py:function")
    p.add_argument("--list-spaces", action="store_true", help="print every space's name, description and default budget, and exit")
    p.add_argument("--name", help="the study's name and folder under --out (default: the space's name, numbered if taken)")
    p.add_argument("--resume", action="store_true", help="continue the study --name (or the latest of --space): trials left running are re-run")
    g = p.add_argument_group("where")
    g.add_argument("--runner", choices=RUNNERS, default=None, help="ray (default): Ray Tune; local: in-process, one trial at a time")
    g.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: start a local Ray for the run)")
    g.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<out>/<name>/study.db); postgresql://user@host/db for a "
                   "cluster, or journal:PATH for Optuna's journal file on a shared filesystem. A password is never written down: "
                   "give it again on --resume, or in STUDY_STORAGE_PASSWORD, PGPASSWORD or ~/.pgpass")
    g.add_argument("--out", default="runs", help="folder that holds the study folders (default: runs)")
    g.add_argument("--mlflow", metavar="URI", help="also log the study to MLflow (pip install -e '.[mlflow]'): sqlite:///PATH/mlflow.db "
                   "or http://HOST:PORT (a tracking server); one run per trial, nested under the study's run; the Optuna storage "
                   "stays the record. An option of this run: give it again on --resume")
    g.add_argument("--mlflow-system-metrics", action="store_true", help="with --mlflow: also log the driver node's CPU, memory, "
                   "disk, network and GPU (where present) use to the study's run, every 10 s (MLflow's system metrics)")
    g = p.add_argument_group("design and budget")
    g.add_argument("--design", choices=tuple(DESIGNS), help="search (default): find good configurations; inference: measure an effect "
                   "(random sampling, no pruning, 2 replicates, a larger validation set) - for spaces that have it (eca_kmap)")
    g.add_argument("--replicates", type=count, help="runs of every configuration, each with its own seed (default: 1; inference 2)")
    g.add_argument("--seed-mode", choices=SEED_MODES, help="per_trial (default): each trial trains from a seed derived from --seed and "
                   "its number; fixed: every trial from --seed")
    g.add_argument("--trials", type=count, help="configurations to finish, each run --replicates times (default: the space's budget)")
    g.add_argument("--plan", action="store_true", help="print the trials and trial-epochs the k-vs-C test needs for power 0.8 "
                   "(and what this budget detects), and exit; measures the noise with a short pilot unless --sigma is given")
    g.add_argument("--sigma", type=_number_at_least(0), help="--plan: the seed-to-seed noise of top-1 per trial, points (default: a pilot)")
    g.add_argument("--effect", type=_number_at_least(0), default=0.5, help="--plan: the k effect to detect, points (default 0.5)")
    g.add_argument("--epochs", type=count, help="epochs per trial (default: the space's budget)")
    g.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    g = p.add_argument_group("what")
    g.add_argument("--seed", type=natural, help="seed of the sampler and of the trials' seeds (default 0)")
    g.add_argument("--backbone", help="backbone (default resnet18); see study.models.list_backbones()")
    g.add_argument("--stem", help="imagenet or lowres (default lowres, for low-resolution proxies)")
    g.add_argument("--width", type=float, help="fix the width multiplier (default: the space decides)")
    g.add_argument("--proxy", help="a proxy preset (study.data.list_proxies(); default: a 10-class synthetic proxy at 32 px)")
    g.add_argument("--data", help="a cache folder written by `python -m study.data prepare`")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field: proxy.<field>=V or recipe.<field>=V (JSON values), repeatable")
    g.add_argument("--objectives", help="top1, or top1 plus costs to minimise: top1,macs | top1,params | top1,latency")
    _add_space_flags(p)
    g = p.add_argument_group("Optuna")
    g.add_argument("--sampler", choices=SAMPLERS, help="default: the space's (tpe; grid for paper_table2; nsga2 for several "
                   f"objectives); several objectives: {', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
    g.add_argument("--n-startup-trials", type=int, help=option_help("sampler", "startup"))
    g.add_argument("--population-size", type=int, help=option_help("sampler", "population_size"))
    g.add_argument("--pruner", choices=PRUNERS, help="default pareto (none for the inference and confirm designs): prune a trial "
                   "whose best top-1 at an epoch is below the --pruner-percentile of the finished trials that cost no more "
                   "(in the study's cost objectives; all of them for one objective) at that epoch; several objectives: "
                   f"{', '.join(MULTI_OBJECTIVE_PRUNERS)}")
    g.add_argument("--pruner-warmup", type=int, help=option_help("pruner", "warmup"))
    g.add_argument("--pruner-startup", type=int, help=option_help("pruner", "startup"))
    g.add_argument("--pruner-percentile", type=int, help=option_help("pruner", "percentile"))
    g.add_argument("--min-resource", type=int, help=option_help("pruner", "min_resource"))
    g.add_argument("--reduction-factor", type=int, help=option_help("pruner", "reduction_factor"))
    g = p.add_argument_group("resources")
    g.add_argument("--cpus-per-trial", type=_number_at_least(0), help="CPUs per trial (fractions allowed; default 1); also torch's threads")
    g.add_argument("--gpus-per-trial", type=_number_at_least(0), help="GPUs per trial (fractions allowed; default 0)")
    g.add_argument("--max-concurrent", type=count, help="trials at once (default 2)")
    g.add_argument("--max-failures", type=natural, help="retries of a trial whose Ray worker died (default 1)")
    g.add_argument("--device", help="torch device for training (default: cuda when available, else cpu)")
    g.add_argument("--stage-data", action="store_true", default=None,
                   help="ship the proxy cache to every Ray node's local disk (default: every node reads it at its path, checked first)")
    g.add_argument("--quiet", action="store_true", help="one line per trial (when it ends), no line per epoch, and the summary")
    g.add_argument("--verbose", action="store_true", help="also Ray's own lines: its start-up, its warnings, the trials' output")
    return p


# ----------------------------------------------------------------------------- output


def _list_spaces() -> None:
    from search_spaces import list_spaces

    infos = list_spaces()
    width = max(len(i.name) for i in infos)
    for i in infos:
        other = "".join(f" [--design {d}: {i.budget_for(d)}]" for d in i.designs[1:])
        print(f"{i.name:<{width}}  {str(i.budget):<22}  sampler {i.sampler:<5}  {i.description}{other}")


def _summary(bridge: StudyBridge, settings: StudySettings, started: float) -> None:
    from study.storage import redact

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
        print(f"best trial {t.number}: top1 {t.value:.2f}  {' '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in t.params.items())}")
        stages = t.user_attrs.get("stages") or []
        if stages:
            desc = ", ".join(
                f"s{s['stage']}: C={s['channels']} {s['kind']}" + "".join(f" {k}={s[k]}" for k in ("k", "r", "groups") if s.get(k) is not None)
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
        line += f" ({s.concurrency} at once, {s.cpus_per_trial:g} CPU" + (f" + {s.gpus_per_trial:g} GPU" if s.gpus_per_trial else "") + " each)"
    return line


def _plan(args: argparse.Namespace, settings: StudySettings, space: Space) -> int:
    from runners.cli._plan import plan_study

    try:
        plan = plan_study(settings, space, effect=args.effect, sigma=args.sigma, log=lambda s: print(s, file=sys.stderr))
    except ValueError as exc:
        raise usage_error(exc) from None
    print(plan.text(settings, space.name))
    return 0


# ----------------------------------------------------------------------------- main


def _process_state() -> None:
    """The process-wide state of the study command line, set at its boundary (the library
    sets none): Optuna logs warnings and errors only (the command line prints its own
    progress), and Optuna's ExperimentalWarnings (metric names, ...) are not shown."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m study.run``: resolve the flags, then ``--plan``, or create (resume) and run the study."""
    args = build_parser().parse_args(argv)
    _process_state()
    if args.list_spaces:
        _list_spaces()
        return 0
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
    settings, space, create = resolve_settings(args, note=lambda text: print(text, file=sys.stderr))
    if settings.runner == "local" and settings.proxy.source == "cache":  # a damaged cache trains nothing (a resumed
        from study.data import check_cache  # study's too; the Ray runner checks it on every node that runs trials)

        check_cache(settings.proxy.data)
    if args.plan:
        return _plan(args, settings, space)

    from runners import Progress, connect, open_study, run_study

    if create:  # before anything trains: a budget the k-vs-C analysis cannot fit
        from runners.cli._plan import budget_warning

        warning = budget_warning(settings, space)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    run_dir = Path(settings.run_dir)
    made_dir = not run_dir.exists()
    if args.mlflow is not None:  # before anything is created: MLflow installed, the URI well-formed, a server answering
        from study.tracking import check_system_metrics, check_tracking_uri

        try:
            check_tracking_uri(args.mlflow, name="--mlflow")
            if args.mlflow_system_metrics:
                check_system_metrics(name="mlflow_system_metrics")
        except ValueError as exc:
            raise usage_error(exc) from None
    progress = Progress(brief=args.quiet)
    if settings.runner == "ray":  # connect first: a cluster that cannot hold a trial, or a node
        # that cannot read the data, creates nothing
        from runners._ray_tune import prepare_study_data

        try:
            connect(settings, verbose=args.verbose)  # (Ray shuts itself down when this process exits)
            prepare_study_data(settings, log=print)
        except ValueError as exc:
            raise usage_error(exc) from None
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {run_dir} ({exc.strerror or exc})") from None
        try:
            study = open_study(settings, space, create=True)
        except BaseException as exc:
            if made_dir:  # nothing half-created
                shutil.rmtree(run_dir, ignore_errors=True)
            if isinstance(exc, ValueError):
                raise usage_error(exc) from None
            raise
    else:
        try:
            study = open_study(settings, space, create=False)
        except ValueError as exc:
            raise usage_error(exc) from None
    # atomically: a driver killed while writing must not leave a settings.json --resume cannot read
    write_json(run_dir / "settings.json", settings.to_dict())
    progress.line(_headline(settings, space, create))
    started = time.monotonic()
    resume_cmd = f"python -m study.run --out {_relative(str(run_dir.parent))} --name {settings.name} --resume"
    try:
        bridge = run_study(settings, space=space, resume=not create, progress=progress, study=study, mlflow=args.mlflow,
                           mlflow_system_metrics=args.mlflow_system_metrics)
    except KeyboardInterrupt:
        print(f"interrupted; trials in flight were recorded failed and enqueued again. Continue with: {resume_cmd}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _summary(bridge, settings, started)
    if bridge.interrupted:
        print(f"interrupted; continue with: {resume_cmd}")
        return EXIT_INTERRUPTED
    return _exit_status(bridge)


def _exit_status(bridge: StudyBridge) -> int:
    """The run's exit status (:func:`runners.run_outcome`: 0, or 3 when failed trials stopped
    it, 4 when no trial of the study finished), a non-zero one said on the last line."""
    from runners import run_outcome

    outcome = run_outcome(bridge)
    if outcome.line:
        sys.stdout.flush()
        print(f"{PROG}: {outcome.line} (exit status {outcome.status})", file=sys.stderr, flush=True)
    return outcome.status


if __name__ == "__main__":
    run_cli(main, prog=PROG)
