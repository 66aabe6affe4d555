"""From the command line of ``python -m study.run`` to a study's :class:`StudySettings`.

The command line maps flags to settings fields and settles defaults (the space's budget and
sampler, the default proxy and recipe, a derived name); :class:`StudySettings` is the one
validator of the result. Library errors name fields ("trials: ...",
"pruner_options.warmup: ...", the path as data: :class:`study.validate.ConfigError`); the
rule of :func:`study.cli.flag_names` and :data:`FLAG_EXCEPTIONS` say them as flags.
Nothing here creates a file, a folder or a study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners._settings import DEFAULT_CONCURRENCY, DESIGNS, MULTI_OBJECTIVE_PRUNERS, RESUMABLE, StudySettings
from runners.cli._prepare import Preparation, preparation_for
from search_spaces import SpaceOption, declared_options
from study.cli import UsageError, as_usage_error
from study.validate import ConfigError

if TYPE_CHECKING:  # annotations only
    from runners._settings import Design, StudyDefinition
    from search_spaces import Budget, Space
    from study.config import ProxySpec, Recipe


__all__ = ["FLAG_EXCEPTIONS", "flag_table", "DEFAULT_PROXY", "DEFAULT_RECIPE", "resolve_settings", "usage_error", "space_flags", "refuse_on_resume"]

#: the default proxy: the synthetic preset shrunk to 10 classes so the default budget
#: (20 trials x 3 epochs, widths 0.25-1.0) takes a few minutes on two CPU cores
DEFAULT_PROXY = ("synthetic", {"num_classes": 10, "images_per_class": 50, "val_per_class": 20})
#: the default training recipe of a study's trials (``--epochs`` and ``--set recipe.*`` change it).
#: lr 0.05 for batch 64 (0.1 per 128): at 0.2 the width-1.0 ResNet-18 stayed at chance on the
#: default proxy for 3 epochs (BN statistics blew up), while at 0.05 widths 0.25 / 0.5 / 1.0
#: reached 48 / 82 / 77 % top-1 after 3 epochs (10 classes; chance 10 %).
DEFAULT_RECIPE = {"batch_size": 64, "lr": 0.05, "warmup_epochs": 0.5}

#: where a settings field path is not said as the flag of the same destination (the rule of
#: :func:`study.cli.flag_names`): field path (or prefix ending in ".") -> the flag that sets it
FLAG_EXCEPTIONS: dict[str, str] = {
    "run_dir": "--out", "proxy": "--set proxy", "recipe": "--set recipe", "proxy.": "--set proxy.", "recipe.": "--set recipe.",
    "sampler_options": "--sampler", "pruner_options": "--pruner",
    "sampler_options.startup": "--n-startup-trials", "sampler_options.population_size": "--population-size",
    "pruner_options.warmup": "--pruner-warmup", "pruner_options.startup": "--pruner-startup",
    "pruner_options.percentile": "--pruner-percentile",
    "pruner_options.min_resource": "--min-resource", "pruner_options.reduction_factor": "--reduction-factor",
}
#: option flags of the sampler and the pruner: settings option name -> argparse dest
_SAMPLER_ARGS = {"startup": "n_startup_trials", "population_size": "population_size"}
_PRUNER_ARGS = {"warmup": "pruner_warmup", "startup": "pruner_startup", "percentile": "pruner_percentile", "min_resource": "min_resource", "reduction_factor": "reduction_factor"}


def flag_table(space: Space | None = None) -> dict[str, str]:
    """:data:`FLAG_EXCEPTIONS` and the options the registered spaces declare
    (``space_options.KEY`` and a space's own ``KEY`` are said as the option's flag)."""
    options = declared_options().values() if space is None else space.options
    return {**FLAG_EXCEPTIONS, **{f"space_options.{o.key}": o.flag for o in options}, **{o.key: o.flag for o in options}}


def usage_error(exc: BaseException, space: Space | None = None) -> UsageError:
    """A library error as the command line's one-line error: a config error's field path
    said as the flag that sets it."""
    from runners.cli._main import build_parser

    return as_usage_error(exc, build_parser(), flag_table(space))


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


def _resolve_proxy(args: argparse.Namespace, overrides: dict[str, Any], design: Design = DESIGNS["search"], default: ProxySpec | None = None) -> ProxySpec:
    from study.config import ProxySpec
    from study.data import cache_proxy, check_cache, list_proxies, proxy_preset

    if args.proxy is not None and args.proxy not in list_proxies():
        raise UsageError(f"--proxy: unknown preset {args.proxy!r} (valid: {', '.join(list_proxies())})")
    if args.data is not None:
        if args.proxy is not None and proxy_preset(args.proxy).source != "cache":
            raise UsageError(f"--data: preset {args.proxy!r} is generated ({proxy_preset(args.proxy).source}) and reads no data folder")
        # a preset keeps its own resolution and classes; else the cache's (as study.train --data)
        base, keep = (proxy_preset(args.proxy), ("resolution", "num_classes")) if args.proxy is not None else (None, ())
        try:  # a missing or incomplete folder is one clear line
            spec = cache_proxy(str(Path(args.data).resolve()), base, keep=keep)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--data: {exc}") from None
    elif args.proxy is not None:
        spec = proxy_preset(args.proxy)
        if spec.source == "cache":  # its arrays whole before anything trains
            check_cache(spec.data)
    elif default is not None:  # e.g. the proxy of the study a confirmation checks
        spec = default
        if design.val_per_class and spec.source != "cache":
            spec = ProxySpec.from_dict({**spec.to_dict(), "val_per_class": max(design.val_per_class, spec.val_per_class or 0)})
    else:
        name, fields = DEFAULT_PROXY
        spec = proxy_preset(name, **{**fields, **({"val_per_class": design.val_per_class} if design.val_per_class else {})})
    if overrides:
        try:
            spec = ProxySpec.from_dict({**spec.to_dict(), **overrides}, "proxy")
        except ValueError as exc:
            raise usage_error(exc) from None
    return spec


def _resolve_recipe(args: argparse.Namespace, overrides: dict[str, Any], default_epochs: int, base: dict[str, Any] | None = None) -> Recipe:
    from study.config import Recipe

    if "epochs" in overrides and args.epochs is not None and overrides["epochs"] != args.epochs:
        raise UsageError("--set recipe.epochs contradicts --epochs")
    fields = {**(base or DEFAULT_RECIPE), **overrides}
    fields["epochs"] = overrides.get("epochs", args.epochs or default_epochs)
    try:
        fields["warmup_epochs"] = min(float(fields["warmup_epochs"]), float(fields["epochs"]))
    except (TypeError, ValueError):
        raise UsageError(f"--set: recipe.epochs and recipe.warmup_epochs must be numbers, got "
                         f"{fields['epochs']!r} and {fields['warmup_epochs']!r}") from None
    try:
        return Recipe.from_dict(fields, "recipe")
    except ConfigError as exc:  # recipe.lr came from --set recipe.lr; recipe.epochs from --epochs unless --set gave it
        if exc.field == "recipe.epochs" and "epochs" not in overrides:
            raise usage_error(ConfigError("epochs", exc.reason)) from None
        raise usage_error(exc) from None


def derived_names(base: str) -> list[str]:
    """A study's default name and its numbered successors (``eca_kmap``, ``eca_kmap-2``, ...)."""
    return [base] + [f"{base}-{i}" for i in range(2, 1000)]


def sanitize(name: str) -> str:
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


def _dry_run(space: Space, settings: StudySettings) -> None:
    """Run the space (and its reference points) on an in-memory study: an invalid backbone,
    width, stem or proxy fails here, before anything is created."""
    import optuna

    from runners._optuna import make_sampler

    kw = settings.space_settings()
    try:
        make_sampler(settings, space.grid_space(**kw))  # e.g. the grid sampler without a grid
    except ValueError as exc:
        raise usage_error(exc) from None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=settings.seed))
    references = space.reference_points(**kw)
    for _, params in references:
        study.enqueue_trial(params)
    for _ in range(len(references) + 1):
        trial = study.ask()
        try:
            space.suggest(trial, **kw)
        except ConfigError as exc:  # e.g. "kinds: ..." is --kinds
            raise usage_error(exc, space) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"--space {settings.space}: {' '.join(str(exc).split())}") from None
        except Exception as exc:  # a user's space with a bug: one line, not a traceback
            raise UsageError(f"--space {settings.space}: {type(exc).__name__}: {exc}") from None
        study.tell(trial, 0.0)


def space_flags() -> dict[str, tuple[SpaceOption, tuple[str, ...]]]:
    """Every option the registered spaces declare, by flag, with the spaces that take it."""
    from search_spaces import get_space, space_names

    return {flag: (option, tuple(n for n in space_names() if any(o.flag == flag for o in get_space(n).options)))
            for flag, option in declared_options().items()}


def _parse_option(option: SpaceOption, text: str) -> Any:
    try:
        return option.parse(text)
    except ValueError as exc:
        raise UsageError(f"{option.flag}: {' '.join(str(exc).split())}") from None


def _prepare_space(args: argparse.Namespace, space: Space) -> Preparation:
    """The values of the options ``space`` declares, parsed and prepared (by the space's
    preparation, if it has one); a space's flag given to another space is an error."""
    own = {option.flag for option in space.options}
    for flag, (option, owners) in space_flags().items():
        if flag not in own and getattr(args, option.key, None) is not None:
            raise UsageError(f"{flag}: " + (option.elsewhere or f"only the space(s) {', '.join(owners)} take it"))
    values: dict[str, Any] = {}
    for option in space.options:
        text = getattr(args, option.key, None)
        if text is None:
            if option.required:
                raise UsageError(f"{option.flag}: {option.required}")
            continue
        values[option.key] = _parse_option(option, text)
    return preparation_for(space.name)(values)


def refuse_on_resume(args: argparse.Namespace) -> None:
    """A space's flag that a resumed study cannot take (its ``on_resume`` says why)."""
    for flag, option in declared_options().items():
        if option.on_resume and getattr(args, option.key, None) is not None:
            raise UsageError(f"{flag}: {option.on_resume}")


def _comma_list(text: str | None) -> list[str] | None:
    """A comma-separated flag value (``--objectives``) as its items; None when not given."""
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _objectives(args: argparse.Namespace) -> tuple[str, ...] | None:
    items = _comma_list(args.objectives)
    return None if items is None else tuple(items)


def _options(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    return {k: getattr(args, dest) for k, dest in names.items() if getattr(args, dest) is not None}


def _check_output(args: argparse.Namespace) -> Path:
    """The output folder (``--out``), checked writable, and the ``--storage`` URL checked."""
    from study.storage import StorageURL, check_journal_writable, check_storage_url

    out = Path(args.out)
    _check_writable(out)
    if args.storage is not None:
        try:
            check_storage_url(args.storage)
            check_journal_writable(args.storage)
        except ValueError as exc:
            raise usage_error(exc) from None
        parsed = StorageURL.parse(args.storage)
        if parsed.driver == "sqlite" and parsed.database and parsed.database != ":memory:":
            _check_writable(Path(parsed.database).parent)
    return out


def _space_design_budget(args: argparse.Namespace) -> tuple[Space, Design, Budget]:
    """``--space``, ``--design`` (default: the space's) and the space's budget for that design."""
    from search_spaces import get_space

    if not args.space:
        raise UsageError("--space is required (see --list-spaces)")
    try:
        space = get_space(args.space)
    except ValueError as exc:
        raise usage_error(exc) from None
    design = DESIGNS.get(args.design or space.info.default_design)
    if design is None:
        raise UsageError(f"--design: must be one of {', '.join(DESIGNS)}, got {args.design!r}")
    try:
        budget = space.info.budget_for(design.name)
    except ValueError as exc:
        raise usage_error(exc) from None
    return space, design, budget


def _sampler_pruner(args: argparse.Namespace, space: Space, design: Design, objectives: tuple[str, ...],
                    note: Callable[[str], None]) -> tuple[str, str]:
    """The sampler and the pruner: the flags, else the design's or space's; a one-objective
    pruner with several objectives is refused (pruner options given) or replaced (with a note)."""
    multi = len(objectives) > 1
    space_sampler = design.sampler or space.info.sampler
    sampler = args.sampler or ("nsga2" if multi and space_sampler == "tpe" else space_sampler)
    pruner = args.pruner or (design.multi_objective_pruner if multi else design.pruner)
    if multi and pruner not in MULTI_OBJECTIVE_PRUNERS:
        if _options(args, _PRUNER_ARGS):  # options meant for the pruner that is not used: say so, not a puzzle about pareto's
            raise UsageError(f"--pruner: {pruner} prunes one objective (Optuna's pruners refuse several); with --objectives "
                             f"{','.join(objectives)} use --pruner {' or '.join(MULTI_OBJECTIVE_PRUNERS)}")
        note(f"note: --pruner {pruner} ignored: it prunes one objective (Optuna's pruners refuse several); "
             f"this study is pruned by {design.multi_objective_pruner}")
        pruner = design.multi_objective_pruner
    return sampler, pruner


def _study_name(args: argparse.Namespace, out: Path, space: Space) -> str:
    """``--name`` (checked: valid, and no study of that name in ``out`` or the storage), else
    the first free name derived from the space's."""
    from runners._study import study_exists

    if args.name is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", args.name):
            raise UsageError(f"--name: use letters, digits, '.', '_' or '-', got {args.name!r}")
        name = args.name
        if (out / name).exists():
            raise UsageError(f"--name: a study {name!r} already exists in {out / name}; pass --resume to continue it, or choose another --name")
        if args.storage and study_exists(args.storage, name):
            raise UsageError(f"--name: a study named {name!r} already exists in the storage; pass --resume to continue it, or choose another --name")
        return name
    return next(n for n in derived_names(sanitize(space.name))
                if not (out / n).exists() and not (args.storage and study_exists(args.storage, n)))


def _space_ref(space: str) -> str:
    """``--space`` as recorded: a user's ``file:function`` with the file's absolute path (resumable from anywhere)."""
    from search_spaces import space_names

    if space not in space_names() and ":" in space:
        file, fn = space.rsplit(":", 1)
        return f"{Path(file).resolve()}:{fn}"
    return space


def resolve_settings(args: argparse.Namespace, *, note: Callable[[str], None] = print) -> tuple[StudySettings, Space, bool]:
    """Map the parsed flags to the study's settings, creating nothing.

    Returns ``(settings, space, created)`` where ``created`` is False for ``--resume``.
    """
    from study.storage import normalize_storage_url

    runner = args.runner or "ray"
    out = _check_output(args)
    overrides = _parse_overrides(args.overrides)
    if args.resume:
        return _resolve_resume(args, out, overrides)

    space, design, budget = _space_design_budget(args)
    objectives = _objectives(args) or ("top1",)
    sampler, pruner = _sampler_pruner(args, space, design, objectives, note)
    prepared = _prepare_space(args, space)
    proxy = _resolve_proxy(args, overrides["proxy"], design, default=prepared.proxy)
    recipe = _resolve_recipe(args, overrides["recipe"], budget.epochs if prepared.epochs is None else prepared.epochs,
                             base=prepared.recipe)
    name = _study_name(args, out, space)
    run_dir = (out / name).resolve()
    try:
        settings = StudySettings(
            name=name,
            space=_space_ref(args.space),
            storage=normalize_storage_url(args.storage) if args.storage else f"sqlite:///{run_dir / 'study.db'}",
            run_dir=str(run_dir),
            trials=args.trials or budget.trials,
            runner=runner,
            address=args.address,
            timeout=args.timeout,
            seed=args.seed if args.seed is not None else 0,
            backbone=args.backbone or prepared.backbone or "resnet18",
            stem=args.stem or prepared.stem or "lowres",
            width=args.width,
            proxy=proxy,
            recipe=recipe,
            sampler=sampler,
            sampler_options=_options(args, _SAMPLER_ARGS),
            pruner=pruner,
            pruner_options=_options(args, _PRUNER_ARGS),
            objectives=objectives,
            cpus_per_trial=1.0 if args.cpus_per_trial is None else args.cpus_per_trial,
            gpus_per_trial=0.0 if args.gpus_per_trial is None else args.gpus_per_trial,
            max_concurrent=args.max_concurrent if args.max_concurrent is not None else (1 if runner == "local" else DEFAULT_CONCURRENCY),
            max_failures=1 if args.max_failures is None else args.max_failures,
            device=args.device,
            design=design.name,
            replicates=args.replicates if args.replicates is not None else design.replicates,
            seed_mode=args.seed_mode or design.seed_mode,
            space_options=prepared.options,
            stage_data=bool(args.stage_data),
        )
    except ValueError as exc:
        raise usage_error(exc) from None
    _dry_run(space, settings)
    return settings, space, True


#: flags that set a definition value other than the field of their own name: flag dest ->
#: what it reads of the stored definition (``proxy``, a preset's name, cannot be compared: refused)
_KEPT_ELSEWHERE: dict[str, Callable[[Any], Any]] = {
    "epochs": lambda d: d.recipe.epochs, "data": lambda d: d.proxy.data, "proxy": lambda d: None,
}


def _given_value(args: argparse.Namespace, dest: str) -> Any:
    """A definition flag's value as the stored definition holds it (None: not given)."""
    from study.storage import normalize_storage_url, public_url

    value = getattr(args, dest, None)
    if value is None:
        return None
    if dest == "storage":
        return public_url(normalize_storage_url(value))
    if dest == "objectives":
        return _objectives(args)
    if dest == "data":
        return str(Path(value).resolve())
    return value


def _check_kept(args: argparse.Namespace, definition: StudyDefinition) -> None:
    """Every flag given on ``--resume`` that sets the study's definition must agree with it."""
    from search_spaces import get_space
    from study.storage import public_url

    dests = [f.name for f in dataclasses.fields(definition) if f.name not in ("name", "proxy", "recipe", "space_options")]
    for dest in [*dests, *_KEPT_ELSEWHERE]:
        given = _given_value(args, dest)
        if given is None:
            continue
        kept = _KEPT_ELSEWHERE[dest](definition) if dest in _KEPT_ELSEWHERE else getattr(definition, dest)
        if dest == "storage":
            kept = public_url(kept)
        if dest == "space" and get_space(given).name == get_space(kept).name:
            continue
        if dest == "proxy" or given != kept:
            flag = "--set proxy" if dest == "proxy" else f"--{dest.replace('_', '-')}"
            raise UsageError(f"{flag}: a resumed study keeps its {dest.replace('_', ' ')} ({kept!r}); drop the flag or start a new study")
    for flag, option in declared_options().items():  # a space's options, as its own (refused ones: refuse_on_resume)
        text = getattr(args, option.key, None)
        if text is None or option.on_resume:
            continue
        kept_value = definition.space_options.get(option.key)
        if _parse_option(option, text) != kept_value:
            raise UsageError(f"{flag}: a resumed study keeps its {option.key.replace('_', ' ')} ({kept_value!r}); "
                             "drop the flag or start a new study")


def _resolve_resume(args: argparse.Namespace, out: Path, overrides: dict[str, dict[str, Any]]) -> tuple[StudySettings, Space, bool]:
    from search_spaces import get_space
    from study.storage import normalize_storage_url

    if args.name is not None:
        name = args.name
    elif args.space:
        base = sanitize(get_space(args.space).name)
        existing = [n for n in derived_names(base) if (out / n / "settings.json").exists()]
        if not existing:
            raise UsageError(f"--resume: no study of space {args.space!r} in {out} (give --name)")
        name = existing[-1]
    else:
        raise UsageError("--resume needs --name (or --space, to resume its latest study)")
    path = out / name / "settings.json"
    if not path.exists():
        raise UsageError(f"--resume: no study {name!r} in {out} (no {path})")
    try:
        stored = StudySettings.from_dict(json.loads(path.read_text()))
    except ValueError as exc:
        raise UsageError(f"--resume: {path} cannot be read back ({' '.join(str(exc).split())})") from None
    _check_kept(args, stored.definition)
    if args.overrides:
        raise UsageError("--set: a resumed study keeps its proxy and recipe; drop --set or start a new study")
    for dest in (*_SAMPLER_ARGS.values(), *_PRUNER_ARGS.values()):
        if getattr(args, dest) is not None:
            raise UsageError(f"--{dest.replace('_', '-')}: a resumed study keeps its sampler and pruner options")
    definition = stored.definition
    if args.storage is not None:  # the same storage, given again: with its password, if it has one
        definition = definition.replace(storage=normalize_storage_url(args.storage))
    try:
        settings = StudySettings(definition=definition, run=stored.run.replace(run_dir=str((out / name).resolve())))
        settings = settings.resume(**{k: getattr(args, k, None) for k in RESUMABLE})
    except ValueError as exc:
        raise usage_error(exc) from None
    return settings, get_space(settings.space), False
