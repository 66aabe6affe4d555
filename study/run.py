"""``python -m study.run``: run a named search space as an Optuna study, on Ray Tune or locally.

    python -m study.run --space eca_kmap                 # ~10 min on a 2-core CPU, synthetic proxy
    python -m study.run --list-spaces
    python -m study.run --space se_ratio --proxy in100-32 --trials 40 --epochs 10 --gpus-per-trial 0.5
    python -m study.run --space eca_kmap --address auto --storage postgresql://user@db/optuna
    python -m study.run --name eca_kmap --resume         # continue after the driver died
    python -m study.run --space my_spaces.py:define --runner local --trials 4

A study lives in ``<out>/<name>/`` (default ``runs/<name>``): ``study.db`` (the Optuna
storage, unless ``--storage`` names another), ``settings.json`` (the resolved settings),
``trials/<number>/config.json`` and ``history.json``, and Ray's result folder ``ray/``.
The name defaults to the space's name (``eca_kmap``, then ``eca_kmap-2``, ...).

The default proxy is the built-in synthetic one at 32 px shrunk to 10 classes x 50 training
and 20 validation images, so the default budget (see ``--list-spaces``) finishes in about
ten minutes on two CPU cores; ``--proxy NAME`` picks a preset (``synthetic-small``:
10 classes at 16 px for smoke tests), ``--data DIR`` a cache from ``python -m study.data
prepare``, and ``--set proxy.KEY=VALUE`` / ``--set recipe.KEY=VALUE`` change one field of
the proxy or the training recipe (e.g. ``--set proxy.images_per_class=8 --set
recipe.batch_size=32``).

Bad input is one line on stderr and exit status 2; everything is checked before anything
is created.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from study._cli import ArgumentParser, UsageError, run_cli

__all__ = ["main", "build_parser", "DEFAULT_PROXY", "RESUMABLE", "resolve_settings"]

#: the default proxy: the synthetic preset shrunk to 10 classes so the default budget
#: (20 trials x 3 epochs, widths 0.25-1.0) takes a few minutes on two CPU cores
DEFAULT_PROXY = ("synthetic", {"num_classes": 10, "images_per_class": 50, "val_per_class": 20})
#: the default training recipe of a study's trials (``--epochs`` and ``--set recipe.*`` change it).
#: lr 0.05 for batch 64 (0.1 per 128): at 0.2 the width-1.0 ResNet-18 stayed at chance on the
#: default proxy for 3 epochs (BN statistics blew up), while at 0.05 widths 0.25 / 0.5 / 1.0
#: reached 48 / 82 / 77 % top-1 after 3 epochs (10 classes; chance 10 %).
DEFAULT_RECIPE = {"batch_size": 64, "lr": 0.05, "warmup_epochs": 0.5}
#: settings a ``--resume`` may change; every other flag must agree with the stored study
RESUMABLE = ("trials", "timeout", "runner", "address", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "device")

_PRUNER_FLAGS = {"warmup": "--pruner-warmup", "startup": "--pruner-startup", "min_resource": "--min-resource", "reduction_factor": "--reduction-factor"}
_SAMPLER_FLAGS = {"startup": "--n-startup-trials", "population_size": "--population-size"}


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"expected a number >= 0, got {text!r}")
    return v


def build_parser() -> ArgumentParser:
    from runners import PRUNERS, RUNNERS, SAMPLERS

    p = ArgumentParser(
        prog="python -m study.run",
        description="Run a search space as an Optuna study (sampling and pruning by Optuna, trials on Ray Tune or locally).",
    )
    p.add_argument("--space", help="a registered space (see --list-spaces) or path/to/file.py:function")
    p.add_argument("--list-spaces", action="store_true", help="print every space's name, description and default budget, and exit")
    p.add_argument("--name", help="the study's name and folder under --out (default: the space's name, numbered if taken)")
    p.add_argument("--resume", action="store_true", help="continue the study --name (or the latest of --space): trials left running are re-run")
    g = p.add_argument_group("where")
    g.add_argument("--runner", choices=RUNNERS, default=None, help="ray (default): Ray Tune; local: in-process, one trial at a time")
    g.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: start a local Ray for the run)")
    g.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<out>/<name>/study.db); postgresql://... for a cluster")
    g.add_argument("--out", default="runs", help="folder that holds the study folders (default: runs)")
    g = p.add_argument_group("budget")
    g.add_argument("--trials", type=int, help="finished (complete + pruned) trials to reach (default: the space's budget)")
    g.add_argument("--epochs", type=int, help="epochs per trial (default: the space's budget)")
    g.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    g = p.add_argument_group("what")
    g.add_argument("--seed", type=int, help="seed of the sampler and of every trial (default 0)")
    g.add_argument("--backbone", help="backbone (default resnet18); see study.models.list_backbones()")
    g.add_argument("--stem", help="imagenet or lowres (default lowres, for low-resolution proxies)")
    g.add_argument("--width", type=float, help="fix the width multiplier (default: the space decides)")
    g.add_argument("--proxy", help="a proxy preset (study.data.list_proxies(); default: a 10-class synthetic proxy at 32 px)")
    g.add_argument("--data", help="a cache folder written by `python -m study.data prepare`")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field: proxy.<field>=V or recipe.<field>=V (JSON values), repeatable")
    g.add_argument("--objectives", help="top1, or top1 plus costs to minimise: top1,macs | top1,params | top1,latency")
    g = p.add_argument_group("Optuna")
    g.add_argument("--sampler", choices=SAMPLERS, help="default: the space's (tpe; grid for paper_table2; nsga2 for several objectives)")
    g.add_argument("--n-startup-trials", type=int, help="random trials before TPE / CMA-ES model (default 5)")
    g.add_argument("--population-size", type=int, help="NSGA-II population (default 8)")
    g.add_argument("--pruner", choices=PRUNERS, help="default median (none for several objectives)")
    g.add_argument("--pruner-warmup", type=int, help="median: the first epoch at which a trial may be pruned (Optuna's n_warmup_steps; default 2)")
    g.add_argument("--pruner-startup", type=int, help="median: trials finished before pruning starts (default 3)")
    g.add_argument("--min-resource", type=int, help="sha / hyperband: epochs of the first rung (default 1)")
    g.add_argument("--reduction-factor", type=int, help="sha / hyperband: keep 1/factor per rung (default 3)")
    g = p.add_argument_group("resources")
    g.add_argument("--cpus-per-trial", type=_positive_float, help="CPUs per trial (fractions allowed; default 1); also torch's threads")
    g.add_argument("--gpus-per-trial", type=_positive_float, help="GPUs per trial (fractions allowed; default 0)")
    g.add_argument("--max-concurrent", type=int, help="trials at once (default 2)")
    g.add_argument("--max-failures", type=int, help="retries of a trial whose Ray worker died (default 1)")
    g.add_argument("--device", help="torch device for training (default: cuda when available, else cpu)")
    g.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    return p


# ----------------------------------------------------------------------------- resolution


def _parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"proxy": {}, "recipe": {}}
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or section not in out or not field:
            raise UsageError(f"--set: expected proxy.FIELD=VALUE or recipe.FIELD=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[section][field] = value
    return out


def _resolve_proxy(args: Any, overrides: dict[str, Any]) -> Any:
    from study.config import ProxySpec
    from study.data import list_proxies, proxy_preset, read_manifest

    if args.proxy is not None and args.proxy not in list_proxies():
        raise UsageError(f"--proxy: unknown preset {args.proxy!r} (valid: {', '.join(list_proxies())})")
    if args.data is not None:
        if args.proxy is not None and proxy_preset(args.proxy).source != "cache":
            raise UsageError(f"--data: preset {args.proxy!r} is generated ({proxy_preset(args.proxy).source}) and reads no data folder")
        try:
            manifest = read_manifest(args.data)  # a missing or incomplete folder is one clear line
        except (OSError, ValueError) as exc:
            raise UsageError(f"--data: {exc}") from None
        fields = {"source": "cache", "data": str(Path(args.data).resolve())}
        if args.proxy is not None:
            preset = proxy_preset(args.proxy)
            spec = ProxySpec.from_dict({**preset.to_dict(), **fields})
        else:
            spec = ProxySpec(**fields, resolution=int(manifest["resolution"]), num_classes=int(manifest["num_classes"]))
    elif args.proxy is not None:
        spec = proxy_preset(args.proxy)
        if spec.source == "cache":
            read_manifest(spec.data)
    else:
        name, fields = DEFAULT_PROXY
        spec = proxy_preset(name, **fields)
    if overrides:
        spec = ProxySpec.from_dict({**spec.to_dict(), **overrides})
    return spec


def _derived_names(base: str) -> list[str]:
    return [base] + [f"{base}-{i}" for i in range(2, 1000)]


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._-") or "study"


def _check_writable(folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder."""
    p = folder
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"--out: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"--out: cannot write to {p}")


def _dry_run(space: Any, settings: Any) -> None:
    """Run the space (and its reference points) on an in-memory study: an invalid backbone,
    width, stem or proxy fails here, before anything is created."""
    import optuna

    from runners import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kw = settings.space_settings()
    make_sampler(settings, space.grid_space(**kw))  # e.g. --sampler grid without a grid
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=settings.seed))
    for name, params in space.reference_points(**kw):
        study.enqueue_trial(params)
    for _ in range(len(space.reference_points(**kw)) + 1):
        trial = study.ask()
        try:
            space.suggest(trial, **kw)
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"--space {settings.space}: {exc}") from None
        except Exception as exc:  # a user's space with a bug: one line, not a traceback
            raise UsageError(f"--space {settings.space}: {type(exc).__name__}: {exc}") from None
        study.tell(trial, 0.0)


def resolve_settings(args: Any, *, note=print) -> tuple[Any, Any, bool]:
    """Check every flag and resolve the study's settings, creating nothing.

    Returns ``(settings, space, created)`` where ``created`` is False for ``--resume``.
    """
    from runners import PRUNER_OPTIONS, SAMPLER_OPTIONS, StudySettings, check_storage_url, study_exists
    from runners._optuna import normalize_storage_url
    from search_spaces import get_space, space_names
    from study import record
    from study.config import Recipe

    # -- contradictions between flags
    runner = args.runner or "ray"
    if args.address and runner == "local":
        raise UsageError("--address: a Ray cluster address needs --runner ray (the local runner runs in-process)")
    if runner == "local" and args.gpus_per_trial:
        raise UsageError("--gpus-per-trial: Ray resources need --runner ray (use --device cuda with --runner local)")
    if runner == "local" and args.max_concurrent not in (None, 1):
        raise UsageError("--max-concurrent: --runner local runs one trial at a time")
    for name in ("trials", "epochs", "max_concurrent", "n_startup_trials", "population_size", "reduction_factor", "min_resource"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}: must be >= 1, got {v}")
    for name in ("seed", "max_failures", "pruner_warmup", "pruner_startup"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise UsageError(f"--{name.replace('_', '-')}: must be >= 0, got {v}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout: must be a number of seconds > 0, got {args.timeout:g}")
    objectives = None
    if args.objectives is not None:
        objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
        for o in objectives:
            if o not in record.OBJECTIVES:
                raise UsageError(f"--objectives: unknown objective {o!r} (valid: {', '.join(record.OBJECTIVES)})")
        if not objectives or objectives[0] != "top1" or len(set(objectives)) != len(objectives):
            raise UsageError(f"--objectives: must start with top1 and name each cost once, e.g. top1,macs; got {args.objectives!r}")
    if args.storage is not None:
        try:
            check_storage_url(args.storage)
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
        if args.storage.startswith("sqlite:///") and not args.storage.startswith("sqlite:///:memory:"):
            _check_writable(Path(args.storage[len("sqlite:///"):]).parent)
    out = Path(args.out)
    _check_writable(out)
    overrides = _parse_overrides(args.overrides)

    # -- resume: the stored settings, changed only where a resume may change them
    if args.resume:
        return _resolve_resume(args, out, runner, objectives, overrides)

    if not args.space:
        raise UsageError("--space is required (see --list-spaces)")
    try:
        space = get_space(args.space)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    from study.models import STEMS, list_backbones

    if args.backbone is not None and args.backbone not in list_backbones():
        raise UsageError(f"--backbone: unknown backbone {args.backbone!r} (valid: {', '.join(list_backbones())})")
    if args.stem is not None and args.stem not in STEMS:
        raise UsageError(f"--stem: must be one of {', '.join(STEMS)}, got {args.stem!r}")
    multi = objectives is not None and len(objectives) > 1
    sampler = args.sampler or ("nsga2" if multi and space.info.sampler == "tpe" else space.info.sampler)
    pruner = args.pruner or ("none" if multi else "median")
    if multi and pruner != "none":
        note(f"note: --pruner {pruner} ignored: a multi-objective study is not pruned (Optuna takes no intermediate values for several objectives)")
        pruner = "none"
    pruner_options = {k: getattr(args, f.lstrip("-").replace("-", "_")) for k, f in _PRUNER_FLAGS.items()
                      if getattr(args, f.lstrip("-").replace("-", "_")) is not None}
    for k in pruner_options:
        if k not in PRUNER_OPTIONS[pruner]:
            raise UsageError(f"{_PRUNER_FLAGS[k]}: pruner {pruner!r} takes no such option (it takes: {', '.join(_PRUNER_FLAGS[o] for o in PRUNER_OPTIONS[pruner]) or 'none'})")
    sampler_options = {k: getattr(args, f.lstrip("-").replace("-", "_")) for k, f in _SAMPLER_FLAGS.items()
                       if getattr(args, f.lstrip("-").replace("-", "_")) is not None}
    for k in sampler_options:
        if k not in SAMPLER_OPTIONS[sampler]:
            raise UsageError(f"{_SAMPLER_FLAGS[k]}: sampler {sampler!r} takes no such option")
    if sampler == "grid" and space.grid is None:
        raise UsageError(f"--sampler grid: space {space.name!r} defines no grid (spaces with one: paper_table2)")

    proxy = _resolve_proxy(args, overrides["proxy"])
    epochs = args.epochs or space.info.budget.epochs
    recipe_fields = {**DEFAULT_RECIPE, **overrides["recipe"], "epochs": epochs}
    if "epochs" in overrides["recipe"] and args.epochs is not None and overrides["recipe"]["epochs"] != args.epochs:
        raise UsageError("--set recipe.epochs contradicts --epochs")
    if "epochs" in overrides["recipe"]:
        recipe_fields["epochs"] = overrides["recipe"]["epochs"]
    try:
        recipe_fields["warmup_epochs"] = min(float(recipe_fields["warmup_epochs"]), float(recipe_fields["epochs"]))
    except (TypeError, ValueError):
        raise UsageError(f"--set: recipe.epochs and recipe.warmup_epochs must be numbers, got "
                         f"{recipe_fields['epochs']!r} and {recipe_fields['warmup_epochs']!r}") from None
    recipe = Recipe.from_dict(recipe_fields)

    # -- the name and the folder
    if args.name is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", args.name):
            raise UsageError(f"--name: use letters, digits, '.', '_' or '-', got {args.name!r}")
        name = args.name
        if (out / name).exists():
            raise UsageError(f"--name: a study {name!r} already exists in {out / name}; pass --resume to continue it, or choose another --name")
        if args.storage and study_exists(args.storage, name):
            raise UsageError(f"--name: a study named {name!r} already exists in the storage; pass --resume to continue it, or choose another --name")
    else:
        base = _sanitize(space.name)
        name = next(n for n in _derived_names(base)
                    if not (out / n).exists() and not (args.storage and study_exists(args.storage, n)))
    run_dir = (out / name).resolve()
    storage = normalize_storage_url(args.storage) if args.storage else f"sqlite:///{run_dir / 'study.db'}"
    try:
        space_ref = args.space
        if args.space not in space_names() and ":" in args.space:  # a user's file: resumable from anywhere
            file, fn = args.space.rsplit(":", 1)
            space_ref = f"{Path(file).resolve()}:{fn}"
        settings = StudySettings(
            name=name,
            space=space_ref,
            storage=storage,
            run_dir=str(run_dir),
            trials=args.trials or space.info.budget.trials,
            runner=runner,
            address=args.address,
            timeout=args.timeout,
            seed=args.seed if args.seed is not None else 0,
            backbone=args.backbone or "resnet18",
            stem=args.stem or "lowres",
            width=args.width,
            proxy=proxy,
            recipe=recipe,
            sampler=sampler,
            sampler_options=sampler_options,
            pruner=pruner,
            pruner_options=pruner_options,
            objectives=objectives or ("top1",),
            cpus_per_trial=1.0 if args.cpus_per_trial is None else args.cpus_per_trial,
            gpus_per_trial=0.0 if args.gpus_per_trial is None else args.gpus_per_trial,
            max_concurrent=1 if runner == "local" else (args.max_concurrent or 2),
            max_failures=1 if args.max_failures is None else args.max_failures,
            device=args.device,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _dry_run(space, settings)
    return settings, space, True


def _resolve_resume(args: Any, out: Path, runner: str, objectives: Any, overrides: dict[str, dict[str, Any]]) -> tuple[Any, Any, bool]:
    from runners import StudySettings
    from runners._optuna import normalize_storage_url
    from search_spaces import get_space

    if args.name is not None:
        name = args.name
    elif args.space:
        base = _sanitize(get_space(args.space).name)
        existing = [n for n in _derived_names(base) if (out / n / "settings.json").exists()]
        if not existing:
            raise UsageError(f"--resume: no study of space {args.space!r} in {out} (give --name)")
        name = existing[-1]
    else:
        raise UsageError("--resume needs --name (or --space, to resume its latest study)")
    path = out / name / "settings.json"
    if not path.exists():
        raise UsageError(f"--resume: no study {name!r} in {out} (no {path})")
    stored = StudySettings.from_dict(json.loads(path.read_text()))
    # flags that define the study must agree with it
    fixed = {
        "space": args.space, "storage": args.storage and normalize_storage_url(args.storage), "epochs": args.epochs, "seed": args.seed, "backbone": args.backbone,
        "stem": args.stem, "width": args.width, "proxy": args.proxy, "data": args.data, "sampler": args.sampler, "pruner": args.pruner,
        "objectives": objectives,
    }
    stored_values = {
        "space": stored.space, "storage": stored.storage, "epochs": stored.recipe.epochs, "seed": stored.seed,
        "backbone": stored.backbone, "stem": stored.stem, "width": stored.width, "proxy": None, "data": stored.proxy.data,
        "sampler": stored.sampler, "pruner": stored.pruner, "objectives": tuple(stored.objectives),
    }
    for key, given in fixed.items():
        if given is None or (key == "space" and get_space(given).name == get_space(stored.space).name):
            continue
        if key == "data" and str(Path(given).resolve()) == stored_values["data"]:
            continue
        if key == "proxy" or given != stored_values[key]:
            raise UsageError(f"--{key}: a resumed study keeps its {key} ({stored_values[key]!r}); drop the flag or start a new study")
    if args.overrides:
        raise UsageError("--set: a resumed study keeps its proxy and recipe; drop --set or start a new study")
    for flag in ("n_startup_trials", "population_size", "pruner_warmup", "pruner_startup", "min_resource", "reduction_factor"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')}: a resumed study keeps its sampler and pruner options")
    changes: dict[str, Any] = {k: getattr(args, k) for k in RESUMABLE if getattr(args, k, None) is not None}
    if changes.get("runner", stored.runner) == "local":
        changes.update(address=None, max_concurrent=1, gpus_per_trial=0.0)
    try:
        settings = stored.replace(run_dir=str((out / name).resolve()), **changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return settings, get_space(settings.space), False


# ----------------------------------------------------------------------------- output


def _list_spaces() -> None:
    from search_spaces import list_spaces

    infos = list_spaces()
    width = max(len(i.name) for i in infos)
    for i in infos:
        print(f"{i.name:<{width}}  {str(i.budget):<22}  sampler {i.sampler:<5}  {i.description}")


def _summary(bridge: Any, settings: Any, started: float) -> None:
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
    from runners._optuna import redact

    print(f"study lives in {settings.run_dir} (storage {redact(settings.storage)}, study name {settings.name!r})")
    print(f"next: python -m analysis.report {_relative(settings.run_dir)}")


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        _list_spaces()
        return 0
    settings, space, create = resolve_settings(args, note=lambda text: print(text, file=sys.stderr))

    from runners import Progress, open_study, run_study

    run_dir = Path(settings.run_dir)
    made_dir = not run_dir.exists()
    progress = Progress(quiet=args.quiet)
    if settings.runner == "ray":  # connect first: a cluster that cannot hold a trial creates nothing
        from runners._ray_tune import connect

        connect(settings)  # (Ray shuts itself down when this process exits)
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create {run_dir} ({exc.strerror or exc})") from None
        try:
            study = open_study(settings, space, create=True)
        except BaseException:
            if made_dir:  # nothing half-created
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    else:
        study = open_study(settings, space, create=False)
    # atomically: a driver killed while writing must not leave a settings.json --resume cannot read
    tmp = run_dir / ".settings.json.tmp"
    tmp.write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
    os.replace(tmp, run_dir / "settings.json")
    what = "resuming" if not create else "study"
    progress.line(
        f"{what} {settings.name!r}: space {space.name}, {settings.trials} trials x {settings.recipe.epochs} epochs, "
        f"{settings.backbone}, proxy {settings.proxy.source} {settings.proxy.resolution}px/{settings.proxy.num_classes} classes, "
        f"sampler {settings.sampler}, pruner {settings.pruner}, runner {settings.runner}"
        + (f" ({settings.max_concurrent} at once, {settings.cpus_per_trial:g} CPU" + (f" + {settings.gpus_per_trial:g} GPU" if settings.gpus_per_trial else "") + " each)" if settings.runner == "ray" else "")
    )
    started = time.monotonic()
    resume_cmd = f"python -m study.run --out {_relative(str(run_dir.parent))} --name {settings.name} --resume"
    try:
        bridge = run_study(settings, space=space, resume=not create, progress=progress, study=study)
    except KeyboardInterrupt:
        print(f"interrupted; trials in flight were recorded failed and enqueued again. Continue with: {resume_cmd}", file=sys.stderr)
        return 130
    _summary(bridge, settings, started)
    if bridge.interrupted:
        print(f"interrupted; continue with: {resume_cmd}")
        return 130
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m study.run")
