"""The Optuna side of a study, shared by both runners: ask, record, report, prune, tell.

"Optuna decides, Ray executes": the local runner and the Ray Tune searcher/scheduler all go
through one :class:`StudyBridge`, in the driver, so a trial is recorded the same way
whichever runner ran it and only the driver touches the storage.

Per trial it writes the user attributes named in :mod:`study.record` (``config``,
``stages``, ``costs``, ``history``, ``outcome``, ``error``, ``reference``, ``attempt``),
reports each epoch's validation top-1 as the intermediate value at ``step=epoch`` (in a
multi-objective study, which Optuna keeps no intermediate values for, the pruner reads it
from the ``history`` attribute)
(idempotently: a step already reported is not reported again, so a scheduler and a
searcher that both see a result, or a retried worker that repeats an epoch, change
nothing), and writes ``trials/<number>/config.json`` and ``history.json`` under the run
folder. The objective is the best validation top-1 (%) the trial reached, then the costs
named by ``--objectives``.

Those who watch the study (the progress lines, the MLflow tracker) are its observers
(:class:`~runners._observer.StudyObserver`): the bridge tells each of them every event
(a trial started, an epoch recorded, a trial finished) once the storage holds it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runners import _optuna_compat as compat
from runners._observer import StudyObserver
from runners._optuna import GridSampler
from runners._progress import Progress
from runners._settings import StudySettings
from study import record
from study.config import TrialConfig
from study.io import write_json
from study.metrics import METRIC_FIELDS
from study.record import is_finite

__all__ = ["StudyBridge", "LiveTrial", "EPOCH_KEYS", "COST_PREFIX"]

#: the per-epoch metric names (:data:`study.metrics.METRIC_FIELDS`, the fields of :class:`~study.metrics.EpochMetrics`)
EPOCH_KEYS = tuple(METRIC_FIELDS)
#: flat result keys that carry the costs under Ray Tune (``cost_params``, ...)
COST_PREFIX = "cost_"
#: the user attributes a queued trial carries into the run that takes its place
_QUEUE_ATTRS = (record.REFERENCE, record.RESUMED_FROM, record.GROUP, record.REPLICATE)
INTERRUPTED = "interrupted: the driver stopped while this trial ran; its configuration was enqueued again"


@dataclass
class LiveTrial:
    """A trial this driver is running."""

    trial: optuna.Trial
    config: TrialConfig
    started: float = field(default_factory=time.time)
    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    reported: set[int] = field(default_factory=set)
    costs: dict[str, Any] | None = None
    pruned: bool = False
    error: str | None = None
    diverged: str | None = None
    state: TrialState | None = None

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def best_top1(self) -> float | None:
        values = [m["top1"] for m in self.history.values() if is_finite(m.get("top1"))]
        return max(values) if values else None

    @property
    def epochs(self) -> int:
        return len(self.history)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class StudyBridge:
    """One study, seen from the driver. Runners call :meth:`ask`, :meth:`start`,
    :meth:`report` and :meth:`finish`; :meth:`done` and :meth:`needs_more` say whether to
    start another trial. ``progress`` and ``observers`` receive the study's events
    (:class:`~runners._observer.StudyObserver`), the progress first; :func:`~runners._study.run_study`
    calls :meth:`study_started` and :meth:`study_finished` around the runner."""

    def __init__(self, study: optuna.Study, space: Any, settings: StudySettings, *, progress: Progress | None = None,
                 observers: Sequence[StudyObserver] = (), queued_only: bool = False):
        self.study = study
        #: run only the trials enqueued (a study in rounds, :func:`runners.run_study`'s
        #: ``next_round``): the runner returns once they have run, and samples none
        self.queued_only = queued_only
        self.space = space
        self.settings = settings
        self.progress = progress or Progress(quiet=True)
        self.observers: list[StudyObserver] = [self.progress, *observers]
        self.live: dict[int, LiveTrial] = {}
        self.failed_here = 0
        self.finished_here = 0
        #: the first trial that failed in this run and its error text (the run's outcome names it)
        self.first_failure: tuple[int, str] | None = None
        self._t0 = time.monotonic()
        self._stop_reason: str | None = None
        self._finished_before: int | None = None
        #: trials this run stopped without finishing them (Ctrl-C); enqueued again
        self.interrupted: list[int] = []
        self._trials_dir = Path(settings.run_dir) / "trials"

    # ---------------------------------------------------------------- study state

    def _states(self) -> dict[TrialState, int]:
        counts: dict[TrialState, int] = {}
        for t in self.study.get_trials(deepcopy=False):
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def finished(self) -> int:
        """COMPLETE + PRUNED trials of this study (every run of it): counted in the storage
        once, then here (only this driver writes to its study)."""
        if self._finished_before is None:
            c = self._states()
            self._finished_before = c.get(TrialState.COMPLETE, 0) + c.get(TrialState.PRUNED, 0) - self.finished_here
        return self._finished_before + self.finished_here

    def counts(self) -> dict[str, int]:
        c = self._states()
        return {
            "running": len(self.live),
            "complete": c.get(TrialState.COMPLETE, 0),
            "pruned": c.get(TrialState.PRUNED, 0),
            "failed": c.get(TrialState.FAIL, 0),
        }

    def done(self) -> str | None:
        """Why no further trial should start (None: go on)."""
        if self._stop_reason:
            return self._stop_reason
        s = self.settings
        if self.finished() >= s.runs:
            groups = f" ({s.trials} configurations x {s.replicates} replicates)" if s.replicates > 1 else ""
            return f"reached {s.runs} finished trials{groups}"
        if s.timeout is not None and time.monotonic() - self._t0 >= s.timeout:
            return f"timeout of {s.timeout:g} s reached"
        if self.failure_limit_reached():
            return f"stopped after {self.failed_here} failed trials in this run (see their 'error' attribute)"
        if self.queued_only and not self.live and not self._waiting():
            return "the round's trials ran"
        sampler = self.study.sampler
        if isinstance(sampler, GridSampler) and sampler.is_exhausted(self.study) and not self._waiting():
            return "the grid is exhausted"
        return None

    def failure_limit_reached(self) -> bool:
        """The max-failures rule: a run stops once max(3, its budget of runs) trials failed in it."""
        return self.failed_here >= max(3, self.settings.runs)

    def _failed(self, number: int, error: str) -> None:
        self.failed_here += 1
        if self.first_failure is None:
            self.first_failure = (number, error)

    def needs_more(self) -> bool:
        """True when the finished trials plus those in flight fall short of the budget."""
        if self.queued_only and not self._waiting():
            return False  # the round's last trials are in flight
        return self.done() is None and self.finished() + len(self.live) < self.settings.runs

    def stop(self, reason: str) -> None:
        self._stop_reason = reason

    def _waiting(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args, self)

    def study_started(self) -> None:
        """Tell the observers that trials are about to start."""
        self._notify("study_started")

    def study_finished(self) -> None:
        """Tell the observers that the runner returned (or raised)."""
        self._notify("study_finished")

    # ---------------------------------------------------------------- setup

    def enqueue_references(self) -> list[str]:
        """Enqueue the space's reference points (on a new study), tagged ``reference``, each
        ``replicates`` times as one replicate group."""
        names = []
        for name, params in self.space.reference_points(self.settings.space_context()):
            self._enqueue_group(params, {record.REFERENCE: name})
            names.append(name)
        return names

    def _enqueue_group(self, params: Mapping[str, Any], attrs: Mapping[str, Any], *, first: int | None = None) -> None:
        """Enqueue the runs of one configuration as a replicate group, named by the number of
        its first run: all ``replicates`` runs, or - trial ``first`` being its first run
        already - the others."""
        start = 1
        if first is None:  # trial numbers are consecutive: the next trial is the group's first
            first, start = len(self.study.get_trials(deepcopy=False)), 0
        for r in range(start, self.settings.replicates):
            self.study.enqueue_trial(dict(params), user_attrs={**attrs, record.ATTEMPT: 1, record.GROUP: first, record.REPLICATE: r})

    def recover_interrupted(self) -> list[int]:
        """Trials left RUNNING by a driver that died: record them failed ("interrupted")
        and enqueue their parameters again, ahead of the trials still waiting. Returns
        their numbers."""
        left = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in left:
            compat.set_trial_user_attr(self.study, t, record.OUTCOME, record.OUTCOME_FAILED)
            compat.set_trial_user_attr(self.study, t, record.ERROR, INTERRUPTED)
        # a trial killed while its space ran holds only the parameters suggested so far;
        # an enqueued one (a reference point, a re-run) has all of them fixed
        self._requeue([(t.number, {**compat.enqueued_params(t), **t.params}, t.user_attrs) for t in left])
        return [t.number for t in left]

    def interrupt(self) -> list[int]:
        """The run is being stopped (Ctrl-C): trials in flight are recorded failed
        ("interrupted") and their parameters enqueued again, as ``--resume`` would do."""
        lives = list(self.live.values())
        self.interrupted.extend(lv.number for lv in lives)
        for live in lives:
            self.live.pop(live.number, None)
            live.state = TrialState.FAIL
            live.trial.set_user_attr(record.OUTCOME, record.OUTCOME_FAILED)
            live.trial.set_user_attr(record.ERROR, INTERRUPTED)
        self._requeue([(lv.number, lv.trial.params, lv.trial.user_attrs) for lv in lives])
        return [lv.number for lv in lives]

    def _requeue(self, trials: list[tuple[int, dict[str, Any], Mapping[str, Any]]]) -> None:
        """Fail ``trials`` (RUNNING, already marked interrupted) and enqueue their
        parameters so that they run next.

        ``enqueue_trial`` puts them behind the trials still waiting (reference points not
        yet started, which could push the re-runs past the budget); when some are waiting,
        the queue's slots are refilled in order: re-runs first, then what was waiting."""
        if not trials:
            return
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        queue: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for number, params, user_attrs in trials:
            self.study.tell(number, state=TrialState.FAIL)
            queue.append((dict(params), {
                **{key: user_attrs.get(key) for key in _QUEUE_ATTRS},
                record.ATTEMPT: int(user_attrs.get(record.ATTEMPT, 1)) + 1,
                record.RESUMED_FROM: number,
            }))
        for params, attrs in queue:
            self.study.enqueue_trial(params, user_attrs=attrs)
        if waiting:
            queue += [(compat.enqueued_params(t), {**{key: t.user_attrs.get(key) for key in _QUEUE_ATTRS},
                                                   record.ATTEMPT: t.user_attrs.get(record.ATTEMPT, 1)})
                      for t in waiting]
            slots = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            for slot, (params, attrs) in zip(slots, queue):
                compat.rewrite_waiting(self.study, slot, params, attrs)

    # ---------------------------------------------------------------- a trial

    def ask(self) -> LiveTrial | None:
        """Start a trial: sample it, build its TrialConfig, record it. A space that raises
        (an invalid configuration) gives a FAIL trial and None."""
        trial = self.study.ask()
        if record.ATTEMPT not in trial.user_attrs:
            trial.set_user_attr(record.ATTEMPT, 1)
        try:
            replicate = trial.user_attrs.get(record.REPLICATE)
            config = self.space.suggest(trial, self.settings.space_context(number=trial.number,
                                                                           replicate=0 if replicate is None else replicate))
        except Exception as exc:  # the space's own error: the trial fails, the study goes on
            text = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(record.OUTCOME, record.OUTCOME_FAILED)
            trial.set_user_attr(record.ERROR, text)
            self.study.tell(trial, state=TrialState.FAIL)
            self._failed(trial.number, text)
            self._notify("trial_failed", trial, text)
            return None
        if trial.user_attrs.get(record.GROUP) is None:  # sampled, not enqueued: the first run of a new group
            trial.set_user_attr(record.GROUP, trial.number)
            trial.set_user_attr(record.REPLICATE, 0)
            self._enqueue_group(trial.params, {}, first=trial.number)
        live = LiveTrial(trial=trial, config=config)
        self.live[trial.number] = live
        self._write(live, "config.json", config.to_dict())
        self._notify("trial_started", live)
        return live

    def start(self, live: LiveTrial, costs: Any, stages: Sequence[Mapping[str, Any]] | None = None) -> None:
        """The trainer's ``reporter.start``: record the measured costs (and the stages the
        built model reports, which equal the space's description)."""
        d = costs.to_dict() if hasattr(costs, "to_dict") else dict(costs or {})
        live.costs = self._shared_latency(live, {k: _jsonable(v) for k, v in d.items()})
        live.trial.set_user_attr(record.COSTS, live.costs)
        if stages:
            live.trial.set_user_attr(record.STAGES, [dict(s) for s in stages])

    def _shared_latency(self, live: LiveTrial, costs: dict[str, Any]) -> dict[str, Any]:
        """One latency per network in a study: the first trial of a network
        (``costs["arch_digest"]``) to report its probed latency leaves it as the study's
        ``latency:<digest>`` (:func:`study.record.latency_attr`); a later trial of that network
        measured on the same device and threads records that figure, its own kept as
        ``latency_own_ms`` and the measuring trial as ``latency_from``. Costs without a digest
        (recorded before the probe) are left as they are."""
        digest, own = costs.get("arch_digest"), costs.get("latency_ms")
        if not digest or not is_finite(own):
            return costs
        key = record.latency_attr(digest)
        shared = self.study.user_attrs.get(key)
        if shared is None:
            self.study.set_user_attr(key, {**{k: costs.get(k) for k in record.LATENCY_KEYS}, "trial": live.number})
            return costs
        if any(shared.get(k) != costs.get(k) for k in ("latency_device", "latency_threads")):
            return costs  # measured elsewhere: not the same figure
        return {**costs, **{k: shared.get(k) for k in record.LATENCY_KEYS}, "latency_own_ms": own, "latency_from": shared.get("trial")}

    def report(self, live: LiveTrial, metrics: Mapping[str, Any]) -> bool:
        """One epoch's metrics; returns True when the pruner says prune (the trial is then
        marked pruned). Idempotent per epoch."""
        epoch = int(metrics["epoch"])
        if epoch in live.reported:
            return live.pruned
        live.reported.add(epoch)
        entry = {k: _jsonable(metrics[k]) for k in EPOCH_KEYS if k in metrics}
        live.history[epoch] = entry
        history = [live.history[e] for e in sorted(live.history)]
        live.trial.set_user_attr(record.HISTORY, history)
        self._write(live, "history.json", history)
        top1, prune = metrics.get("top1"), False
        if is_finite(top1):
            if not self.settings.multi_objective:
                live.trial.report(float(top1), step=epoch)
            # a trial that has run its whole budget is complete: pruning it now saves nothing
            if not live.pruned and epoch < live.config.recipe.epochs and self._should_prune(live):
                live.pruned = True
            prune = live.pruned
        self._notify("epoch", live, entry)
        return prune

    def _should_prune(self, live: LiveTrial) -> bool:
        """Optuna's ``should_prune``; for several objectives, where Optuna refuses it (and
        ``report``), the study's pruner is asked directly with the live trial as it stands:
        the pruners that take several objectives (:data:`~runners._settings.MULTI_OBJECTIVE_PRUNERS`)
        read its top-1 per epoch from the ``history`` user attribute written above."""
        if not self.settings.multi_objective:
            return live.trial.should_prune()
        return self.study.pruner.prune(self.study, compat.latest_trial(live.trial))

    def finish(self, live: LiveTrial, *, error: str | None = None, diverged: str | None = None) -> TrialState:
        """Tell Optuna how the trial ended: COMPLETE, PRUNED or FAIL (with ``error``)."""
        if live.state is not None:
            return live.state
        live.error = live.error or error
        live.diverged = live.diverged or diverged
        trial = live.trial
        values: list[float] | None = None
        if live.error is None and live.diverged is None and not live.pruned:
            values, problem = self._values(live)
            if problem:
                live.error = problem
        if live.error is not None or live.diverged is not None:
            outcome = record.OUTCOME_FAILED if live.error is not None else record.OUTCOME_DIVERGED
            trial.set_user_attr(record.OUTCOME, outcome)
            trial.set_user_attr(record.ERROR, live.error if live.error is not None else live.diverged)
            state = TrialState.FAIL
            self.study.tell(trial, state=state)
            self._failed(live.number, live.error if live.error is not None else live.diverged)
        elif live.pruned:
            trial.set_user_attr(record.OUTCOME, record.OUTCOME_PRUNED)
            state = TrialState.PRUNED
            self.study.tell(trial, state=state)
            self.finished_here += 1
        else:
            trial.set_user_attr(record.OUTCOME, record.OUTCOME_COMPLETE)
            state = TrialState.COMPLETE
            self.study.tell(trial, values)
            self.finished_here += 1
        live.state = state
        self.live.pop(live.number, None)
        self._notify("trial_finished", live)
        return state

    def fail_live(self, reason: str) -> None:
        """Record every trial still in flight as failed (the run is being aborted)."""
        for live in list(self.live.values()):
            self.finish(live, error=reason)

    def _values(self, live: LiveTrial) -> tuple[list[float] | None, str | None]:
        best = live.best_top1
        if best is None:
            return None, "the trial reported no finite validation top-1"
        values = [best]
        for name, key in zip(self.settings.objectives[1:], self.settings.cost_keys):
            v = (live.costs or {}).get(key)
            if not is_finite(v):
                return None, f"objective {name}: the trial measured no {key}"
            values.append(float(v))
        return values, None

    def _write(self, live: LiveTrial, filename: str, data: Any) -> None:
        folder = self._trials_dir / str(live.number)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / filename, data)

    # ---------------------------------------------------------------- summary

    def best(self) -> list[optuna.trial.FrozenTrial]:
        """The best trial (single objective) or the Pareto front (several)."""
        try:
            if self.settings.multi_objective:
                return list(self.study.best_trials)
            return [self.study.best_trial]
        except ValueError:
            return []
