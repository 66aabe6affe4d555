"""MLflow tracking of a study (``--mlflow URI``): the :class:`MlflowTracker`, an observer of
the bridge that shows the record in MLflow as it is written.

One MLflow experiment per study (its name), holding one run for the study (its settings as
params, ``settings.json`` as an artifact, the trial counts and best top-1 at the end) and
one run per trial nested under it: the trial's sampled parameters, its TrialConfig as the
artifact ``config.json``, every epoch's metrics (``top1``, ``top5``, ``val_loss``,
``train_loss``, ``lr``, ...) at ``step=epoch``, its costs (``cost_params``, ``cost_macs``,
``cost_latency_ms``, ...), and its end: the tag ``state`` (complete, pruned, failed; also
``outcome`` and ``error``) and the run's status. Runs are found by their tags
(:mod:`study.tracking`), so ``--resume`` continues them, and fills in from the storage what
an earlier run did not log: the Optuna storage is the record, MLflow a view of it.

With ``system_metrics`` (``--mlflow-system-metrics``) the study's run also gets MLflow's system
metrics of the driver's node while the study runs (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, disk and network, ``system/gpu_0_...`` where a GPU
is present), sampled by MLflow's ``SystemMetricsMonitor`` every 10 s (MLflow's
``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` sets another interval); a resumed study's run
continues their steps.

Only the driver logs (it alone sees the events), so a study on a Ray cluster logs the same
way. A tracking server that stops answering does not stop the study: the first failed call
is a warning, nothing more is sent to it in this run, and the run's end says what was not
logged (``--resume`` logs it).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from runners._observer import StudyObserver
from study import record, tracking
from study.metrics import METRIC_FIELDS
from study.record import is_finite

__all__ = ["MlflowTracker"]

#: the per-epoch metrics a trial run gets (every recorded EpochMetrics field but the epoch, its step)
EPOCH_METRICS = tuple(k for k in METRIC_FIELDS if k != "epoch")
#: the trial's user attributes its run carries as tags
_TRIAL_TAGS = (record.REFERENCE, record.ATTEMPT, record.GROUP, record.REPLICATE, record.RESUMED_FROM)
_STATES = {TrialState.COMPLETE: record.OUTCOME_COMPLETE, TrialState.PRUNED: record.OUTCOME_PRUNED, TrialState.FAIL: record.OUTCOME_FAILED}
#: MLflow's limits per log_batch call
_BATCH_METRICS, _BATCH_PARAMS, _BATCH_TAGS = 1000, 100, 100


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: ``proxy.resolution`` -> ``"32"`` (JSON for non-strings)."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return out


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class MlflowTracker(StudyObserver):
    """Logs a study to the MLflow tracking URI ``uri`` (checked beforehand with
    :func:`study.tracking.check_tracking_uri`); ``warn`` prints its warnings (stderr)."""

    def __init__(self, uri: str, *, warn: Callable[[str], None] | None = None, system_metrics: bool = False):
        self.uri = uri
        self.warn = warn or _warn
        self.system_metrics = system_metrics
        #: MLflow's sampler of the driver's system metrics (``system_metrics``), while the study runs
        self.monitor: Any = None
        self.client: Any = None
        self.experiment_id: str | None = None
        #: the study's run
        self.study_run: str | None = None
        #: trial number -> its run's id
        self.runs: dict[int, str] = {}
        #: trials whose run carries its end (the state tag)
        self.closed: set[int] = set()
        #: the first failure, after which nothing more is sent
        self.lost: str | None = None
        #: what was not logged: (trial number or None for the study's run, what)
        self.missed: list[tuple[int | None, str]] = []
        self._scope = contextlib.ExitStack()

    # ------------------------------------------------------------------ calls

    def _call(self, trial: int | None, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None (and ``what`` recorded as not logged) when MLflow
        failed before or fails now; the first failure warns."""
        if self.lost is not None:
            self.missed.append((trial, what))
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a server gone away, a store that refuses: the study goes on
            self.lost = _short(exc)
            self.missed.append((trial, what))
            self.warn(f"MLflow: logging {what} to {self.uri} failed ({self.lost}); nothing more is logged to it in this run "
                      f"(the Optuna storage holds every trial; `--resume --mlflow {self.uri}` logs what is missing)")
            return None

    def _log_batch(self, trial: int | None, what: str, run_id: str, *, metrics: Mapping[str, tuple[float, int]] | None = None,
                   params: Mapping[str, str] | None = None, tags: Mapping[str, Any] | None = None) -> None:
        """One run's ``metrics`` (name -> (value, step)), ``params`` and ``tags``, in as few calls as MLflow allows."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, int(step)) for k, (v, step) in (metrics or {}).items()]
        self._send(trial, what, run_id, ms, [Param(k, str(v)) for k, v in (params or {}).items()],
                   [RunTag(k, "" if v is None else str(v)) for k, v in (tags or {}).items()])

    def _send(self, trial: int | None, what: str, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        while metrics or params or tags:
            m, metrics = metrics[:_BATCH_METRICS], metrics[_BATCH_METRICS:]
            p, params = params[:_BATCH_PARAMS], params[_BATCH_PARAMS:]
            t, tags = tags[:_BATCH_TAGS], tags[_BATCH_TAGS:]
            self._call(trial, what, self.client.log_batch, run_id, metrics=m, params=p, tags=t)

    def _log_epochs(self, trial: int, run_id: str, entries: Iterable[Mapping[str, Any]], *, skip: set[int] = frozenset()) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics, epochs = [], []
        for entry in entries:
            epoch = entry.get("epoch")
            if not isinstance(epoch, int) or epoch in skip:
                continue
            epochs.append(epoch)
            metrics += [Metric(k, float(entry[k]), now, epoch) for k in EPOCH_METRICS if is_finite(entry.get(k))]
        if metrics:
            what = f"trial {trial} epoch {epochs[0]}" if len(epochs) == 1 else f"trial {trial} epochs {epochs[0]}-{epochs[-1]}"
            self._send(trial, what, run_id, metrics, [], [])

    # ------------------------------------------------------------------ the study's run

    def _tags(self, bridge: Any, kind: str) -> dict[str, str]:
        return {tracking.TAG_STUDY: bridge.settings.name, tracking.TAG_STORAGE: tracking.storage_key(bridge.settings.storage),
                tracking.TAG_KIND: kind}

    def study_started(self, bridge: Any) -> None:
        self._scope.enter_context(tracking.client_scope(self.uri))
        self.client = self._call(None, "the study's run", tracking.make_client, self.uri)
        if self.client is None:
            return
        s = bridge.settings
        found = self._call(None, "the study's run", tracking.study_runs, self.client, s.name, s.storage)
        if found is None:
            return
        self.experiment_id = found.experiment_id
        if self.experiment_id is None:
            self.experiment_id = self._call(None, "the study's experiment", self.client.create_experiment, s.name,
                                            artifact_location=self._artifact_location(s.name))
            if self.experiment_id is None:
                return
        settings = _flatten(s.to_dict())
        if found.study is None:
            run = self._call(None, "the study's run", self.client.create_run, self.experiment_id, run_name=s.name,
                             tags={**self._tags(bridge, tracking.KIND_STUDY), "space": s.space, "design": s.design})
            if run is None:
                return
            self.study_run, logged = run.info.run_id, {}
        else:
            self.study_run, logged = found.study.info.run_id, found.study.data.params
            if found.study.info.status != "RUNNING":
                self._call(None, "the study's run", self.client.update_run, self.study_run, status="RUNNING")
        # params are written once: a value that a resumed run changes (--trials, ...) is in settings.json
        self._log_batch(None, "the study's settings", self.study_run, params={k: v for k, v in settings.items() if k not in logged})
        self._call(None, "the study's settings.json", self.client.log_text, self.study_run,
                   json.dumps(s.to_dict(), indent=2, sort_keys=True) + "\n", "settings.json")
        if self.system_metrics:
            self._start_monitor(resumed=found.study is not None)
        bridge.progress.line(f"MLflow: {self.uri}, experiment {s.name!r}, study run {self.study_run}"
                             + (f" ({len(found.trials)} trial runs)" if found.trials else "")
                             + (", with the driver's system metrics" if self.monitor is not None else ""), bridge)
        self.runs = {n: r.info.run_id for n, r in found.trials.items()}
        self.closed = {n for n, r in found.trials.items() if tracking.TAG_STATE in r.data.tags}
        for t in bridge.study.get_trials(deepcopy=False):  # the record's trials the view lacks (an earlier run's)
            if t.state in _STATES and t.number not in self.closed:
                self._log_record(t, bridge)

    def _start_monitor(self, *, resumed: bool) -> None:
        """MLflow's system metrics of this (the driver's) node, logged to the study's run."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        try:
            self.monitor = SystemMetricsMonitor(self.study_run, resume_logging=resumed, tracking_uri=self.uri)
            self.monitor.start()
        except Exception as exc:  # the study goes on without them
            self.monitor = None
            self.warn(f"MLflow: the system metrics are not logged ({_short(exc)})")

    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            monitor, self.monitor = self.monitor, None
            monitor.finish()  # its last samples flushed before the run is closed

    def _artifact_location(self, name: str) -> str | None:
        """A SQLite store's artifacts beside its database (MLflow's default is ./mlruns of the current folder)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        return (Path(self.uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()

    def study_finished(self, bridge: Any) -> None:
        try:
            self._stop_monitor()
            if self.study_run is not None:
                trials = {t.number: t for t in bridge.study.get_trials(deepcopy=False)}
                for number in sorted(set(self.runs) - self.closed) if self.lost is None else ():
                    if number in trials and trials[number].state in _STATES:  # interrupted here: failed in the record
                        self._log_record(trials[number], bridge)
                c = bridge.counts()
                finished = c["complete"] + c["pruned"]
                metrics = {f"trials_{k}": (v, finished) for k, v in c.items() if k != "running"}
                best = bridge.best()
                if best and not bridge.settings.multi_objective:
                    metrics["best_top1"] = (best[0].value, finished)
                self._log_batch(None, "the study's counts", self.study_run, metrics=metrics,
                                tags={"best_trial": best[0].number} if best and not bridge.settings.multi_objective else None)
                self._call(None, "the study's end", self.client.set_terminated, self.study_run,
                           "KILLED" if bridge.interrupted else "FINISHED")
            if self.missed:
                self.warn(f"MLflow: not logged to {self.uri} in this run: {self._missed_text()}; the Optuna storage holds them, "
                          f"and `--resume --mlflow {self.uri}` logs them")
        finally:
            self._scope.close()

    def _missed_text(self) -> str:
        """``trial 1 (epochs 1-2, end); trial 2 (start, epochs 1-2, end); the study's counts``."""
        parts: dict[int, dict[str, list[int]]] = {}
        study: list[str] = []
        for number, what in self.missed:
            if number is None:
                study.append(what)
                continue
            part, _, rest = what.removeprefix(f"trial {number} ").partition(" ")
            epochs = [int(e) for e in rest.split("-") if e.isdigit()]
            parts.setdefault(number, {}).setdefault("epochs" if part.startswith("epoch") else part, []).extend(epochs)
        texts = []
        for number, kinds in sorted(parts.items()):
            items = []
            for kind in sorted(kinds, key=lambda k: ("start", "epochs", "end").index(k) if k in ("start", "epochs", "end") else 3):
                epochs = sorted(set(kinds[kind]))
                if kind == "epochs" and epochs:
                    kind = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
                items.append(kind)
            texts.append(f"trial {number} ({', '.join(items)})")
        return "; ".join(texts + list(dict.fromkeys(study)))

    # ------------------------------------------------------------------ a trial's run

    def _trial_run(self, number: int, attrs: Mapping[str, Any], bridge: Any) -> str | None:
        if number in self.runs:
            return self.runs[number]
        if self.study_run is None:
            self.missed.append((number, f"trial {number} start"))
            return None
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = {**self._tags(bridge, tracking.KIND_TRIAL), tracking.TAG_TRIAL: str(number), MLFLOW_PARENT_RUN_ID: self.study_run,
                **{k: str(attrs[k]) for k in _TRIAL_TAGS if attrs.get(k) is not None}}
        run = self._call(number, f"trial {number} start", self.client.create_run, self.experiment_id, run_name=f"trial {number}", tags=tags)
        if run is None:
            return None
        self.runs[number] = run.info.run_id
        return run.info.run_id

    def _log_start(self, number: int, run_id: str, params: Mapping[str, Any], config: Mapping[str, Any] | None) -> None:
        self._log_batch(number, f"trial {number} start", run_id, params={k: v for k, v in params.items()})
        if config is not None:
            self._call(number, f"trial {number} start", self.client.log_text, run_id,
                       json.dumps(config, indent=2, sort_keys=True) + "\n", "config.json")

    def _log_end(self, number: int, run_id: str, state: TrialState, attrs: Mapping[str, Any], best_top1: float | None) -> None:
        metrics = {f"cost_{k}": (v, 0) for k, v in (attrs.get(record.COSTS) or {}).items()
                   if is_finite(v) and not isinstance(v, bool)}
        if best_top1 is not None:
            metrics["best_top1"] = (best_top1, 0)
        tags = {tracking.TAG_STATE: _STATES[state], record.OUTCOME: attrs.get(record.OUTCOME) or _STATES[state]}
        if attrs.get(record.ERROR):
            tags[record.ERROR] = str(attrs[record.ERROR])[-4000:]
        missed = len(self.missed)
        self._log_batch(number, f"trial {number} end", run_id, metrics=metrics, tags=tags)
        self._call(number, f"trial {number} end", self.client.set_terminated, run_id, "FAILED" if state == TrialState.FAIL else "FINISHED")
        if len(self.missed) == missed:
            self.closed.add(number)

    def _log_record(self, t: Any, bridge: Any) -> None:
        """A finished trial from the storage (an earlier run's, or one this run left open):
        its run (found or made), what it lacks, and its end."""
        attrs = t.user_attrs
        existed = t.number in self.runs
        run_id = self._trial_run(t.number, attrs, bridge)
        if run_id is None:
            return
        history = attrs.get(record.HISTORY) or []
        skip: set[int] = set()
        if existed:
            logged = self._call(t.number, f"trial {t.number} epochs", self.client.get_metric_history, run_id, "top1") or []
            skip = {m.step for m in logged}
        self._log_start(t.number, run_id, t.params, attrs.get(record.CONFIG))
        self._log_epochs(t.number, run_id, history, skip=skip)
        top1 = [h["top1"] for h in history if isinstance(h, Mapping) and is_finite(h.get("top1"))]
        self._log_end(t.number, run_id, t.state, attrs, max(top1) if top1 else None)

    def trial_started(self, live: Any, bridge: Any) -> None:
        run_id = self._trial_run(live.number, live.trial.user_attrs, bridge)
        if run_id is not None:
            self._log_start(live.number, run_id, live.trial.params, live.config.to_dict())

    def epoch(self, live: Any, metrics: Mapping[str, Any], bridge: Any) -> None:
        run_id = self.runs.get(live.number)
        if run_id is None:
            self.missed.append((live.number, f"trial {live.number} epoch {metrics.get('epoch')}"))
            return
        self._log_epochs(live.number, run_id, [metrics])

    def trial_finished(self, live: Any, bridge: Any) -> None:
        run_id = self.runs.get(live.number)
        if run_id is None:
            self.missed.append((live.number, f"trial {live.number} end"))
            return
        attrs = {**live.trial.user_attrs, record.COSTS: live.costs}
        self._log_end(live.number, run_id, live.state, attrs, live.best_top1)

    def trial_failed(self, trial: Any, error: str, bridge: Any) -> None:
        run_id = self._trial_run(trial.number, trial.user_attrs, bridge)
        if run_id is not None:
            self._log_start(trial.number, run_id, trial.params, None)
            self._log_end(trial.number, run_id, TrialState.FAIL, {**trial.user_attrs, record.ERROR: error}, None)
