"""Faults on purpose, nothing lost: a Ray worker SIGKILLed in the middle of a trial, a node
of the cluster removed in the middle of a study (both through ``python -m study.run
--address``, a real driver process, on the session's real two-node loopback cluster).

The kills are deterministic: the test waits until the study's storage shows a running trial
that has reported its first epoch (so it is in the middle of its second), finds the process
that runs it (a child of one of this cluster's raylets, titled ``ray::ImplicitFunc.train``:
Ray Tune's function trainable at work) and kills that one process or its node.
(The driver killed with SIGKILL and ``--resume``, and two studies at once in one storage,
are in ``test_cli.py``.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study import record

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]
#: Ray Tune's function trainable while it runs a trial
TRAINABLE_TITLE = "ray::ImplicitFunc.train"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STUDY_DEBUG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _study_run(ray_cluster, tmp_path: Path, name: str, tiny_flags, *extra: str) -> subprocess.Popen:
    """A real driver: ``python -m study.run`` on the test cluster, one trial at a time, 3 epochs."""
    argv = [sys.executable, "-m", "study.run", "--space", "eca_kmap", "--name", name, "--address", ray_cluster.address,
            "--trials", "2", "--epochs", "3", "--pruner", "none", "--max-concurrent", "1", "--cpus-per-trial", "1",
            "--max-failures", "1", "--out", str(tmp_path), *tiny_flags, *extra]
    return subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _running_after_epoch_1(db: Path, name: str) -> list[int]:
    """Numbers of the study's RUNNING trials that have reported epoch 1 (read from SQLite)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=10) as con:
            rows = con.execute(
                "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "JOIN trial_intermediate_values v ON v.trial_id = t.trial_id "
                "WHERE s.study_name = ? AND t.state = 'RUNNING' AND v.step = 1", (name,)).fetchall()
    except sqlite3.OperationalError:  # the driver is still creating the schema
        return []
    return [r[0] for r in rows]


def _raylet_pid(node) -> int:
    """The raylet process of one ``ray.cluster_utils.Cluster`` node."""
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _trainables(raylets: set[int]) -> list[int]:
    """Pids of this cluster's processes that run a trial now (children of its raylets only:
    other Ray instances on the machine are left alone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if title == TRAINABLE_TITLE and ppid in raylets:
            found.append(int(entry.name))
    return found


def _nodes(cluster) -> list:
    return [cluster.head_node, *cluster.worker_nodes]


def _wait_for(what: str, probe, driver: subprocess.Popen, timeout: float = 180):
    """Poll ``probe()`` until it returns something truthy; fail when the driver ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        if driver.poll() is not None:
            pytest.fail(f"the driver ended before {what}: {driver.stdout.read()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def _finish(driver: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        out, _ = driver.communicate()
        pytest.fail(f"the study hung after the fault: {out[-3000:]}")
    assert driver.returncode == 0, out[-3000:]
    return out


def _assert_nothing_lost(tmp_path: Path, name: str, hit: int) -> None:
    """The study reached its budget (2), every trial complete with all 3 epochs, none failed
    or run twice, and the trial hit by the fault among them."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}")
    ran = [t for t in study.get_trials() if t.state != TrialState.WAITING]
    assert [t.state for t in ran] == [TrialState.COMPLETE] * 2, [(t.number, t.state, t.user_attrs.get(record.ERROR)) for t in ran]
    assert hit in [t.number for t in ran]
    for t in ran:
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert [h["epoch"] for h in t.user_attrs[record.HISTORY]] == [1, 2, 3]
        assert t.value == max(t.intermediate_values.values()) and t.user_attrs[record.OUTCOME] == "complete"
        assert record.RESUMED_FROM not in t.user_attrs  # retried by Ray, not re-queued as a new trial


def test_a_worker_killed_in_the_middle_of_a_trial_is_retried(ray_cluster, tmp_path, tiny_flags):
    raylets = {_raylet_pid(n) for n in _nodes(ray_cluster)}
    driver = _study_run(ray_cluster, tmp_path, "wk", tiny_flags)
    try:
        db = tmp_path / "wk" / "study.db"
        (hit,) = _wait_for("a trial in its second epoch", lambda: _running_after_epoch_1(db, "wk"), driver)
        (pid,) = _wait_for("the process of that trial", lambda: _trainables(raylets), driver)
        os.kill(pid, signal.SIGKILL)
        assert hit in _running_after_epoch_1(db, "wk")  # killed in the middle of it, not after
        _finish(driver)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    _assert_nothing_lost(tmp_path, "wk", hit)


def _blocker(node_id: str):
    """An actor holding one CPU of node ``node_id`` (so that trials go elsewhere)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    class Blocker:
        def ready(self) -> bool:
            return True

    return Blocker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()


def test_a_node_removed_in_the_middle_of_a_study(ray_cluster, tmp_path, tiny_flags):
    """A third node joins; the other two are filled, so the first trial runs there; once it is
    in its second epoch one node is freed and the third removed (its processes SIGKILLed): the
    trial runs again on the freed node and the study finishes."""
    import ray

    original = _nodes(ray_cluster)
    victim = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    blockers = {n.node_id: _blocker(n.node_id) for n in original}
    driver = None
    try:
        ray.get([b.ready.remote() for b in blockers.values()], timeout=60)
        driver = _study_run(ray_cluster, tmp_path, "node", tiny_flags)
        db = tmp_path / "node" / "study.db"
        (hit,) = _wait_for("a trial in its second epoch", lambda: _running_after_epoch_1(db, "node"), driver)
        # Ray titles the trial's process ray::ImplicitFunc.train while Tune waits on it for a result: a
        # result just recorded may leave it untitled for a moment, as the other fault test allows
        _wait_for("the trial's process on the third node", lambda: _trainables({_raylet_pid(victim)}), driver, timeout=30)
        ray.kill(blockers.pop(original[1].node_id))  # room on the worker node
        ray_cluster.remove_node(victim, allow_graceful=False)
        victim = None
        _finish(driver)
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        for b in blockers.values():
            ray.kill(b)
        if victim is not None:
            ray_cluster.remove_node(victim)
        deadline = time.monotonic() + 60  # the other tests count the cluster's nodes
        while len([n for n in ray.nodes() if n["Alive"]]) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    _assert_nothing_lost(tmp_path, "node", hit)
