"""MLflow tracking of a study (``--mlflow URI``, issue 20 item 5): real studies logged to a real
``mlflow server`` on loopback and to a sqlite store - the run tree, params, per-epoch metrics
at their steps, tags, the TrialConfig artifact; ``--resume`` continuing the same runs; the
report attached to the study's run; bad input (one line, exit 2, nothing created); a server
killed in the middle of a study (the study goes on, a warning says what was not logged)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners import StudyBridge, open_study, run_local
from runners._simulate import Planted
from runners._tracking import MlflowTracker
from search_spaces import get_space
from study import record, tracking
from study.cli import run_cli
from study.run import main

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra (also in `test`)

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]
EPOCHS = ("top1", "top5", "val_loss", "train_loss", "lr")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _cli(argv, capsys, entry=main, prog="python -m study.run"):
    with pytest.raises(SystemExit) as info:
        run_cli(entry, [str(a) for a in argv], prog=prog)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend and artifacts under ``root``),
    in its own process group (the server runs uvicorn as a child)."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root / "server.log", "w")  # closed in stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}): {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health in 150 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: the server and its uvicorn worker
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server.url
    server.stop()


def _client(uri):
    return mlflow.MlflowClient(tracking_uri=uri)


def _runs(uri, name, storage):
    with tracking.client_scope(uri):
        return tracking.study_runs(_client(uri), name, storage)


PLANTED = Planted(effect=1.0)


def _simulated(settings, observers, planted=PLANTED, *, create=True):
    """A study through the real bookkeeping (bridge, storage, local runner, observers), its
    trainer :meth:`Planted.train` (seconds, no training)."""
    space = get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=create), space, settings, observers=observers)
    if create:
        bridge.enqueue_references()
    else:
        bridge.recover_interrupted()
    bridge.study_started()
    try:
        run_local(bridge, train=planted.train, load_proxy=lambda proxy: None)
    finally:
        bridge.study_finished()
    return bridge


def _check_trial_run(client, run, t, parent_id):
    """A trial's MLflow run shows its Optuna record: nesting, tags, params, epochs, costs, config."""
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent_id and tags[tracking.TAG_KIND] == "trial"
    assert tags[tracking.TAG_TRIAL] == str(t.number)
    assert tags[tracking.TAG_STATE] == {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[t.state]
    assert tags["outcome"] == t.user_attrs[record.OUTCOME]
    assert run.info.status == ("FAILED" if t.state == TrialState.FAIL else "FINISHED")
    assert run.data.params == {k: str(v) for k, v in t.params.items()}
    history = t.user_attrs.get(record.HISTORY) or []
    for key in EPOCHS:
        logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(logged) == [(h["epoch"], pytest.approx(h[key])) for h in history], key
    costs = t.user_attrs[record.COSTS]
    assert run.data.metrics["cost_params"] == costs["params"] and run.data.metrics["cost_macs"] == costs["macs"]
    if t.state == TrialState.FAIL:
        assert tags["error"]
    config = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json")).read_text())
    assert config == t.user_attrs[record.CONFIG]


# ----------------------------------------------------------------------------- a tracking server


def test_a_study_logged_to_a_tracking_server_resumed_and_reported(mlflow_server, tmp_path, capsys, tiny_flags):
    flags = ["--runner", "local", "--epochs", 2, "--pruner", "none", "--out", tmp_path, "--mlflow", mlflow_server, *tiny_flags]
    code, out, err = _cli(["--space", "eca_kmap", "--name", "srv", "--trials", 2, *flags], capsys)
    assert code == 0, err
    assert "trial 0 epoch 1/2: top1 " in out and "trial 1 epoch 2/2: top1 " in out, out  # progress per epoch
    run_dir = tmp_path / "srv"
    settings = json.loads((run_dir / "settings.json").read_text())
    storage = settings["storage"]
    study = optuna.load_study(study_name="srv", storage=storage)
    client = _client(mlflow_server)
    found = _runs(mlflow_server, "srv", storage)
    parent = found.study
    assert parent is not None and parent.info.status == "FINISHED" and parent.data.tags[tracking.TAG_KIND] == "study"
    assert client.get_experiment(parent.info.experiment_id).name == "srv"
    assert parent.data.params["trials"] == "2" and parent.data.params["space"] == "eca_kmap"
    assert parent.data.params["recipe.epochs"] == "2" and parent.data.metrics["trials_complete"] == 2
    assert sorted(found.trials) == [0, 1]
    for t in study.get_trials(states=FINISHED):
        _check_trial_run(client, found.trials[t.number], t, parent.info.run_id)

    # --resume continues the same runs: one more trial, nothing duplicated
    code, out, err = _cli(["--name", "srv", "--resume", "--trials", 3, "--out", tmp_path, "--quiet", "--mlflow", mlflow_server], capsys)
    assert code == 0, err
    assert "epoch 1/2" not in out and "started" not in out and out.count("complete: top1") == 1, out  # --quiet: one line per trial
    again = _runs(mlflow_server, "srv", storage)
    assert again.study.info.run_id == parent.info.run_id and sorted(again.trials) == [0, 1, 2]
    assert {n: r.info.run_id for n, r in again.trials.items() if n < 2} == {n: r.info.run_id for n, r in found.trials.items()}
    assert len(client.search_runs([parent.info.experiment_id])) == 4
    for t in optuna.load_study(study_name="srv", storage=storage).get_trials(states=FINISHED):
        _check_trial_run(client, again.trials[t.number], t, parent.info.run_id)
    assert again.study.data.metrics["trials_complete"] == 3

    # the report attached to the study's run
    from analysis.report import main as report_main

    code, out, err = _cli([run_dir, "--mlflow", mlflow_server], capsys, entry=report_main, prog="python -m analysis.report")
    assert code == 0, err
    assert "attached" in out
    names = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/trials.csv"} <= names, names
    md = Path(client.download_artifacts(parent.info.run_id, "report/report.md")).read_text()
    assert md == (run_dir / "report" / "report.md").read_text()


def test_a_server_killed_in_the_middle_of_a_study(tmp_path, tiny_settings, capsys):
    server = Server(tmp_path / "server")
    try:
        class Kill:  # after trial 1's first epoch, before the tracker logs it
            def __getattr__(self, name):
                return lambda *args: None

            def epoch(self, live, metrics, bridge):
                if live.number == 1 and metrics["epoch"] == 1:
                    server.stop()

        settings = tiny_settings(name="killed", trials=4)
        started = time.monotonic()
        bridge = _simulated(settings, [Kill(), MlflowTracker(server.url)])
        took = time.monotonic() - started
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert [t.state for t in bridge.study.get_trials()] == [TrialState.COMPLETE] * 4  # the study went on
    warnings = [line for line in err.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 2, err
    assert "logging trial 1 epoch 1" in warnings[0] and "nothing more is logged" in warnings[0]
    assert "not logged" in warnings[1] and "trial 1 (epochs 1-2, end); trial 2 (start, epochs 1-2, end)" in warnings[1], warnings
    assert "trial 3 (start, epochs 1-2, end)" in warnings[1] and "the study's counts" in warnings[1], warnings
    assert "trial 0" not in warnings[1] and "--resume" in warnings[1]
    assert took < 60, f"a lost server held the study for {took:.0f} s"


# ----------------------------------------------------------------------------- a sqlite store


def test_every_state_in_a_sqlite_store_and_resume_fills_in_what_was_missed(tmp_path, tiny_settings):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = tiny_settings(name="states", trials=6, pruner="median", pruner_options={"warmup": 0, "startup": 1})
    planted = Planted(effect=1.0, sigma=2.0, diverge_k=5, diverge_C=16)  # k=5 in the 16-channel stage diverges
    sent = []

    def flaky(run_id, **kwargs):  # the store fails after a few trials: the tracker gives up
        if len(sent) > 12:
            raise ConnectionError("store went away")
        sent.append(run_id)
        return real(run_id, **kwargs)

    class Flaky(MlflowTracker):
        def study_started(self, bridge):
            super().study_started(bridge)
            nonlocal real
            real, self.client.log_batch = self.client.log_batch, flaky

    real = None
    tracker = Flaky(uri, warn=lambda text: None)
    bridge = _simulated(settings, [tracker], planted)
    states = {t.state for t in bridge.study.get_trials()}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} <= states, states
    assert tracker.lost and tracker.missed

    # resumed with two trials more: the runs the first run left unfinished or never made are filled in from the storage
    bridge = _simulated(settings.replace(trials=8), [MlflowTracker(uri)], planted, create=False)
    study = bridge.study
    found = _runs(uri, "states", settings.storage)
    client = _client(uri)
    assert sorted(found.trials) == [t.number for t in study.get_trials()]
    assert len(client.search_runs([found.experiment_id])) == 1 + len(study.get_trials())
    for t in study.get_trials():
        _check_trial_run(client, found.trials[t.number], t, found.study.info.run_id)
    # a sqlite store keeps its artifacts beside it, not in the current folder
    assert found.study.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_an_interrupted_study_ends_its_runs(tmp_path, tiny_settings):
    """Ctrl-C in trial 1: its run ends failed (interrupted), as the storage records it; the study's run is KILLED."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    from study.metrics import Reporter

    class CtrlC(Reporter):  # the reporter of the second trial: Ctrl-C as its first epoch ends
        def __init__(self, reporter):
            self.start = reporter.start

        def report(self, metrics):
            raise KeyboardInterrupt

    calls = []

    class Interrupting(Planted):
        def train(self, config, reporter, **kwargs):
            calls.append(config)
            return super().train(config, CtrlC(reporter) if len(calls) == 2 else reporter, **kwargs)

    settings = tiny_settings(name="stopped", trials=3)
    with pytest.raises(KeyboardInterrupt):
        _simulated(settings, [MlflowTracker(uri)], Interrupting(effect=1.0))
    study = optuna.load_study(study_name="stopped", storage=settings.storage)
    found = _runs(uri, "stopped", settings.storage)
    assert found.study.info.status == "KILLED"
    for t in study.get_trials(states=FINISHED):
        _check_trial_run(_client(uri), found.trials[t.number], t, found.study.info.run_id)
    assert found.trials[1].data.tags["state"] == "failed" and "interrupted" in found.trials[1].data.tags["error"]


def test_a_study_on_a_ray_cluster_logs_from_the_driver(ray_cluster, tiny_settings, tmp_path):
    from runners import run_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_tracking_uri(uri)
    bridge = run_study(tiny_settings(name="ray-mlflow", runner="ray", trials=2, max_concurrent=2, pruner="none"), mlflow=uri)
    found = _runs(uri, "ray-mlflow", bridge.settings.storage)
    trials = bridge.study.get_trials(states=FINISHED)
    assert len(trials) == 2 and sorted(found.trials) == [t.number for t in trials]
    for t in trials:
        _check_trial_run(_client(uri), found.trials[t.number], t, found.study.info.run_id)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("uri, says", [
    ("ftp://host/x", "unsupported tracking URI"),
    ("http://", "no host"),
    ("http://127.0.0.1:notaport", "malformed"),
    ("sqlite:/mlflow.db", "sqlite:///PATH"),
    ("sqlite:///{tmp}/no/such/folder/mlflow.db", "does not exist"),
    ("{tmp}/mlruns", "file store"),
    ("file:///{tmp}/mlruns", "file store"),
    ("http://127.0.0.1:{closed}", "no MLflow tracking server answers"),
])
def test_a_bad_tracking_uri_is_one_line_and_creates_nothing(uri, says, tmp_path, capsys, tiny_flags, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = uri.format(tmp=tmp_path, closed=_free_port())
    out_dir = tmp_path / "runs"
    code, out, err = _cli(["--space", "eca_kmap", "--runner", "local", "--trials", 1, "--epochs", 1, "--out", out_dir,
                           "--mlflow", uri, *tiny_flags], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--mlflow: " in err and says in err, err
    assert not any(tmp_path.iterdir())


def test_mlflow_not_installed_is_one_line(tmp_path, tiny_flags):
    out_dir = tmp_path / "runs"
    code = ("import sys; sys.modules['mlflow'] = None\n"  # `import mlflow` raises ImportError, as without the extra
            "from study.cli import run_cli\nfrom study.run import main\n"
            "run_cli(main, sys.argv[1:], prog='python -m study.run')")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("STUDY_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", code, "--space", "eca_kmap", "--runner", "local", "--trials", "1", "--out",
                           str(out_dir), "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}", *tiny_flags],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--mlflow: MLflow is not installed" in proc.stderr and "pip install -e '.[mlflow]'" in proc.stderr
    assert not out_dir.exists() and not (tmp_path / "mlflow.db").exists()


def test_the_report_of_a_study_without_an_mlflow_run(tmp_path, tiny_settings, capsys):
    from analysis.report import main as report_main

    settings = tiny_settings(name="plain", trials=1)
    _simulated(settings, [])
    db, report = tmp_path / "mlflow.db", tmp_path / "report"
    argv = ["--storage", settings.storage, "--study", "plain", "--out", report]
    for uri, says in ((f"sqlite:///{db}", "no MLflow database"), ("ftp://x", "unsupported")):
        code, _, err = _cli([*argv, "--mlflow", uri], capsys, entry=report_main, prog="python -m analysis.report")
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    assert not db.exists() and not report.exists()
    # a store that holds other studies, not this one
    _simulated(tiny_settings(name="other", trials=1, run_dir=str(tmp_path / "other"), storage=f"sqlite:///{tmp_path / 'other.db'}"),
               [MlflowTracker(f"sqlite:///{db}")])
    code, _, err = _cli([*argv, "--mlflow", f"sqlite:///{db}"], capsys, entry=report_main, prog="python -m analysis.report")
    assert code == 2 and "no MLflow run of study 'plain'" in err, err
    assert not report.exists()


# ----------------------------------------------------------------------------- system metrics


def _system(client, run_id: str) -> dict[str, list[int]]:
    """The study run's system metrics: name -> the steps logged."""
    run = client.get_run(run_id)
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in run.data.metrics if k.startswith("system/")}


def test_the_drivers_system_metrics_on_request_in_a_sqlite_store(tmp_path, capsys, tiny_flags, monkeypatch):
    import torch

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # MLflow's own setting (default 10 s)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--space", "eca_kmap", "--runner", "local", "--epochs", 1, "--out", tmp_path / "runs", "--name", "sys",
            "--mlflow", uri, "--mlflow-system-metrics", *tiny_flags]
    code, out, err = _cli([*argv, "--trials", 1], capsys)
    assert code == 0, out + err
    assert "with the driver's system metrics" in out and err == "", err
    found = _runs(uri, "sys", f"sqlite:///{tmp_path / 'runs' / 'sys' / 'study.db'}")
    client = _client(uri)
    first = _system(client, found.study.info.run_id)
    for name in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                 "system/system_memory_usage_percentage", "system/disk_usage_megabytes", "system/network_receive_megabytes"):
        assert first.get(name), (name, sorted(first))
    assert first["system/cpu_utilization_percentage"] == list(range(len(first["system/cpu_utilization_percentage"])))
    assert any(k.startswith("system/gpu_") for k in first) == torch.cuda.is_available()  # GPUs where present
    # the trial runs carry none: the driver's node is the study's
    assert not any(k.startswith("system/") for r in found.trials.values() for k in client.get_run(r.info.run_id).data.metrics)
    # a resumed study's run goes on from the last step
    code, out, err = _cli([*argv[:-len(tiny_flags)], "--resume", "--trials", 2], capsys)
    assert code == 0, out + err
    again = _system(client, found.study.info.run_id)["system/cpu_utilization_percentage"]
    steps = first["system/cpu_utilization_percentage"]
    assert again[:len(steps)] == steps and len(again) > len(steps) and again == list(range(len(again)))


def test_system_metrics_without_mlflow_or_psutil_are_one_line(tmp_path, capsys, tiny_flags, monkeypatch):
    base = ["--space", "eca_kmap", "--runner", "local", "--trials", 1, "--epochs", 1, "--out", tmp_path / "runs", *tiny_flags]
    code, _, err = _cli([*base, "--mlflow-system-metrics"], capsys)
    assert code == 2 and err.strip() == ("python -m study.run: error: --mlflow-system-metrics: logs to the study's MLflow run; "
                                         "give --mlflow URI too")
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` fails, as without the extra
    code, _, err = _cli([*base, "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}", "--mlflow-system-metrics"], capsys)
    assert code == 2 and err.strip() == ("python -m study.run: error: --mlflow-system-metrics: MLflow's system metrics need psutil, "
                                         "which is not installed: pip install -e '.[mlflow]'")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
