"""The recorder of a data-parallel run: a small Ray actor on the driver's node that owns the
run's output folder.

Rank 0 hands it each epoch's metrics (it rewrites ``metrics.csv`` / ``metrics.json``) and
each checkpoint's bytes (it writes ``checkpoint.pt`` atomically, in the same format a
one-process run writes); every rank reads the last checkpoint from it to resume, after a
``--resume`` or after Ray Train restarted the workers. So the output folder need not be on a
shared filesystem: it lives where the driver runs. The driver polls the recorder for log
lines (live progress) and the final result; a test (or a curious user) finds it by name
(:func:`recorder_name`) in the ``study`` namespace to see the workers' pids and progress.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.metrics import EpochMetrics, MetricsWriter, Reporter

if TYPE_CHECKING:
    from ray.actor import ActorHandle

__all__ = ["Recorder", "RecorderStore", "RecorderReporter", "recorder_name", "NAMESPACE"]

#: the Ray namespace of recorders
NAMESPACE = "study"


def recorder_name(out: str | os.PathLike) -> str:
    """The actor name of the recorder of the run writing into ``out``."""
    return "study.train-" + hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:16]


class Recorder:
    """Owns ``out``: metrics files and the checkpoint; collects log lines, worker
    registrations, failures and the final result (made a Ray actor by the launcher)."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.metrics = MetricsWriter(self.out)
        self.lines: list[str] = []
        self.workers: dict[int, dict[str, Any]] = {}
        self.attempts = 0
        self.epoch = 0
        self.checkpoint_epoch: int | None = None
        self.result: dict[str, Any] | None = None
        self.errors: dict[int, str] = {}
        self.started = time.time()

    def hello(self, rank: int, pid: int, node_id: str, hostname: str) -> None:
        """A worker started (again, after a restart: a new attempt when rank 0 says hello)."""
        if rank == 0:
            self.attempts += 1
            if self.attempts > 1:
                self.lines.append(f"workers restarted (attempt {self.attempts}): resuming from the last checkpoint")
        self.workers[rank] = {"pid": pid, "node_id": node_id, "hostname": hostname, "attempt": self.attempts}

    def log(self, line: str) -> None:
        self.lines.append(str(line))

    def report(self, metrics: dict[str, Any]) -> bool:
        self.epoch = int(metrics["epoch"])
        return self.metrics.report(EpochMetrics.from_dict(metrics))

    def save_checkpoint(self, data: bytes, epoch: int) -> None:
        from study.trainer import write_checkpoint_bytes

        write_checkpoint_bytes(self.out, data)
        self.checkpoint_epoch = int(epoch)

    def load_checkpoint(self) -> bytes | None:
        from study.trainer import checkpoint_path

        path = checkpoint_path(self.out)
        return path.read_bytes() if path.is_file() else None

    def fail(self, rank: int, text: str) -> None:
        self.errors[rank] = str(text)

    def finish(self, result: dict[str, Any]) -> None:
        self.result = result

    def poll(self, since: int) -> tuple[list[str], int]:
        """Log lines after the first ``since`` ones, and the new count."""
        return self.lines[since:], len(self.lines)

    def state(self) -> dict[str, Any]:
        """Workers (rank -> pid, node, attempt), attempts, the last reported epoch, the
        epoch of the last checkpoint, errors, whether a result arrived."""
        return {"workers": dict(self.workers), "attempts": self.attempts, "epoch": self.epoch,
                "checkpoint_epoch": self.checkpoint_epoch, "errors": dict(self.errors), "finished": self.result is not None}

    def get_result(self) -> dict[str, Any] | None:
        return self.result


class RecorderStore:
    """A :class:`study.trainer.CheckpointStore` kept by the recorder: every rank loads the
    last checkpoint from it; rank 0 saves."""

    def __init__(self, recorder: ActorHandle[Recorder], where: str):
        self.recorder = recorder
        self.where = where

    def load(self) -> dict[str, Any] | None:
        import ray

        from study.trainer import parse_checkpoint

        data = ray.get(self.recorder.load_checkpoint.remote())
        return None if data is None else parse_checkpoint(data, self.where)

    def save(self, state: dict[str, Any]) -> None:
        import ray

        from study.trainer import checkpoint_bytes

        ray.get(self.recorder.save_checkpoint.remote(checkpoint_bytes(state), int(state["epoch"])))

    def __str__(self) -> str:
        return self.where


class RecorderReporter(Reporter):
    """Rank 0's reporter: each epoch's metrics to the recorder (which writes the metrics
    files) before the epoch's checkpoint."""

    def __init__(self, recorder: ActorHandle[Recorder]):
        self.recorder = recorder

    def report(self, metrics: EpochMetrics) -> bool:
        import ray

        return bool(ray.get(self.recorder.report.remote(metrics.to_dict())))
