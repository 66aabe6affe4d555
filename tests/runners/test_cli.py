"""``python -m study.run``: bad input, every space end to end, a two-node Ray cluster via
--address, SIGKILL + --resume, PostgreSQL, two studies in one storage."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners import make_storage
from runners._settings import DESIGNS
from search_spaces import space_names
from study import record
from study.cli import run_cli
from study.run import main

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv], prog="python -m study.run")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _load(run_dir: Path, name: str | None = None, storage: str | None = None) -> optuna.Study:
    settings = json.loads((run_dir / "settings.json").read_text())
    return optuna.load_study(study_name=name or settings["name"], storage=storage or settings["storage"])


def _finished(study) -> list:
    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _env():
    env = dict(os.environ)
    env.pop("STUDY_DEBUG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    buggy = tmp_path / "buggy_space.py"
    buggy.write_text("def define(trial, **settings):\n    raise RuntimeError('a bug in the space')\n")
    return [
        (["--space", "nope"], "unknown space 'nope'"),
        (["--space", "eca_kmap", "--sampler", "bogus"], "--sampler"),
        (["--space", "eca_kmap", "--pruner", "bogus"], "--pruner"),
        (["--space", "eca_kmap", "--storage", "not a url"], "--storage"),
        (["--space", "eca_kmap", "--storage", "postgresql://"], "names no host"),
        (["--space", "eca_kmap", "--data", tmp_path / "missing"], "no such cache folder"),
        (["--space", "eca_kmap", "--out", a_file], "is not a folder"),
        (["--space", "eca_kmap", "--runner", "local", "--address", "auto"], "--address"),
        (["--space", "eca_kmap", "--runner", "local", "--stage-data"], "--stage-data: ships the cache to Ray nodes"),
        (["--space", "eca_kmap", "--proxy", "synthetic", "--data", tmp_path], "--data"),
        (["--space", "eca_kmap", "--objectives", "top1,flops"], "unknown objective 'flops'"),
        (["--space", "eca_kmap", "--objectives", "top1,macs", "--sampler", "cmaes"], "optimises one objective"),
        (["--space", "eca_kmap", "--pruner", "sha", "--pruner-warmup", "2"], "--pruner-warmup"),
        (["--space", "eca_kmap", "--sampler", "grid"], "defines no grid"),
        (["--space", "eca_kmap", "--max-failures", "-2"], "--max-failures: must be >= 0, got -2"),
        (["--space", "eca_kmap", "--max-failures=-2"], "--max-failures: must be >= 0, got -2"),
        (["--space", "eca_kmap", "--pruner-warmup", "-1"], "--pruner-warmup: must be an integer >= 0"),
        (["--space", "eca_kmap", "--pruner-startup", "x"], "--pruner-startup: invalid int value"),
        (["--space", "eca_kmap", "--pruner", "sha", "--reduction-factor", "1"], "--reduction-factor: must be an integer >= 2"),
        (["--space", "eca_kmap", "--pruner", "pareto", "--pruner-percentile", "100"], "--pruner-percentile: must be an integer in [1, 99]"),
        (["--space", "eca_kmap", "--pruner", "sha", "--pruner-percentile", "50"], "does not take option 'percentile'"),
        (["--space", "eca_kmap", "--objectives", "top1,macs", "--pruner", "sha", "--min-resource", "2"],
         "--pruner: sha prunes one objective"),
        (["--space", "eca_kmap", "--trials", "0"], "--trials: must be >= 1"),
        (["--space", "eca_kmap", "--backbone", "vgg"], "--backbone: unknown backbone 'vgg'"),
        (["--space", "eca_kmap", "--set", "proxy.nope=1"], "unknown key 'nope'"),
        (["--space", "eca_kmap", "--set", "recipe"], "--set"),
        (["--space", "eca_kmap", "--set", "recipe.epochs=null"], "recipe.epochs"),
        (["--space", "eca_kmap", "--set", "recipe.warmup_epochs=abc"], "recipe.warmup_epochs"),
        (["--space", "eca_kmap", "--width", "3"], "width"),
        (["--space", "eca_kmap", "--proxy", "nope"], "--proxy: unknown preset"),
        (["--space", "eca_kmap", "--gpus-per-trial", "-1"], "--gpus-per-trial"),
        (["--space", str(tmp_path / "x.py") + ":f"], "no such file"),
        (["--space", f"{buggy}:define"], "RuntimeError: a bug in the space"),
        (["--resume"], "--resume needs --name"),
        (["--name", "ghost", "--resume"], "no study 'ghost'"),
        ([], "--space is required"),
    ]


def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    out = tmp_path / "runs"
    for argv, match in _bad_inputs(tmp_path):
        code, stdout, err = _cli([*argv, "--out", out] if "--out" not in map(str, argv) else argv, capsys)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and err.startswith("python -m study.run: error: "), (argv, err)
        assert match in err, (argv, err)
        assert "Traceback" not in err
        assert not out.exists(), f"{argv} created {list(out.rglob('*'))}"


def test_a_negative_max_failures_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    code, _, err = _cli(["--space", "eca_kmap", "--max-failures", "-2", "--out", tmp_path / "runs"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--max-failures: must be >= 0, got -2" in err, err
    assert not (tmp_path / "runs").exists()


def test_bad_input_with_a_storage_creates_no_database(tmp_path, capsys, monkeypatch):
    # the name check asks the storage whether the study exists: that must not create the file
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    db = tmp_path / "new.db"
    for extra in (["--name", "x"], []):
        code, _, err = _cli(["--space", "eca_kmap", "--storage", f"sqlite:///{db}", "--width", "3", *extra,
                             "--out", tmp_path / "runs"], capsys)
        assert code == 2 and "width" in err, err
        assert not db.exists() and not (tmp_path / "runs").exists()


def test_an_unreachable_ray_address_is_one_line_and_quick(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()  # a fresh driver: this process may be connected to the test cluster
    proc = subprocess.run([sys.executable, "-m", "study.run", "--space", "eca_kmap", "--address", f"127.0.0.1:{port}",
                           "--out", str(tmp_path / "runs")], env=_env(), capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 2 and "cannot connect to the Ray cluster" in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 60 and not (tmp_path / "runs").exists()


def test_list_spaces(capsys):
    code, out, err = _cli(["--list-spaces"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == space_names()
    assert "20 trials x 3 epochs" in next(line for line in lines if line.startswith("eca_kmap"))


def test_the_default_study_settings(tmp_path):
    from runners.cli import build_parser, resolve_settings

    settings, space, created = resolve_settings(build_parser().parse_args(["--space", "eca_kmap", "--out", str(tmp_path)]))
    assert created and not list(tmp_path.iterdir())  # resolving creates nothing
    assert (settings.name, settings.runner, settings.trials, settings.recipe.epochs) == ("eca_kmap", "ray", 20, 3)
    assert (settings.concurrency, settings.max_concurrent, settings.cpus_per_trial, settings.threads) == (2, None, 1.0, 1)
    assert settings.proxy.source == "synthetic" and settings.proxy.num_classes == 10 and settings.proxy.resolution == 32
    assert settings.storage == f"sqlite:///{tmp_path.resolve() / 'eca_kmap' / 'study.db'}"
    assert (settings.sampler, settings.pruner) == ("tpe", "pareto")
    assert settings.pruner_options == {"percentile": 50, "warmup": 1, "startup": 1}
    mo, _, _ = resolve_settings(build_parser().parse_args(["--space", "eca_kmap", "--objectives", "top1,macs", "--out", str(tmp_path)]))
    assert (mo.sampler, mo.pruner, mo.directions) == ("nsga2", "pareto", ["maximize", "minimize"])
    assert mo.pruner_options == {"percentile": 75, "warmup": 1, "startup": 1}
    for design in ("inference", "confirm"):  # designs that measure stay unpruned with several objectives too
        assert DESIGNS[design].multi_objective_pruner == DESIGNS[design].pruner == "none"
    inf, _, _ = resolve_settings(build_parser().parse_args(["--space", "eca_kmap", "--design", "inference", "--objectives",
                                                            "top1,macs", "--out", str(tmp_path)]))
    assert inf.pruner == "none"


@pytest.mark.parametrize("space", [s for s in space_names() if s != "kmap_confirm"])  # it needs --from: tests/runners/test_designs.py
def test_every_space_runs_two_tiny_trials_end_to_end(space, tmp_path, capsys, tiny_flags):
    code, out, err = _cli(["--space", space, "--runner", "local", "--trials", 2, "--epochs", 1, "--out", tmp_path, *tiny_flags], capsys)
    assert code == 0, err
    run_dir = tmp_path / space
    study = _load(run_dir)
    finished = _finished(study)
    assert len(finished) == 2
    for t in finished:
        assert t.user_attrs[record.CONFIG]["arch"]["width"] == 0.25 and len(t.user_attrs[record.HISTORY]) == 1
        assert (run_dir / "trials" / str(t.number) / "config.json").exists()
    assert "next: python -m analysis.report" in out and "best trial" in out and str(run_dir) in out
    assert json.loads((run_dir / "settings.json").read_text())["space"] == space


def test_an_existing_name_needs_resume_and_names_are_derived(tmp_path, capsys, tiny_flags):
    args = ["--space", "se_ratio", "--runner", "local", "--trials", 1, "--epochs", 1, "--out", tmp_path, *tiny_flags]
    assert _cli(args, capsys)[0] == 0
    assert _cli(args, capsys)[0] == 0  # a second study of the space gets the next name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["se_ratio", "se_ratio-2"]
    before = (tmp_path / "se_ratio" / "study.db").read_bytes()
    code, out, err = _cli([*args, "--name", "se_ratio"], capsys)
    assert code == 2 and "already exists" in err and "--resume" in err
    assert (tmp_path / "se_ratio" / "study.db").read_bytes() == before
    # --resume with more trials continues the latest study of the space
    code, out, err = _cli(["--space", "se_ratio", "--resume", "--trials", 2, "--out", tmp_path, "--runner", "local"], capsys)
    assert code == 0, err
    assert len(_finished(_load(tmp_path / "se_ratio-2"))) == 2 and len(_finished(_load(tmp_path / "se_ratio"))) == 1
    code, out, err = _cli(["--name", "se_ratio", "--resume", "--epochs", 5, "--out", tmp_path], capsys)
    assert code == 2 and "--epochs: a resumed study keeps its epochs" in err


def test_a_driver_killed_while_writing_settings_leaves_them_readable(tmp_path, capsys, tiny_flags, monkeypatch):
    args = ["--space", "se_ratio", "--name", "s", "--runner", "local", "--trials", 1, "--epochs", 1, "--out", tmp_path, *tiny_flags]
    assert _cli(args, capsys)[0] == 0
    settings = tmp_path / "s" / "settings.json"
    before = settings.read_text()
    write_text = Path.write_text

    def dies_halfway(self, data, *a, **kw):  # the driver is killed in the middle of the write
        write_text(self, data[: len(data) // 2], *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", dies_halfway)
    code, _, _ = _cli(["--name", "s", "--resume", "--trials", 2, "--out", tmp_path, "--runner", "local"], capsys)
    monkeypatch.undo()
    assert code == 130
    assert json.loads(settings.read_text()) == json.loads(before)  # --resume can still read them


def test_multi_objective_ignores_a_pruner_and_says_so_and_timeout_stops(tmp_path, capsys, tiny_flags):
    base = ["--space", "se_ratio", "--runner", "local", "--epochs", 1, "--out", tmp_path, *tiny_flags]
    code, out, err = _cli([*base, "--objectives", "top1,params", "--pruner", "median", "--trials", 1], capsys)
    assert code == 0 and "note: --pruner median ignored" in err and "pruned by pareto" in err
    assert json.loads((tmp_path / "se_ratio" / "settings.json").read_text())["pruner"] == "pareto"
    (t,) = _finished(_load(tmp_path / "se_ratio"))
    assert len(t.values) == 2 and t.values[1] == t.user_attrs[record.COSTS]["params"] and "Pareto front" in out
    code, out, err = _cli([*base, "--name", "quick", "--timeout", "0.001", "--trials", 5], capsys)
    assert "timeout of 0.001 s reached" in out
    assert not _finished(_load(tmp_path / "quick"))  # nothing finished: exit status 4, said on the last line
    assert code == 4 and err.strip().splitlines()[-1] == ("python -m study.run: no trial of the study has finished "
                                                          "(timeout of 0.001 s reached) (exit status 4)"), err


# ----------------------------------------------------------------------------- storages


def test_postgresql_storage(postgres_url, tmp_path, capsys, tiny_flags):
    name = f"test-run-cli-{uuid.uuid4().hex[:8]}"
    try:
        code, out, err = _cli(["--space", "eca_kmap", "--runner", "local", "--name", name, "--storage", postgres_url,
                               "--trials", 2, "--epochs", 1, "--out", tmp_path, *tiny_flags], capsys)
        assert code == 0, err
        study = optuna.load_study(study_name=name, storage=make_storage(postgres_url))
        finished = _finished(study)
        assert len(finished) == 2 and all(t.user_attrs[record.COSTS]["params"] > 0 for t in finished)
        assert not (tmp_path / name / "study.db").exists() and (tmp_path / name / "settings.json").exists()
        # the name is taken in the shared storage, even from another --out
        code, out, err = _cli(["--space", "eca_kmap", "--runner", "local", "--name", name, "--storage", postgres_url,
                               "--out", tmp_path / "elsewhere", *tiny_flags], capsys)
        assert code == 2 and "already exists in the storage" in err
    finally:
        try:
            optuna.delete_study(study_name=name, storage=make_storage(postgres_url))
        except KeyError:
            pass


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_studies_driven_at_once_share_one_storage(kind, request, tmp_path, tiny_flags):
    """Two drivers write to one SQLite file / one PostgreSQL database at the same time: both
    finish, and neither sees the other's trials."""
    suffix = uuid.uuid4().hex[:8]
    names = {"eca_kmap": f"a-{suffix}", "se_ratio": f"b-{suffix}"}
    storage = f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "study.run", "--space", space, "--name", name, "--runner", "local", "--storage", storage,
             "--trials", "1", "--epochs", "1", "--out", str(tmp_path), "--quiet", *tiny_flags],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for space, name in names.items()
    ]
    try:
        for p in procs:
            out, _ = p.communicate(timeout=240)
            assert p.returncode == 0, out
        assert set(names.values()) <= set(optuna.get_all_study_names(make_storage(storage)))
        a, b = (optuna.load_study(study_name=n, storage=make_storage(storage)) for n in names.values())
        assert len(_finished(a)) == 1 and len(_finished(b)) == 1
        assert {s["kind"] for t in a.get_trials() for s in t.user_attrs.get(record.STAGES, [])} == {"eca"}
        assert {s["kind"] for t in b.get_trials() for s in t.user_attrs.get(record.STAGES, [])} == {"se"}
        for study in (a, b):  # each study numbers its own trials, 0, 1, ...
            assert [t.number for t in study.get_trials()] == list(range(len(study.get_trials())))
    finally:
        if kind == "postgresql":
            for name in names.values():
                try:
                    optuna.delete_study(study_name=name, storage=make_storage(storage))
                except KeyError:
                    pass


# ----------------------------------------------------------------------------- Ray cluster


def test_a_study_on_a_two_node_ray_cluster_via_address(ray_cluster, tmp_path, tiny_flags):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--space", "eca_kmap", "--address", ray_cluster.address, "--trials", "3",
         "--epochs", "1", "--max-concurrent", "2", "--cpus-per-trial", "1", "--pruner", "none", "--out", str(tmp_path), *tiny_flags],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = _load(tmp_path / "eca_kmap")
    assert len(_finished(study)) == 3
    assert "trial 0 started (reference paper_psi)" in proc.stdout and "best top1" in proc.stdout
    # one CPU per node and one per trial: two trials at once means one on each node
    spans = [(t.datetime_start, t.datetime_complete) for t in _finished(study)]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])


def _states(db: Path, name: str) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=10) as con:
            rows = con.execute(
                "SELECT t.state, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ? GROUP BY t.state",
                (name,),
            ).fetchall()
    except sqlite3.OperationalError:  # the driver is still creating the schema
        return {}
    return dict(rows)


def test_sigkill_the_driver_then_resume(ray_cluster, tmp_path, tiny_flags):
    args = ["--space", "eca_kmap", "--name", "killed", "--address", ray_cluster.address, "--trials", "3", "--epochs", "2",
            "--pruner", "none", "--max-concurrent", "2", "--out", str(tmp_path), *tiny_flags]
    driver = subprocess.Popen([sys.executable, "-m", "study.run", *args], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "killed" / "study.db"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            s = _states(db, "killed")
            if s.get("COMPLETE", 0) >= 1 and s.get("RUNNING", 0) >= 1:
                break
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail(f"no trial completed while another ran within 240 s: {_states(db, 'killed')}")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    before = _load(tmp_path / "killed")
    complete_before = {t.number: (t.params, t.value) for t in before.get_trials() if t.state == TrialState.COMPLETE}
    running_before = {t.number: t.params for t in before.get_trials() if t.state == TrialState.RUNNING}
    assert complete_before and running_before

    proc = subprocess.run([sys.executable, "-m", "study.run", "--name", "killed", "--resume", "--address", ray_cluster.address,
                           "--out", str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = _load(tmp_path / "killed")
    trials = after.get_trials()
    assert len(_finished(after)) == 3  # the requested number of finished trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for number, (params, value) in complete_before.items():  # no completed trial lost or changed
        t = trials[number]
        assert t.state == TrialState.COMPLETE and t.params == params and t.value == value
    for number, params in running_before.items():  # interrupted: failed, and run again exactly once
        assert trials[number].state == TrialState.FAIL and "interrupted" in trials[number].user_attrs[record.ERROR]
        reruns = [t for t in trials if t.user_attrs.get("resumed_from") == number]
        assert len(reruns) == 1 and reruns[0].user_attrs[record.ATTEMPT] == 2
        # (a driver killed while the space ran leaves some parameters unsuggested)
        assert {k: reruns[0].params[k] for k in params} == params
    # no completed configuration was run twice: only the interrupted trials were re-run
    rerun_of = [t.user_attrs["resumed_from"] for t in trials if t.user_attrs.get("resumed_from") is not None]
    assert sorted(rerun_of) == sorted(running_before)
    assert "resume: trials" in proc.stdout and (tmp_path / "killed" / "ray" / "run-2").is_dir()


def test_kinds_restricts_attention_nas_and_is_kept_on_resume(tmp_path, capsys, tiny_flags, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    out = tmp_path / "runs"
    for argv, match in ((["--space", "attention_nas", "--kinds", "eca,sk"], "--kinds: unknown attention kind 'sk'"),
                        (["--space", "eca_kmap", "--kinds", "eca"], "--kinds: only the attention_nas space")):
        code, _, err = _cli([*argv, "--out", out], capsys)
        assert code == 2 and match in err and not out.exists(), err
    base = ["--space", "attention_nas", "--name", "nas", "--runner", "local", "--epochs", 1, "--out", out, *tiny_flags]
    assert _cli([*base, "--kinds", "eca,none", "--trials", 2], capsys)[0] == 0
    kinds = {s["kind"] for t in _finished(_load(out / "nas")) for s in t.user_attrs[record.STAGES]}
    assert kinds <= {"eca", "none"}
    code, _, err = _cli(["--name", "nas", "--resume", "--out", out, "--kinds", "se"], capsys)
    assert code == 2 and "--kinds: a resumed study keeps its kinds" in err
