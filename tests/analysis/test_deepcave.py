"""A study as a DeepCAVE run (issue 28): ``python -m analysis.export RUN --format deepcave``
on studies recorded by the real bookkeeping (complete, pruned and failed trials, replicates,
a conditional space), read back as DeepCAVE's DataFrame converter reads a run.

DeepCAVE itself does not install here (every release requires Python < 3.11), so the folder
is read as its documentation and its reader state the format (automl/DeepCAVE 03f7e2cd,
``docs/converters/dataframe.rst`` and ``deepcave/runs/converters/dataframe.py``): both CSVs
through ``pandas.read_csv`` with its defaults; objectives from the column names by the
reader's own pattern; a float needs a numeric distribution (uniform, normal or beta); a
categorical's items are the text of its ``item_*`` cells; every configuration gives every
hyperparameter a legal value (the reader has no conditions); status one of its codes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest

from runners import Planted, StudySettings, simulate_study
from study.cli import run_cli
from study.config import Recipe
from study.data import proxy_preset

#: the reader's pattern of an objective column (DataFrameRun.load_objectives)
METRIC = re.compile(r"metric:(\w+) \[(-?\d+\.?\d*|[-+]inf); (-?\d+\.?\d*|[-+]inf)\] \((\w+)\)")
#: DeepCAVE's status codes (deepcave.runs.Status), in either case
STATUSES = {"SUCCESS", "TIMEOUT", "MEMORYOUT", "CRASHED", "ABORTED", "NOT_EVALUATED", "FAILED", "PRUNED", "UNKNOWN"}


def read_dataframe_run(folder: Path) -> dict:
    """The run as DeepCAVE's DataFrame converter sees it: objectives, hyperparameters and, per
    trial, its configuration, costs, budget, seed, times, status and additional data. Asserts
    what the reader would otherwise fail on."""
    space = pd.read_csv(folder / "configspace.csv")
    trials = pd.read_csv(folder / "trials.csv")
    objectives = []
    for column in trials.columns:
        if column.startswith("metric"):
            m = METRIC.fullmatch(column)
            assert m, column
            objectives.append((m.group(1), float(m.group(2)), float(m.group(3)), m.group(4)))
    hps = {}
    for _, row in space.iterrows():
        kind = row["type"]
        assert kind in ("float", "integer", "categorical"), kind
        if kind == "categorical":
            items = [str(row[c]) for c in space.columns if c.startswith("item_") and pd.notna(row[c])]
            assert row["default"] in items, (row["name"], row["default"], items)
            hps[row["name"]] = ("categorical", items)
        else:
            if kind == "float":  # the reader asks for a distribution of every float, and knows three
                assert row["distribution"] in ("uniform", "normal", "beta"), row
            lower, upper = float(row["lower"]), float(row["upper"])
            assert lower <= float(row["default"]) <= upper and isinstance(row["log"], bool), row
            if kind == "integer":
                assert float(row["default"]) == int(float(row["default"])) and lower == int(lower) and upper == int(upper)
            hps[row["name"]] = (kind, (lower, upper))
    runs = []
    for _, t in trials.iterrows():
        config = {}
        for name, (kind, dom) in hps.items():  # every hyperparameter, every trial: no conditions
            v = t[name]
            if kind == "categorical":
                assert isinstance(v, str) and v in dom, (name, v, dom)
            else:
                assert not isinstance(v, str) and dom[0] <= float(v) <= dom[1], (name, v, dom)
                assert kind == "float" or float(v) == int(v), (name, v)
            config[name] = v
        assert str(t["status"]).upper() in STATUSES
        costs = [float(t[c]) for c in trials.columns if c.startswith("metric:")]
        meta = {"config_id", "start_time", "end_time", "status", "budget", "seed", *hps}
        runs.append({"config": config, "costs": costs, "budget": round(float(t["budget"]), 2), "seed": int(t["seed"]),
                     "start": float(t["start_time"]), "end": float(t["end_time"]), "status": str(t["status"]).upper(),
                     "additional": {k: t[k] for k in trials.columns if k not in meta and not k.startswith("metric")}})
    return {"objectives": objectives, "hyperparameters": hps, "trials": runs, "space": space}


def _study(tmp_path: Path, **changes) -> tuple[StudySettings, optuna.Study]:
    """A study recorded by the real bookkeeping, its trainer planted (no training)."""
    run = tmp_path / "run"
    run.mkdir()
    fields = dict(name="dc", space="eca_kmap", storage=f"sqlite:///{run / 'study.db'}", run_dir=str(run), trials=12, runner="local",
                  width=0.25, proxy=proxy_preset("synthetic-small"), recipe=Recipe(epochs=3, batch_size=32, warmup_epochs=0),
                  seed=0, pruner="median", pruner_options={"warmup": 0, "startup": 1}, replicates=2)
    settings = StudySettings(**{**fields, **changes})
    (run / "settings.json").write_text(json.dumps(settings.to_dict()))
    bridge = simulate_study(settings, Planted(effect=1.0, sigma=2.0, diverge_k=5, diverge_C=16))  # k=5 at C=16 diverges
    return settings, bridge.study


def _export(capsys, *argv) -> tuple[int, str, str]:
    from analysis.export import main

    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv], prog="python -m analysis.export")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_every_finished_trial_of_a_conditional_study_reads_as_deepcave_reads_it(mem_path, capsys):
    tmp_path = mem_path
    settings, study = _study(tmp_path)
    finished = [t for t in study.get_trials() if t.state.is_finished()]
    states = {t.state for t in finished}
    assert states == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL}, states
    code, out, err = _export(capsys, tmp_path / "run", "--format", "deepcave", "--out", tmp_path / "dc")
    assert code == 0, err
    assert f"wrote {len(finished)} trials" in out and "k_s0: k_mode == fixed" in out and "gamma: k_mode == psi" in out
    run = read_dataframe_run(tmp_path / "dc")

    assert run["objectives"] == [("top1", 0.0, 100.0, "maximize")]
    assert list(run["hyperparameters"]) == ["k_mode", "gamma", "b", "k_s0", "k_s1", "k_s2", "k_s3"]
    assert run["hyperparameters"]["k_mode"] == ("categorical", ["fixed", "psi"])
    assert run["hyperparameters"]["gamma"] == ("float", (1.0, 4.0)) and run["hyperparameters"]["k_s0"] == ("integer", (1.0, 9.0))
    space = run["space"].set_index("name")
    assert space.loc["k_s0", "condition"] == "k_mode == fixed" and space.loc["b", "condition"] == "k_mode == psi"
    assert space.loc["k_s0", "choices"] == "1 3 5 7 9" and pd.isna(space.loc["k_mode", "condition"])
    # the paper's psi, the first reference point
    assert float(space.loc["gamma", "default"]) == 2.0 and float(space.loc["b", "default"]) == 1.0

    by_number = {int(r["additional"]["number"]): r for r in run["trials"]}
    assert sorted(by_number) == [t.number for t in finished]  # every finished trial, once
    starts = [r["start"] for r in run["trials"]]
    assert starts == sorted(starts)  # in the order they started (the reader's times count from the first row)
    status = {optuna.trial.TrialState.COMPLETE: "SUCCESS", optuna.trial.TrialState.PRUNED: "PRUNED",
              optuna.trial.TrialState.FAIL: "FAILED"}
    for t in finished:
        r = by_number[t.number]
        assert r["status"] == status[t.state]
        history = t.user_attrs.get("history") or []
        assert r["budget"] == len(history)  # the epoch it reached
        assert r["seed"] == t.user_attrs["config"]["seed"]
        assert r["start"] <= r["end"] and r["start"] == pytest.approx(t.datetime_start.timestamp())
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert r["budget"] == 3 and r["costs"] == pytest.approx(list(t.values))
        elif t.state == optuna.trial.TrialState.PRUNED:
            assert r["budget"] < 3 and r["costs"][0] == pytest.approx(max(h["top1"] for h in history))
        else:
            assert math.isnan(r["costs"][0]) and "diverged" in str(r["additional"]["error"])
        mode = t.params["k_mode"]
        assert [int(r["additional"][f"stage{i}_k"]) for i in range(4)] == [st["k"] for st in t.user_attrs["stages"]]
        inactive = str(r["additional"]["inactive"]).split()
        if mode == "psi":
            assert inactive == ["k_s0", "k_s1", "k_s2", "k_s3"] and r["config"]["gamma"] == pytest.approx(t.params["gamma"])
            assert r["config"]["k_s0"] == 3  # the default stands in for the parameter the trial did not have
        else:
            assert inactive == ["gamma", "b"] and [r["config"][f"k_s{i}"] for i in range(4)] == [t.params[f"k_s{i}"] for i in range(4)]
    # replicates of one configuration share a config id (and have their own seeds)
    trials = pd.read_csv(tmp_path / "dc" / "trials.csv")
    for _, group in trials.groupby("group"):
        assert group["config_id"].nunique() == 1 and group["seed"].nunique() == len(group)
    assert trials["config_id"].nunique() < len(trials)


def test_several_objectives_and_nested_conditions(mem_path, capsys):
    tmp_path = mem_path
    _study(tmp_path, space="attention_nas", objectives=("top1", "params"), sampler="random", pruner="none", pruner_options={}, replicates=1,
           trials=16, recipe=Recipe(epochs=1, batch_size=32, warmup_epochs=0))
    code, out, err = _export(capsys, tmp_path / "run", "--format", "deepcave")
    assert code == 0, err
    run = read_dataframe_run(tmp_path / "run" / "deepcave")  # the default folder
    assert run["objectives"] == [("top1", 0.0, 100.0, "maximize"), ("params", 0.0, math.inf, "minimize")]
    space = run["space"].set_index("name")
    conditions = space["condition"].dropna().to_dict()
    assert conditions and all(c.split()[0].split("_")[-1] == n.split("_")[-1] for n, c in conditions.items())  # same stage
    for name, condition in conditions.items():
        if re.fullmatch(r"eca_(gamma|b)_s\d", name):
            assert condition == f"eca_mode_{name.split('_')[-1]} == psi"  # the nearest parent, itself conditional
        if re.fullmatch(r"eca_mode_s\d", name):
            assert condition == f"kind_{name.split('_')[-1]} == eca"
    for r in run["trials"]:
        assert r["costs"][1] == r["additional"]["cost_params"] > 0


def test_a_deepcave_export_refuses_selection_flags_and_a_folder_of_other_files(tmp_path, capsys):
    _study(tmp_path, trials=2, replicates=1)
    code, _, err = _export(capsys, tmp_path / "run", "--format", "deepcave", "--top", 3)
    assert code == 2 and "--top: chooses trials for --format configs; --format deepcave exports every finished trial" in err
    code, _, err = _export(capsys, tmp_path / "run")
    assert code == 2 and "one of the arguments --top --pareto is required" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = _export(capsys, tmp_path / "run", "--format", "deepcave", "--out", tmp_path / "busy")
    assert code == 2 and f"--out {tmp_path / 'busy'}: holds other files" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    code, _, err = _export(capsys, tmp_path / "run", "--format", "deepcave", "--out", tmp_path / "again")
    code, _, err = _export(capsys, tmp_path / "run", "--format", "deepcave", "--out", tmp_path / "again")  # its own: replaced
    assert code == 0, err
