"""The suite's own safety net: a hung test fails with its stack, and the run goes on."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HUNG = '''
import threading


def test_hangs_in_a_lock_wait():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # a futex wait that never returns, like a deadlocked pool


def test_after_the_hang():
    assert True
'''


def test_a_hung_test_fails_with_its_stack_and_the_run_goes_on(tmp_path):
    """The project's pytest settings (pyproject.toml, pytest-timeout) with the timeout
    shortened to 3 s: the hanging test fails in seconds, names the line it hung on, and the
    next test still runs."""
    (tmp_path / "test_hung.py").write_text(HUNG)
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
                           "-o", "timeout=3", "-q", str(tmp_path / "test_hung.py")],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    elapsed = time.monotonic() - t
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Timeout" in out and "lock.acquire()  # a futex wait" in out, out
    assert "1 failed, 1 passed" in out, out
    assert elapsed < 60, elapsed


def test_the_default_timeout_is_set(pytestconfig):
    """Every test runs under pytest-timeout's limit from pyproject.toml (none would be 0)."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) == 300

