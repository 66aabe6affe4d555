"""From the command line of ``python -m study.run`` to a checked run of a study.

A flag of a study setting hands its value to :class:`runners.StudySettings` as given; the
defaults of what it does not give are the settings' own order (:mod:`runners._defaults`),
the same as a Python caller's. What the command line does itself: the name (derived from the
space's, numbered if taken), the run folder (``--out``), the proxy (``--proxy``, ``--data``,
``--set proxy.*``), the recipe (``--epochs``, ``--set recipe.*``), the samplers' and
pruners' options, the spaces' options (prepared where a space needs a workflow), and, on
``--resume``, the stored settings with each flag of the definition checked against them, field
by field. The run is then checked (:func:`runners.check_run`): nothing here creates a file, a
folder or a study.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners._algorithms import MULTI_OBJECTIVE_PRUNERS, option_flags
from runners._defaults import DESIGNS, sanitize
from runners._run import StudyRun, check_run
from runners._settings import DEFINITION, RESUMABLE, StudySettings, setting_of
from runners._study import study_exists
from runners.cli._flags import PART_FLAGS, option_dest, space_flags, usage_error
from runners.cli._prepare import Preparation, preparation_for
from search_spaces import SpaceOption, declared_options, get_space, space_names
from study.cli import UsageError
from study.config import ProxySpec
from study.proxies import list_proxies, proxy_preset
from study.storage import check_storage_url, normalize_storage_url, public_url

if TYPE_CHECKING:  # annotations only
    from search_spaces import Space
    from study.config import ProxySpec

__all__ = ["resolve_run", "resolve_settings", "refuse_on_resume", "derived_names"]


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


def _proxy(args: argparse.Namespace, overrides: dict[str, Any]) -> ProxySpec | dict[str, Any] | None:
    """The proxy the flags give: a preset's or a cache's (with ``--set proxy.*``), or the
    fields ``--set proxy.*`` changes of the study's default proxy (None: neither)."""
    from study.data import cache_proxy, check_cache  # torch: only with --data or a cache preset

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
        if spec.source == "cache":
            check_cache(spec.data)  # its arrays whole before anything trains
    else:
        return overrides or None
    return ProxySpec.from_dict({**spec.to_dict(), **overrides}, "proxy") if overrides else spec


def _recipe(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe fields the flags change (``--epochs``, ``--set recipe.*``); None: none."""
    if "epochs" in overrides and args.epochs is not None and overrides["epochs"] != args.epochs:
        raise UsageError("--set recipe.epochs contradicts --epochs")
    fields_ = {**overrides, **({"epochs": args.epochs} if args.epochs is not None else {})}
    return fields_ or None


def derived_names(base: str) -> list[str]:
    """A study's default name and its numbered successors (``eca_kmap``, ``eca_kmap-2``, ...)."""
    return [base] + [f"{base}-{i}" for i in range(2, 1000)]


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


def _given_value(name: str, value: Any) -> Any:
    """A settings flag's value as the settings take it."""
    if name == "storage":
        return normalize_storage_url(value)
    if name == "space" and value not in space_names() and ":" in value:  # a user's file: its absolute path, resumable from anywhere
        file, fn = value.rsplit(":", 1)
        return f"{Path(file).resolve()}:{fn}"
    return value


def _flags_given(args: argparse.Namespace, part: str | None = None) -> dict[str, Any]:
    """The settings the flags give (of one ``part``), as the settings take them."""
    out = {}
    for f in fields(StudySettings):
        s = setting_of(f)
        if s.flag and (part is None or s.part == part) and getattr(args, f.name, None) is not None:
            out[f.name] = _given_value(f.name, getattr(args, f.name))
    return out


def _options(args: argparse.Namespace, kind: str) -> dict[str, int]:
    return {name: v for name in option_flags(kind) if (v := getattr(args, option_dest(kind, name))) is not None}


def _study_name(args: argparse.Namespace, out: Path, space: Space) -> str:
    """``--name`` (its form checked; whether it is taken: :func:`runners.check_run`), else the
    first name derived from the space's that no folder in ``out`` and no study in the storage has."""
    if args.name is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", args.name):
            raise UsageError(f"--name: use letters, digits, '.', '_' or '-', got {args.name!r}")
        return args.name
    return next(n for n in derived_names(sanitize(space.name))
                if not (out / n).exists() and not (args.storage and study_exists(args.storage, n)))


def _pruner(args: argparse.Namespace, space: Space, given: dict[str, Any], note: Callable[[str], None]) -> None:
    """A one-objective ``--pruner`` with several objectives: refused when its options are
    given (they are meant for a pruner that is not used), else replaced by the design's (a note)."""
    objectives = given.get("objectives", ("top1",))
    pruner = given.get("pruner")
    if len(objectives) < 2 or pruner is None or pruner in MULTI_OBJECTIVE_PRUNERS:
        return
    if _options(args, "pruner"):
        raise UsageError(f"--pruner: {pruner} prunes one objective (Optuna's pruners refuse several); with --objectives "
                         f"{','.join(objectives)} use --pruner {' or '.join(MULTI_OBJECTIVE_PRUNERS)}")
    design = DESIGNS.get(given.get("design") or space.info.default_design, DESIGNS["search"])
    note(f"note: --pruner {pruner} ignored: it prunes one objective (Optuna's pruners refuse several); "
         f"this study is pruned by {design.multi_objective_pruner}")
    given["pruner"] = design.multi_objective_pruner


def _new(args: argparse.Namespace, out: Path, overrides: dict[str, dict[str, Any]], note: Callable[[str], None]) -> StudySettings:
    """A new study's settings from the flags."""
    if not args.space:
        raise UsageError("--space is required (see --list-spaces)")
    space = get_space(args.space)
    given = _flags_given(args)
    if "storage" in given:
        check_storage_url(given["storage"])
    _pruner(args, space, given, note)
    prepared = _prepare_space(args, space)
    name = _study_name(args, out, space)
    given.update(name=name, run_dir=str((out / name).resolve()), sampler_options=_options(args, "sampler"),
                 pruner_options=_options(args, "pruner"))
    for key, value in (("proxy", _proxy(args, overrides["proxy"])), ("recipe", _recipe(args, overrides["recipe"]))):
        if value is not None:
            given[key] = value
    return StudySettings(**given, prepared=prepared.settings())


def _check_kept(args: argparse.Namespace, stored: StudySettings) -> None:
    """Every flag given on ``--resume`` that sets the study's definition must agree with it,
    field by field; the flags that set it through another are refused or compared as such."""
    given = _flags_given(args, DEFINITION)
    given.pop("name", None)  # the study to resume
    for name, value in given.items():
        kept = getattr(stored, name)
        if name == "storage":
            value, kept = public_url(value), public_url(kept)
        if name == "space" and get_space(value).name == get_space(kept).name:
            continue
        if value != kept:
            flag = setting_of(next(f for f in fields(StudySettings) if f.name == name)).flag
            raise UsageError(f"{flag}: a resumed study keeps its {name.replace('_', ' ')} ({kept!r}); drop the flag or start a new study")
    for part in PART_FLAGS:
        value = getattr(args, part.dest)
        if value in (None, []):
            continue
        if part.dest == "data":
            value = str(Path(value).resolve())
        if part.path is None or value != part.stored(stored):
            kept = "" if part.path is None else f" ({part.stored(stored)!r})"
            raise UsageError(f"{part.flag}: a resumed study keeps its {part.words}{kept}; drop the flag or start a new study")
    if _options(args, "sampler") or _options(args, "pruner"):
        flag = next(option_flags(kind)[n] for kind in ("sampler", "pruner") for n in _options(args, kind))
        raise UsageError(f"{flag}: a resumed study keeps its sampler and pruner options")
    for flag, option in declared_options().items():  # a space's options, as its own (refused ones: refuse_on_resume)
        text = getattr(args, option.key, None)
        if text is None or option.on_resume:
            continue
        kept_value = stored.space_options.get(option.key)
        if _parse_option(option, text) != kept_value:
            raise UsageError(f"{flag}: a resumed study keeps its {option.key.replace('_', ' ')} ({kept_value!r}); "
                             "drop the flag or start a new study")


def _resumed(args: argparse.Namespace, out: Path) -> StudySettings:
    """A resumed study's settings: the stored ones, with the run options the flags give."""
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
    _check_kept(args, stored)
    changes: dict[str, Any] = {"run_dir": str((out / name).resolve())}
    if args.storage is not None:  # the same storage, given again: with its password, if it has one
        changes["storage"] = normalize_storage_url(args.storage)
    return stored.replace(**changes).resume(**{k: v for k, v in _flags_given(args).items() if k in RESUMABLE})


def resolve_run(args: argparse.Namespace, *, note: Callable[[str], None] = print) -> StudyRun:
    """Map the parsed flags to the study's settings and check the run (:func:`runners.check_run`),
    creating nothing. Bad input is a :class:`~study.cli.UsageError` naming the flag."""
    out = Path(args.out)
    overrides = _parse_overrides(args.overrides)
    space = None
    try:
        settings = _resumed(args, out) if args.resume else _new(args, out, overrides, note)
        space = get_space(settings.space)
        return check_run(settings, resume=args.resume, space=space, mlflow=args.mlflow,
                         mlflow_system_metrics=args.mlflow_system_metrics)
    except ValueError as exc:  # a ConfigError names its field: said as the flag that sets it
        raise usage_error(exc, space) from None


def resolve_settings(args: argparse.Namespace, *, note: Callable[[str], None] = print) -> tuple[StudySettings, Space, bool]:
    """:func:`resolve_run` as ``(settings, space, created)``; ``created`` is False for ``--resume``."""
    run = resolve_run(args, note=note)
    return run.settings, run.space, run.create
