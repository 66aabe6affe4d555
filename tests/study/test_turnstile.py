"""study.turnstile: a latency probe excludes the node's trainings and the trainings the
probe, across processes; every wait has a limit, so nothing here can hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.turnstile import ENV, Turnstile, node_turnstile

ROOT = Path(__file__).resolve().parents[2]

#: a training loop in another process: it holds the shared lock, passes the gate every 5 ms
#: and counts its steps in ``beats`` until ``stop`` appears (or 60 s)
TRAINER = '''
import sys, time
from pathlib import Path
from study.turnstile import Turnstile
folder = Path(sys.argv[1])
with Turnstile(folder / "t").computing(wait_s=30) as gate:
    (folder / "in").write_text(str(gate.held))
    n, t0 = 0, time.monotonic()
    while not (folder / "stop").exists() and time.monotonic() - t0 < 60:
        n += 1
        (folder / "beats.tmp").write_text(str(n))
        (folder / "beats.tmp").replace(folder / "beats")
        time.sleep(0.005)
        gate.step()
    (folder / "out").write_text(f"{gate.stops} {gate.waited_s}")
'''

#: a probe in another process: it has the node to itself for ``hold`` seconds
PROBE = '''
import sys, time
from pathlib import Path
from study.turnstile import Turnstile
folder, hold = Path(sys.argv[1]), float(sys.argv[2])
with Turnstile(folder / "t").alone(wait_s=30) as alone:
    (folder / "alone").write_text(str(alone))
    time.sleep(hold)
'''


def _spawn(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, str(tmp_path), *args], cwd=ROOT)


def _wait_for(path: Path, timeout: float = 60.0) -> str:
    t0 = time.monotonic()
    while not path.exists() or not path.read_text():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)
    return path.read_text()


def _beats(tmp_path: Path) -> int:
    return int((tmp_path / "beats").read_text())


def test_a_probe_stops_the_trainings_of_another_process_and_lets_them_go_on(tmp_path):
    trainer = _spawn(tmp_path, TRAINER)
    try:
        assert _wait_for(tmp_path / "in") == "True"
        _wait_for(tmp_path / "beats")
        with Turnstile(tmp_path / "t").alone(wait_s=30) as alone:
            assert alone is True
            before = _beats(tmp_path)
            time.sleep(0.5)
            assert _beats(tmp_path) == before  # the training waits at the gate
        t0 = time.monotonic()
        while _beats(tmp_path) <= before and time.monotonic() - t0 < 30:
            time.sleep(0.01)
        assert _beats(tmp_path) > before  # and goes on once the gate is open
        (tmp_path / "stop").write_text("1")
        stops, waited = _wait_for(tmp_path / "out").split()
        assert int(stops) == 1 and float(waited) >= 0.4
    finally:
        (tmp_path / "stop").write_text("1")
        trainer.wait(timeout=60)


def test_a_training_waits_while_another_process_probes(tmp_path):
    probe = _spawn(tmp_path, PROBE, "1.0")
    try:
        assert _wait_for(tmp_path / "alone") == "True"
        t0 = time.monotonic()
        with Turnstile(tmp_path / "t").computing(wait_s=30) as gate:
            entered = time.monotonic() - t0
            assert gate.held
        assert 0.5 < entered < 30  # it came in when the probe was done
    finally:
        probe.wait(timeout=60)


def test_every_wait_has_a_limit(tmp_path):
    """A probe that cannot have the node in time measures anyway (False); a training that
    cannot pass goes on without the lock."""
    turnstile = Turnstile(tmp_path / "t")
    probe = _spawn(tmp_path, PROBE, "3.0")
    try:
        _wait_for(tmp_path / "alone")
        t0 = time.monotonic()
        with turnstile.computing(wait_s=0.2) as gate:
            assert not gate.held and time.monotonic() - t0 < 2.5
        with turnstile.alone(wait_s=0.2) as alone:  # the other probe has the gate
            assert alone is False
    finally:
        probe.wait(timeout=60)
    with turnstile.computing() as gate:  # this process's training: its own probe cannot get the node
        assert gate.held
        with turnstile.alone(wait_s=0.2) as alone:
            assert alone is False
    with turnstile.alone(wait_s=5) as alone:
        assert alone is True


def test_the_gate_costs_two_system_calls_a_step(tmp_path):
    with Turnstile(tmp_path / "t").computing() as gate:
        t0 = time.perf_counter()
        for _ in range(10_000):
            gate.step()
        per_step = (time.perf_counter() - t0) / 10_000
    assert gate.stops == 0 and per_step < 200e-6  # microseconds against a training step's milliseconds


def test_off_and_the_node_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    off = node_turnstile()
    assert not off.enabled
    with off.computing() as gate, off.alone() as alone:
        gate.step()
        assert alone is None and not gate.held
    monkeypatch.setenv(ENV, str(tmp_path / "here"))
    assert node_turnstile().folder == tmp_path / "here"
    monkeypatch.delenv(ENV)
    assert "channel-attention-study-turnstile" in str(node_turnstile().folder)


@pytest.mark.parametrize("blocked", ["gate.lock", "work.lock"])
def test_a_folder_that_cannot_hold_the_locks_turns_the_turnstile_off(tmp_path, blocked):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / blocked).mkdir()  # a folder where a lock file should be: it cannot be opened
    with Turnstile(folder).computing() as gate, Turnstile(folder).alone() as alone:
        assert alone is None and not gate.held
