"""runners._algorithms: every registered sampler and pruner builds from its defaults (one
objective, and several where it takes them), the settings and the CLI read the entries,
and ParetoPruner's constructor defaults are the study's."""

from __future__ import annotations

import inspect

import optuna
import pytest

from runners._algorithms import (
    MULTI_OBJECTIVE_PRUNERS,
    MULTI_OBJECTIVE_SAMPLERS,
    PRUNER_REGISTRY,
    PRUNERS,
    SAMPLER_REGISTRY,
    SAMPLERS,
    GridSampler,
    option_flags,
    option_help,
)
from runners._optuna import make_pruner, make_sampler
from runners._pruners import ParetoPruner
from runners.cli import build_parser

GRID = {"k": [3, 5]}


def _cases(names, registry):
    """(name, objectives) for one objective, and for two where the entry takes several."""
    out = []
    for name in names:
        out.append((name, ("top1",)))
        if registry.get(name).multi_objective:
            out.append((name, ("top1", "macs")))
    return out


def test_the_registries_hold_every_name_once():
    assert SAMPLER_REGISTRY.names() == sorted(SAMPLERS) and PRUNER_REGISTRY.names() == sorted(PRUNERS)
    assert MULTI_OBJECTIVE_SAMPLERS == tuple(n for n in SAMPLERS if SAMPLER_REGISTRY.get(n).multi_objective)
    assert MULTI_OBJECTIVE_PRUNERS == tuple(n for n in PRUNERS if PRUNER_REGISTRY.get(n).multi_objective)


@pytest.mark.parametrize("name, objectives", _cases(SAMPLERS, SAMPLER_REGISTRY))
def test_every_sampler_builds_from_its_defaults(name, objectives, tiny_settings):
    entry = SAMPLER_REGISTRY.get(name)
    settings = tiny_settings(sampler=name, objectives=objectives)
    assert settings.sampler_options == entry.defaults()
    sampler = make_sampler(settings, GRID if entry.needs_grid else None)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert isinstance(sampler, GridSampler) == entry.needs_grid
    study = optuna.create_study(sampler=sampler, directions=settings.directions)
    study.ask().suggest_categorical("k", [3, 5])  # it samples


@pytest.mark.parametrize("name, objectives", _cases(PRUNERS, PRUNER_REGISTRY))
def test_every_pruner_builds_from_its_defaults(name, objectives, tiny_settings):
    entry = PRUNER_REGISTRY.get(name)
    multi = len(objectives) > 1
    settings = tiny_settings(pruner=name, objectives=objectives, sampler="random")
    assert settings.pruner_options == entry.defaults(multi=multi)
    pruner = make_pruner(settings)
    assert isinstance(pruner, optuna.pruners.BasePruner)
    if isinstance(pruner, ParetoPruner):
        options = tuple(settings.pruner_options[k] for k in ("percentile", "warmup", "startup"))
        assert (pruner.percentile, pruner.warmup, pruner.startup) == options
        assert pruner.costs == tuple(settings.cost_keys)


def test_single_objective_entries_are_refused_for_several(tiny_settings):
    for name in (n for n in SAMPLERS if not SAMPLER_REGISTRY.get(n).multi_objective):
        with pytest.raises(ValueError, match="optimises one objective"):
            tiny_settings(sampler=name, objectives=("top1", "macs"))
    for name in (n for n in PRUNERS if not PRUNER_REGISTRY.get(n).multi_objective):
        with pytest.raises(ValueError, match="prunes one objective"):
            tiny_settings(pruner=name, objectives=("top1", "macs"), sampler="random")


def test_pareto_constructor_defaults_are_the_study_defaults():
    params = inspect.signature(ParetoPruner).parameters
    defaults = PRUNER_REGISTRY.get("pareto").defaults()
    assert defaults == {k: params[k].default for k in defaults}
    default = ParetoPruner()
    assert (default.percentile, default.warmup, default.startup) == (defaults["percentile"], defaults["warmup"], defaults["startup"])


def test_the_help_lists_the_registered_names_and_defaults():
    text = " ".join(build_parser().format_help().split())
    assert "{" + ",".join(SAMPLERS) + "}" in text and "{" + ",".join(PRUNERS) + "}" in text
    for registry, names in ((SAMPLER_REGISTRY, SAMPLERS), (PRUNER_REGISTRY, PRUNERS)):
        kind = registry.what
        for name in names:
            for option, spec in registry.get(name).options.items():
                help_text = option_help(kind, option)
                assert help_text in text
                assert name in help_text and str(spec.default) in help_text
                if spec.multi_default is not None:
                    assert f"{spec.multi_default} for several objectives" in help_text
    for kind in ("sampler", "pruner"):  # each option's flag as its entries declare it, made by the CLI
        for name, flag in option_flags(kind).items():
            assert f"{flag} N {option_help(kind, name)}" in text
    assert option_help("pruner", "warmup") == ("median / pareto / wilcoxon: the first epoch at which a trial may be pruned "
                                               "(default: median 2, pareto 1, wilcoxon 2)")
    assert option_help("pruner", "percentile") == ("pareto: prune below this percentile of the references' top-1 "
                                                   "(1-99; default 50, 75 for several objectives)")


def test_wilcoxon_prunes_a_curve_below_the_best_at_every_epoch_from_the_fourth():
    pruner = PRUNER_REGISTRY.get("wilcoxon").factory({"warmup": 2}, epochs=6, costs=())
    study = optuna.create_study(direction="maximize", pruner=pruner)
    best = study.ask()
    for epoch, v in enumerate([50, 60, 70, 75, 80, 82], start=1):
        best.report(v, epoch)
    study.tell(best, 82)
    low = study.ask()
    decisions = []
    for epoch, v in enumerate([40, 50, 60, 65, 70], start=1):
        low.report(v, epoch)
        decisions.append(low.should_prune())
    # the one-sided exact signed-rank p of n negative differences is 2^-n: below 0.1 from n = 4
    assert decisions == [False, False, False, True, True]
