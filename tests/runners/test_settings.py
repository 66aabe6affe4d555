"""A study's settings: every field declared once (its default, flag, help, definition or run),
one order of defaults for Python and the command line, the stored form."""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from runners import DEFAULT_PROXY, DESIGNS, RESUMABLE, StudySettings, check_run, setting_of, start_run
from runners._settings import DEFINITION_FIELDS, RUN_FIELDS, RUNNER_FIELDS
from runners.cli import build_parser, flag_table, main, resolve_settings
from search_spaces import SpaceContext
from study.cli import run_cli
from study.config import Recipe
from study.validate import ConfigError

BASE = dict(name="s", space="eca_kmap", storage="sqlite:///runs/s/study.db", run_dir="runs/s", trials=4)

#: the flat JSON form of settings.json, as studies created before the split wrote it
STORED_KEYS = {"name", "space", "storage", "run_dir", "trials", "runner", "address", "timeout", "seed", "backbone", "stem", "width",
               "proxy", "recipe", "sampler", "sampler_options", "pruner", "pruner_options", "objectives", "cpus_per_trial",
               "gpus_per_trial", "max_concurrent", "max_failures", "device", "design", "replicates", "seed_mode", "space_options",
               "stage_data"}


def test_every_field_is_declared_once_with_its_part_its_help_and_its_flag():
    assert set(DEFINITION_FIELDS) | set(RUN_FIELDS) == STORED_KEYS and not set(DEFINITION_FIELDS) & set(RUN_FIELDS)
    assert {"runner", "address", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "trials", "timeout"} <= set(RUN_FIELDS)
    assert {"space", "backbone", "proxy", "recipe", "sampler", "pruner", "objectives", "design", "seed"} <= set(DEFINITION_FIELDS)
    assert set(RESUMABLE) == set(RUN_FIELDS) - {"run_dir"}
    assert set(RUNNER_FIELDS) == {"address", "max_concurrent", "gpus_per_trial", "stage_data"}
    dest_of = {flag: a.dest for a in build_parser()._actions for flag in a.option_strings}
    table = flag_table()
    for f in fields(StudySettings):
        s = setting_of(f)
        assert s.help and s.part in ("definition", "run"), f.name
        assert s.flag is None or dest_of[s.flag] == f.name, f.name  # a flag of its own: made from the declaration
        assert table[f.name] == s.words, f.name  # an error about it names the flag that sets it
    help_text = " ".join(build_parser().format_help().split())
    for words in ("inference 2, answer 2", "per_trial; confirm paired", "2 under Ray, 1 with --runner local", "confirm: compare"):
        assert words in help_text, words


def test_flat_construction_reads_every_field_and_round_trips_the_stored_form():
    s = StudySettings(**BASE, runner="local", width=0.5, seed=3)
    assert (s.width, s.seed, s.runner, s.trials, s.concurrency, s.runs) == (0.5, 3, "local", 4, 1, 4)
    d = s.to_dict()
    assert set(d) == STORED_KEYS and set(s.definition) == set(DEFINITION_FIELDS)
    assert StudySettings.from_dict(d) == s
    assert pickle.loads(pickle.dumps(s)) == s  # Ray ships it
    with pytest.raises(FrozenInstanceError):
        s.width = None  # type: ignore[misc]


def test_the_defaults_come_in_one_order():
    # a Python caller gets the design's defaults (its sampler, pruner, replicates, validation size) and the space's budget
    inf = StudySettings(space="eca_kmap", design="inference", runner="local")
    expected = ("random", "none", 2, "per_trial", 100, 3)
    assert (inf.sampler, inf.pruner, inf.replicates, inf.seed_mode, inf.trials, inf.recipe.epochs) == expected
    assert inf.proxy == dataclasses.replace(DEFAULT_PROXY, val_per_class=DESIGNS["inference"].val_per_class)
    assert (inf.name, Path(inf.run_dir).name, inf.storage.endswith("/runs/eca_kmap/study.db")) == ("eca_kmap", "eca_kmap", True)
    assert StudySettings(space="paper_table2").sampler == "grid" and StudySettings(space="kmap_confirm").design == "confirm"
    assert StudySettings(space="eca_kmap", objectives=("top1", "macs")).sampler == "nsga2"
    # what the caller gives wins, and a proxy or recipe given as fields changes those of the default one
    given = StudySettings(space="eca_kmap", design="inference", replicates=3, pruner="median", recipe={"lr": 0.1}, proxy={"resolution": 16})
    assert (given.replicates, given.pruner, given.recipe.lr, given.recipe.epochs, given.recipe.batch_size) == (3, "median", 0.1, 3, 64)
    assert (given.proxy.resolution, given.proxy.num_classes, given.proxy.val_per_class) == (16, 10, 100)
    assert StudySettings(space="eca_kmap", recipe=Recipe(epochs=7)).recipe == Recipe(epochs=7)  # a whole recipe is taken as it is
    # the preparation's layer sits under the design's validation size and under what is given
    prepared = StudySettings(space="eca_kmap", design="inference", prepared={"backbone": "resnet34", "epochs": 9, "proxy": DEFAULT_PROXY})
    assert (prepared.backbone, prepared.recipe.epochs, prepared.proxy.val_per_class) == ("resnet34", 9, 100)


def test_python_and_the_command_line_run_the_same_study_by_default(tmp_path, capsys):
    """The same study built both ways stores the same settings."""
    out = tmp_path / "runs"
    for argv, python in ((["--space", "eca_kmap"], {}), (["--space", "se_ratio", "--design", "search", "--objectives", "top1,macs"],
                                                          {"design": "search", "objectives": ("top1", "macs")})):
        cli, _, _ = resolve_settings(build_parser().parse_args([*argv, "--out", str(out)]), note=lambda text: None)
        py = StudySettings(space=cli.space, run_dir=cli.run_dir, **python)
        assert py.to_dict() == cli.to_dict()
    # and with the orchestration: settings.json as the CLI writes it, and as start_run writes it for Python
    cli_dir, py_dir = tmp_path / "cli", tmp_path / "py"
    argv = ["--space", "se_ratio", "--runner", "local", "--trials", "1", "--epochs", "1", "--proxy", "synthetic-small", "--width", "0.25",
            "--set", "recipe.batch_size=32", "--out", str(cli_dir), "--name", "s"]
    with pytest.raises(SystemExit) as info:
        run_cli(main, argv)
    assert info.value.code == 0, capsys.readouterr().err
    stored = json.loads((cli_dir / "s" / "settings.json").read_text())
    from study.proxies import proxy_preset

    py = StudySettings(space="se_ratio", name="s", run_dir=str(py_dir / "s"), runner="local", trials=1,
                       recipe={"epochs": 1, "batch_size": 32},
                       proxy=proxy_preset("synthetic-small"), width=0.25)
    start_run(check_run(py))
    written = json.loads((py_dir / "s" / "settings.json").read_text())
    differ = {k for k in stored if stored[k] != written[k]}
    assert differ == {"run_dir", "storage"}, differ  # only where each lives


def test_resume_keeps_the_definition_and_takes_the_new_run_options():
    s = StudySettings(**BASE, runner="ray", max_concurrent=3, address="auto", gpus_per_trial=0.5)
    r = s.resume(trials=10, runner=None, timeout=60.0)
    assert r.definition == s.definition and (r.trials, r.timeout, r.runner, r.max_concurrent, r.address) == (10, 60.0, "ray", 3, "auto")
    local = s.resume(runner="local")  # a new runner starts its runner-specific options afresh
    assert (local.runner, local.address, local.max_concurrent, local.gpus_per_trial, local.concurrency) == ("local", None, None, 0.0, 1)
    assert local.definition == s.definition
    with pytest.raises(ConfigError, match="^backbone: a resumed study keeps its definition"):
        s.resume(backbone="resnet34")


def test_errors_name_their_field():
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
    with pytest.raises(ConfigError, match="^space: a study needs a space"):
        StudySettings(name="x")


def test_a_space_gets_a_typed_frozen_context():
    s = StudySettings(**BASE, seed=7, space_options={"kinds": ["eca"]})
    ctx = s.space_context(number=3)
    assert isinstance(ctx, SpaceContext)
    assert (ctx.backbone, ctx.width, ctx.design, dict(ctx.options)) == ("resnet18", None, "search", {"kinds": ["eca"]})
    assert ctx.seed != 7 and s.space_context().seed == 7
    with pytest.raises(FrozenInstanceError):
        ctx.backbone = "resnet34"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.options["kinds"] = ["se"]  # type: ignore[index]
    assert pickle.loads(pickle.dumps(ctx)) == ctx
