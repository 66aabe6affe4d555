"""A study's definition apart from one run's options (issue 19 item 3)."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, fields

import pytest

from runners import RESUMABLE, RunOptions, StudyDefinition, StudySettings
from study.validate import ConfigError

BASE = dict(name="s", space="eca_kmap", storage="sqlite:///runs/s/study.db", run_dir="runs/s", trials=4)

#: the flat JSON form of settings.json, as studies created before the split wrote it
STORED_KEYS = {"name", "space", "storage", "run_dir", "trials", "runner", "address", "timeout", "seed", "backbone", "stem", "width",
               "proxy", "recipe", "sampler", "sampler_options", "pruner", "pruner_options", "objectives", "cpus_per_trial",
               "gpus_per_trial", "max_concurrent", "max_failures", "device", "design", "replicates", "seed_mode", "space_options",
               "stage_data"}


def test_the_two_parts_hold_what_a_study_is_and_how_one_run_runs_it():
    definition = {f.name for f in fields(StudyDefinition)}
    run = {f.name for f in fields(RunOptions)}
    assert not definition & run and definition | run == STORED_KEYS
    assert {"runner", "address", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "trials", "timeout"} <= run
    assert {"space", "backbone", "proxy", "recipe", "sampler", "pruner", "objectives", "design", "seed"} <= definition
    assert set(RESUMABLE) == run - {"run_dir"}


def test_flat_construction_reads_both_parts_and_round_trips_the_stored_form():
    s = StudySettings(**BASE, runner="local", width=0.5, seed=3)
    assert (s.definition.width, s.definition.seed, s.run.runner, s.run.trials) == (0.5, 3, "local", 4)
    assert (s.width, s.runner, s.concurrency, s.runs) == (0.5, "local", 1, 4)
    d = s.to_dict()
    assert set(d) == STORED_KEYS
    assert StudySettings.from_dict(d) == s
    assert pickle.loads(pickle.dumps(s)) == s  # Ray ships it
    with pytest.raises(FrozenInstanceError):
        s.definition = None  # type: ignore[misc]


def test_resume_keeps_the_definition_and_takes_the_new_run_options():
    s = StudySettings(**BASE, runner="ray", max_concurrent=3, address="auto", gpus_per_trial=0.5)
    r = s.resume(trials=10, runner=None, timeout=60.0)
    assert r.definition == s.definition and (r.trials, r.timeout, r.runner, r.max_concurrent, r.address) == (10, 60.0, "ray", 3, "auto")
    local = s.resume(runner="local")  # a new runner starts its runner-specific options afresh
    assert (local.runner, local.address, local.max_concurrent, local.gpus_per_trial, local.concurrency) == ("local", None, None, 0.0, 1)
    assert local.definition == s.definition


def test_errors_name_their_field_in_either_part():
    with pytest.raises(ConfigError) as info:
        StudySettings(**BASE, runner="local", address="auto")
    assert info.value.field == "address" and info.value.refs == ("runner",)
    with pytest.raises(ConfigError) as info:
        StudySettings(**{**BASE, "trials": 0})
    assert info.value.field == "trials"
    with pytest.raises(ConfigError) as info:
        StudySettings(**BASE, recipe={"lr": 0})
    assert info.value.field == "recipe.lr"
    with pytest.raises(ConfigError, match="^colour: not a study setting"):
        StudySettings(**BASE, colour="red")
    with pytest.raises(ConfigError, match="settings: unknown key 'colour'"):
        StudySettings.from_dict({**StudySettings(**BASE).to_dict(), "colour": 1})
