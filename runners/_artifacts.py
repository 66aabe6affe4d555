"""The study's files beside its trials in optuna-dashboard: the :class:`ArtifactRecorder`, an
observer of the bridge that attaches them to the Optuna artifact store of the run folder
(:mod:`study.artifacts`, ``runs/<name>/artifacts``).

It attaches the study's ``settings.json`` to the study when the run starts, each trial's
``config.json`` when it starts and its ``history.json`` (every epoch's metrics so far) after
each epoch, to the trial - the files the bridge writes under ``trials/<number>/``, attached
while the trial runs (Optuna refuses to change a finished trial). Only the driver attaches.
A store that cannot be written (a full disk) does not stop the study: the first failure is a
warning and nothing more is attached in this run.

    optuna-dashboard sqlite:///runs/NAME/study.db --artifact-dir runs/NAME/artifacts
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runners._observer import StudyObserver

__all__ = ["ArtifactRecorder"]


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


class ArtifactRecorder(StudyObserver):
    """Attaches a study's files to the artifact store of the run folder ``run_dir``."""

    def __init__(self, run_dir: str | Path, *, warn: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.warn = warn or _warn
        self.store: Any = None
        #: the first failure, after which nothing more is attached in this run
        self.lost: str | None = None

    def _attach(self, bridge: Any, path: Path, trial: Any = None) -> None:
        if self.lost is not None or not path.is_file():
            return
        from study.artifacts import artifact_store, attach_file

        try:
            if self.store is None:
                self.store = artifact_store(self.run_dir)
            attach_file(self.store, bridge.study, path, trial=trial)
        except Exception as exc:  # a full disk, a storage gone away: the study goes on
            self.lost = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            self.warn(f"artifacts: attaching {path} failed ({self.lost}); nothing more is attached in this run "
                      "(the Optuna storage and the run folder hold everything)")

    def study_started(self, bridge: Any) -> None:
        self._attach(bridge, self.run_dir / "settings.json")

    def trial_started(self, live: Any, bridge: Any) -> None:
        self._attach(bridge, self.run_dir / "trials" / str(live.number) / "config.json", live.trial)

    def epoch(self, live: Any, metrics: Mapping[str, Any], bridge: Any) -> None:
        self._attach(bridge, self.run_dir / "trials" / str(live.number) / "history.json", live.trial)
