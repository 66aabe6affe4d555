"""What the driver tells those who watch a study: the :class:`StudyObserver` events.

The :class:`~runners._bridge.StudyBridge` sends every event to its observers, in the
driver, whichever runner runs the trials: the progress lines (:class:`~runners._progress.Progress`)
and the MLflow tracker (:class:`~runners._tracking.MlflowTracker`) are two of them, and
the bridge names neither. An observer sees the record after it is written: each event
comes once the storage holds what it reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StudyObserver"]


class StudyObserver:
    """Receives a study's events; every method defaults to doing nothing.

    ``live`` is the :class:`~runners._bridge.LiveTrial`, ``bridge`` the
    :class:`~runners._bridge.StudyBridge` (its study, settings and counts)."""

    def study_started(self, bridge: Any) -> None:
        """The runner is about to start trials (after a resumed study's interrupted trials
        were recorded failed and enqueued again, or a new study's reference points enqueued)."""

    def trial_started(self, live: Any, bridge: Any) -> None:
        """A trial was sampled and its TrialConfig recorded; it is about to train."""

    def epoch(self, live: Any, metrics: Mapping[str, Any], bridge: Any) -> None:
        """One epoch of a trial reached the driver and was recorded (``metrics`` is the
        recorded history entry, with ``epoch``), after the pruner was asked (``live.pruned``)."""

    def trial_finished(self, live: Any, bridge: Any) -> None:
        """A trial ended and was told to Optuna (``live.state``: COMPLETE, PRUNED or FAIL)."""

    def trial_failed(self, trial: Any, error: str, bridge: Any) -> None:
        """A trial failed before training (its space raised): ``trial`` is the optuna.Trial."""

    def study_finished(self, bridge: Any) -> None:
        """The runner returned (or raised, or was interrupted): no further event of this run."""
