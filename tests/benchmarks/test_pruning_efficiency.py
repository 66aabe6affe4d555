"""benchmarks/pruning_efficiency.py: the selection phase's grid and rule (the replays
themselves run the real study machinery, measured by the benchmark)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("pruning_efficiency", REPO / "benchmarks" / "pruning_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_every_grid_holds_the_registry_default_first_and_only_options_the_pruner_takes(bench):
    from runners._algorithms import PRUNER_REGISTRY

    for multi, grids in ((False, bench.GRIDS), (True, bench.MULTI_GRIDS)):
        for name in grids:
            settings = bench.grid(name, multi)
            assert settings[0] == (name, PRUNER_REGISTRY.get(name).defaults(multi=multi))
            assert len({bench.label(s) for s in settings}) == len(settings)
            for _, options in settings:
                PRUNER_REGISTRY.get(name).complete(options, multi=multi)  # every setting is valid


def test_the_rule_takes_the_fewest_epochs_among_the_settings_that_keep_the_quality(bench):
    one = {"a": {"quality_met": True, "epochs": 0.6, "diff": 0.0, "kept": 5},
           "b": {"quality_met": True, "epochs": 0.5, "diff": -0.4, "kept": 4},
           "c": {"quality_met": False, "epochs": 0.2, "diff": -1.0, "kept": 2}}
    assert bench.choose(one) == "b"
    none_met = {"c": one["c"], "d": {"quality_met": False, "epochs": 0.3, "diff": -0.6, "kept": 3},
                "e": {"quality_met": False, "epochs": 0.25, "diff": -0.6, "kept": 3}}
    assert bench.choose(none_met) == "e"  # the best quality, then the fewest epochs


def test_seeds_parse_as_ranges_or_lists(bench):
    assert bench.seed_range("0-4") == [0, 1, 2, 3, 4] and bench.seed_range("5,7") == [5, 7]
    with pytest.raises(Exception, match="A-B or A,B,C"):
        bench.seed_range("x")
