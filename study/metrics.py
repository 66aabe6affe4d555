"""What a trial reports: per-epoch metrics, the reporter protocol, and the trial result.

The trainer (:func:`study.trainer.train`) calls ``reporter.start(costs, stages)`` once
before the first epoch and ``reporter.report(metrics)`` after every epoch; ``report``
returning True asks the trial to stop after that epoch (that is how pruning acts). A plain
callable ``f(metrics) -> bool | None`` is accepted wherever a reporter is.

Accuracies are percentages (0-100), as papers quote them. :class:`MetricsWriter` is the
reporter that keeps a run folder's ``metrics.csv`` / ``metrics.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.config import TrialConfig
from study.io import write_atomic, write_json

if TYPE_CHECKING:
    from study.config import TrialConfig
    from study.costs import Costs

__all__ = ["EpochMetrics", "Reporter", "CallbackReporter", "as_reporter", "TrialResult", "OUTCOMES", "MetricsWriter",
           "write_metrics", "write_result", "METRIC_FIELDS"]


@dataclass(frozen=True)
class EpochMetrics:
    """Validation and training figures after one epoch (``epoch`` counts from 1)."""

    epoch: int
    top1: float
    top5: float
    val_loss: float
    train_loss: float
    lr: float
    epoch_time_s: float
    wall_time_s: float
    images_per_s: float

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.top1, self.val_loss, self.train_loss))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochMetrics:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


class Reporter:
    """Receives a trial's costs and per-epoch metrics; may ask the trial to stop.

    Subclass and override what you need; both methods default to doing nothing.
    """

    def start(self, costs: Costs, stages: Sequence[Mapping[str, Any]]) -> None:
        """Called once before training with the model's :class:`study.costs.Costs` and its
        resolved per-stage description (``StageInfo.to_dict()`` of every stage)."""

    def report(self, metrics: EpochMetrics) -> bool:
        """Called after every epoch; return True to stop the trial after this epoch."""
        return False


class CallbackReporter(Reporter):
    """Adapts ``f(metrics) -> bool | None`` to the :class:`Reporter` protocol."""

    def __init__(self, fn: Callable[[EpochMetrics], bool | None]):
        self._fn = fn

    def report(self, metrics: EpochMetrics) -> bool:
        return bool(self._fn(metrics))


def as_reporter(reporter: Reporter | Callable[[EpochMetrics], bool | None] | None) -> Reporter:
    if reporter is None:
        return Reporter()
    if isinstance(reporter, Reporter):
        return reporter
    if callable(reporter):
        return CallbackReporter(reporter)
    raise TypeError(f"reporter: expected a Reporter or a callable, got {type(reporter).__name__}")


#: "complete": ran its epoch budget; "stopped": the reporter asked it to stop (pruned);
#: "diverged": the loss became NaN or inf, the run ended with its last finite metrics.
OUTCOMES = ("complete", "stopped", "diverged")


@dataclass(frozen=True)
class TrialResult:
    """What :func:`study.trainer.train` returns: outcome, history, costs and the config."""

    config: TrialConfig
    outcome: str
    history: tuple[EpochMetrics, ...]
    costs: Costs
    stages: tuple[Mapping[str, Any], ...] = ()
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def best(self) -> EpochMetrics | None:
        finite = [m for m in self.history if m.finite]
        return max(finite, key=lambda m: m.top1) if finite else None

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, config: TrialConfig | None = None) -> TrialResult:
        """A result from its :meth:`to_dict` form (``result.json``, a finished checkpoint's
        state); ``config``, when given, is the TrialConfig to use instead of ``data["config"]``.
        The derived entries (``final``, ``best``, ``epochs_run``) are recomputed from the history."""
        from study.costs import Costs

        return cls(config=TrialConfig.from_dict(data["config"]) if config is None else config,
                   outcome=data["outcome"],
                   history=tuple(EpochMetrics.from_dict(m) for m in data["history"]),
                   costs=Costs.from_dict(data["costs"]), stages=tuple(data.get("stages", ())),
                   message=data.get("message", ""), extra=dict(data.get("extra", {})))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "outcome": self.outcome,
            "message": self.message,
            "epochs_run": self.epochs_run,
            "final": self.final.to_dict() if self.final else None,
            "best": self.best.to_dict() if self.best else None,
            "history": [m.to_dict() for m in self.history],
            "costs": self.costs.to_dict() if hasattr(self.costs, "to_dict") else dict(self.costs or {}),
            "stages": [dict(s) for s in self.stages],
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


# --------------------------------------------------------------------------------------
# a run folder's per-epoch metrics files


def _metric_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(EpochMetrics)]


#: the EpochMetrics field names, in order: the columns of ``metrics.csv``, the keys of a
#: recorded ``history`` entry (runners) and the columns of analysis's epoch frame
METRIC_FIELDS = _metric_fields()


def write_metrics(out: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``out/metrics.json`` and ``out/metrics.csv`` (one row per epoch), atomically."""
    out = Path(out)
    write_json(out / "metrics.json", [dict(r) for r in rows])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "metrics.csv", buf.getvalue())


class MetricsWriter(Reporter):
    """Rewrites ``out/metrics.csv`` and ``out/metrics.json`` after every epoch.

    A reported epoch replaces the rows of that epoch and of later ones (a resumed or a
    restarted run repeats the epochs after its checkpoint); rows of earlier epochs are kept,
    on a resumed run from the existing file. Used by ``python -m study.train`` in one
    process and by the recorder of a data-parallel run (:mod:`study.cluster`)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.rows: list[dict[str, Any]] | None = None

    def report(self, metrics: EpochMetrics) -> bool:
        rows = self._existing() if self.rows is None else self.rows
        self.rows = [r for r in rows if r.get("epoch", 0) < metrics.epoch]
        self.rows.append(metrics.to_dict())
        write_metrics(self.out, self.rows)
        return False

    def _existing(self) -> list[dict[str, Any]]:
        try:
            rows = json.loads((self.out / "metrics.json").read_text())
        except (OSError, ValueError):
            return []
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def write_result(out: str | Path, result: TrialResult) -> None:
    """Write a finished run's files into ``out``: ``config.json``, ``metrics.csv`` /
    ``metrics.json`` and, last, ``result.json`` (each atomically): a folder with a
    ``result.json`` holds a finished run."""
    out = Path(out)
    write_atomic(out / "config.json", result.config.to_json() + "\n")
    write_metrics(out, [m.to_dict() for m in result.history])
    write_json(out / "result.json", result.to_dict())
