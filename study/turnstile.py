"""The node's turnstile: trainings pass through it, a latency probe closes it.

A latency measured while another trial trains on the same CPUs (or GPU) measures the load
as much as the network. So every training loop on a node holds a *shared* lock while it
computes and, between two steps, looks at a *gate*; a latency probe
(:func:`study.costs.probe_latency`) closes the gate and takes the *exclusive* lock: the
trainings stop at their next step boundary (a GPU training first waits for its queued
kernels), the probe measures with no training computing on the node, then reopens the gate.

The locks are the operating system's (``fcntl.flock`` on two files in a node-local folder,
released by the kernel when a process ends, so a crashed holder cannot leave them held);
there is no scheduler or daemon. Both kinds of wait have a limit: a probe that cannot get
the node within ``wait_s`` measures anyway and says so (``alone`` yields False), and a
training that has waited ``wait_s`` at the gate goes on. Only single-process training takes
part: a rank of a data-parallel group that stopped at the gate would stall its peers inside
a collective, which the probe would wait for (see :func:`study.trainer.train`).

The folder is ``$STUDY_TURNSTILE`` when set (``off`` disables the turnstile), else
``<temp dir>/channel-attention-study-turnstile-<uid>``: one per node and user, shared by every
study, benchmark and CLI of this harness that runs there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock (Windows): the turnstile is off
    fcntl = None  # type: ignore[assignment]

__all__ = ["Turnstile", "Gate", "node_turnstile", "ENV", "GATE_FILE", "WORK_FILE"]

#: the environment variable naming the turnstile's folder ("off": no turnstile)
ENV = "STUDY_TURNSTILE"
GATE_FILE = "gate.lock"
WORK_FILE = "work.lock"


def _lock(fd: int, op: int, wait_s: float) -> bool:
    """``flock(fd, op)`` without blocking, retried with a growing pause (0.5 ms .. 10 ms)
    until it is granted (True) or ``wait_s`` has passed (False)."""
    deadline = time.monotonic() + wait_s
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(2 * pause, 0.01)


class Gate:
    """What a training loop holds (:meth:`Turnstile.computing`): the shared lock, kept
    between steps; :meth:`step` at every step boundary lets a waiting probe in."""

    def __init__(self, gate: int | None, work: int | None, *, sync: Callable[[], object] | None, wait_s: float):
        self._gate, self._work, self._sync, self._wait_s = gate, work, sync, wait_s
        self.held = False
        #: how often this loop stopped for a probe, and for how long in all (seconds)
        self.stops = 0
        self.waited_s = 0.0

    def _enter(self) -> None:
        if self._gate is None:
            return
        t0 = time.monotonic()
        if _lock(self._gate, fcntl.LOCK_SH, self._wait_s):  # through the gate ...
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self.held = _lock(self._work, fcntl.LOCK_SH, self._wait_s)  # ... to the shared lock
        self.waited_s += time.monotonic() - t0

    def step(self) -> None:
        """A step boundary: when a probe has closed the gate, wait for its queued device
        work (``sync``), let go of the shared lock, wait at the gate until the probe is done
        and take the shared lock again. Otherwise (the common case) two system calls."""
        if self._gate is None:
            return
        try:
            fcntl.flock(self._gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # a probe is waiting for the node
            if self._sync is not None:
                self._sync()
            if self.held:
                fcntl.flock(self._work, fcntl.LOCK_UN)
                self.held = False
            self.stops += 1
            self._enter()
            return
        fcntl.flock(self._gate, fcntl.LOCK_UN)


class Turnstile:
    """The two lock files in ``folder`` (None: a turnstile that never waits, for platforms
    without ``flock`` and ``STUDY_TURNSTILE=off``)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None and fcntl is not None else None

    def __repr__(self) -> str:
        return f"Turnstile({str(self.folder) if self.folder else None!r})"

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def _open(self) -> tuple[int, int] | None:
        if self.folder is None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            gate = os.open(self.folder / GATE_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # a folder we cannot write: no turnstile rather than no training
            return None
        try:
            work = os.open(self.folder / WORK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            os.close(gate)
            return None
        return gate, work

    @contextlib.contextmanager
    def computing(self, *, sync: Callable[[], object] | None = None, wait_s: float = 600.0) -> Iterator[Gate]:
        """Hold the node's shared lock for a loop of steps; call the yielded gate's
        :meth:`Gate.step` between steps. ``sync`` waits for this process's queued device
        work (``torch.cuda.synchronize``) before it lets a probe in."""
        fds = self._open()
        gate = Gate(*(fds or (None, None)), sync=sync, wait_s=wait_s)
        try:
            gate._enter()
            yield gate
        finally:
            if fds:
                for fd in fds:
                    os.close(fd)  # releases this process's locks on them

    @contextlib.contextmanager
    def alone(self, *, wait_s: float = 120.0) -> Iterator[bool | None]:
        """Close the gate and wait until no training on the node computes; yields True then,
        False when ``wait_s`` passed first (the caller measures anyway and records that),
        None when the turnstile is off. The gate opens again on leaving."""
        fds = self._open()
        if fds is None:
            yield None
            return
        gate, work = fds
        try:
            deadline = time.monotonic() + wait_s
            closed = _lock(gate, fcntl.LOCK_EX, wait_s)  # another probe may hold it for its few seconds
            alone = closed and _lock(work, fcntl.LOCK_EX, max(0.0, deadline - time.monotonic()))
            yield alone
        finally:
            os.close(work)  # the work lock first: trainings that pass the gate find it free
            os.close(gate)


def node_turnstile() -> Turnstile:
    """This node's turnstile: the folder ``$STUDY_TURNSTILE`` (``off``: disabled), else
    ``<temp dir>/channel-attention-study-turnstile-<uid>``."""
    where = os.environ.get(ENV, "").strip()
    if where.lower() == "off":
        return Turnstile(None)
    if not where:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        where = str(Path(tempfile.gettempdir()) / f"channel-attention-study-turnstile-{uid}")
    return Turnstile(where)
