"""MLflow as a view of a study's record: the tags that name a study's MLflow runs, the
check of a tracking URI, and finding a study's runs.

The Optuna storage is the record; MLflow shows it. A study logged with ``--mlflow URI``
(:mod:`runners._tracking`, in the driver) is one MLflow experiment named after the study,
holding one run for the study (tagged :data:`TAG_KIND` ``study``) and one run per trial
nested under it (``trial``, with :data:`TAG_TRIAL` its number). Every run carries the
study's name and its storage (:func:`storage_key`), so a resumed study finds its runs again
and ``python -m analysis.report RUN --mlflow URI`` finds the study's run to attach the
report to. Both go through :func:`study_runs`.

Tracking URIs: ``sqlite:///PATH`` (an MLflow database; its artifacts go beside it, in
``mlartifacts/``), ``http://HOST:PORT`` or ``https://...`` (a tracking server, ``mlflow
server``). MLflow 3 keeps its file store (``file:PATH`` or a bare path) in maintenance mode
and refuses to open it unless ``MLFLOW_ALLOW_FILE_STORE=true``; so does this module.

MLflow (the ``mlflow`` extra, ``pip install -e '.[mlflow]'``) is imported only inside the
functions that need it.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.storage import StorageURL, public_url
from study.validate import ConfigError

__all__ = [
    "TAG_STUDY", "TAG_STORAGE", "TAG_KIND", "TAG_TRIAL", "TAG_STATE", "KIND_STUDY", "KIND_TRIAL", "INSTALL_HINT",
    "check_tracking_uri", "check_system_metrics", "storage_key", "make_client", "client_scope", "StudyRuns", "study_runs",
    "find_study_run", "attach_folder",
]

#: the study's name (also the experiment's name)
TAG_STUDY = "study_name"
#: where the study lives (:func:`storage_key`): two studies of one name in two storages stay apart
TAG_STORAGE = "study_storage"
#: ``study`` (the study's run) or ``trial`` (a trial's run, nested under the study's)
TAG_KIND = "run_kind"
#: a trial run's Optuna trial number
TAG_TRIAL = "trial_number"
#: a trial run's final state: complete, pruned or failed (absent while it runs)
TAG_STATE = "state"
KIND_STUDY, KIND_TRIAL = "study", "trial"
INSTALL_HINT = "pip install -e '.[mlflow]'"
#: seconds a tracking server has to answer ``/health`` when the URI is checked
HEALTH_TIMEOUT_S = 5.0
_EXAMPLES = "sqlite:///PATH/mlflow.db or http://HOST:PORT"
#: loggers whose INFO lines (a database's creation and migration) are not shown while a client logs
_CHATTY_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration", "mlflow.system_metrics")
#: MLflow's settings while a client logs, unless the environment sets them: a few seconds of
#: HTTP retries, not MLflow's default minutes, before a server that went away is given up
#: on; no "View run at" lines on stdout and no progress bars for artifacts
_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _is_http(uri: str) -> bool:
    return urllib.parse.urlsplit(uri).scheme.lower() in ("http", "https")


def check_tracking_uri(uri: Any, *, timeout: float = HEALTH_TIMEOUT_S, name: str = "mlflow") -> str:
    """Check ``uri`` before anything is logged (or created): MLflow is installed, the URI is
    one this harness logs to, a SQLite database's folder exists, a server answers ``/health``
    within ``timeout`` seconds. A ValueError (``mlflow: ...``, or ``name`` for ``mlflow``: a
    command line's flag) names the problem; creates nothing. Returns the URI."""
    try:
        return _check_tracking_uri(uri, timeout)
    except ValueError as exc:
        text = str(exc)
        raise ValueError(name + text[len("mlflow"):] if text.startswith("mlflow:") else text) from None


def check_system_metrics(*, name: str = "mlflow_system_metrics") -> None:
    """Check that MLflow can sample this node's system metrics (CPU, memory, disk, network;
    GPUs where NVIDIA's management library finds one): its monitors need ``psutil`` (and
    ``nvidia-ml-py`` for GPUs, both in the ``mlflow`` extra). A :class:`ConfigError` named
    ``name`` when it cannot; creates nothing."""
    try:
        import psutil  # noqa: F401
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: F401
    except ImportError as exc:
        raise ConfigError(name, f"MLflow's system metrics need {exc.name or 'psutil'}, which is not installed: {INSTALL_HINT}") from None


def _check_tracking_uri(uri: Any, timeout: float) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("mlflow", f"expected a tracking URI ({_EXAMPLES}), got {uri!r}")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("mlflow", f"MLflow is not installed (the `mlflow` extra): {INSTALL_HINT}") from None
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        try:
            host, _ = parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigError("mlflow", f"malformed tracking URI {uri!r} ({exc})") from None
        if not host:
            raise ConfigError("mlflow", f"malformed tracking URI {uri!r}: no host ({scheme}://HOST:PORT)")
        _check_server(uri, timeout)
    elif scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not path or "?" in path:
            raise ConfigError("mlflow", f"malformed tracking URI {uri!r}: an MLflow database is sqlite:///PATH (sqlite:////abs/mlflow.db)")
        _check_file(Path(path), uri)
    elif scheme in ("", "file") or len(scheme) == 1:  # a path (C: is a drive) or file:PATH: MLflow's file store
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

        if not MLFLOW_ALLOW_FILE_STORE.get():
            raise ConfigError("mlflow", f"{uri!r} is MLflow's file store, which MLflow 3 keeps in maintenance mode and refuses; "
                             f"use {_EXAMPLES} (or set MLFLOW_ALLOW_FILE_STORE=true)")
        path = urllib.parse.unquote(parts.path) if scheme == "file" else uri
        if not path:
            raise ConfigError("mlflow", f"malformed tracking URI {uri!r}: a file store is file:///PATH")
        if Path(path).exists() and not Path(path).is_dir():
            raise ConfigError("mlflow", f"the file store {path} is not a folder")
        _check_file(Path(path), uri)
    else:
        raise ConfigError("mlflow", f"unsupported tracking URI {uri!r}: use {_EXAMPLES}")
    return uri


def _check_file(path: Path, uri: str) -> None:
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError("mlflow", f"the folder {folder} of {uri!r} does not exist")
    if path.is_dir() and uri.startswith("sqlite:"):
        raise ConfigError("mlflow", f"{path} is a folder, not an MLflow database file")
    if not os.access(folder, os.W_OK):
        raise ConfigError("mlflow", f"cannot write to {folder} (for {uri!r})")


def _check_server(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # a server that wants credentials (MLFLOW_TRACKING_USERNAME, ...): MLflow's client sends them
            return
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        problem = str(reason) or type(reason).__name__
    raise ConfigError("mlflow", f"no MLflow tracking server answers at {uri} ({url}: {problem}; waited {timeout:g} s)")


def storage_key(url: str) -> str:
    """The study's storage as its MLflow runs name it: a file's absolute path (SQLite, journal),
    else the URL without its password or driver (``postgresql://user@host:5432/db``); the
    same for the driver and for analysis, whichever folder they run in."""
    parsed = StorageURL.maybe(url)
    if parsed is None:
        return str(url)
    if parsed.is_journal:
        return "journal:" + os.path.realpath(parsed.journal or "")
    if parsed.is_sqlite and parsed.database not in (None, "", ":memory:"):
        return "sqlite:///" + os.path.realpath(parsed.database)
    bare = public_url(url)
    scheme, sep, rest = bare.partition("://")
    return (scheme.split("+", 1)[0] + sep + rest) if sep else bare


def make_client(uri: str) -> Any:
    """An ``mlflow.MlflowClient`` of ``uri`` (checked with :func:`check_tracking_uri` first)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextmanager
def client_scope(uri: str) -> Iterator[None]:
    """While it lasts, MLflow's HTTP client gives up on a server after a few seconds (not
    its default minutes of retries) and prints no run URLs or progress bars (variables the
    environment sets itself are kept), and MLflow's database set-up lines ("Creating initial
    MLflow database tables...", the system metrics monitor's start and stop) are not shown. ``uri``
    is the tracking URI it is for."""
    added = [k for k in _ENV_DEFAULTS if k not in os.environ]
    os.environ.update({k: _ENV_DEFAULTS[k] for k in added})
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@dataclass
class StudyRuns:
    """A study's MLflow runs: its experiment, its own run (None: none yet) and its trials' runs by number."""

    experiment_id: str | None
    study: Any = None
    trials: dict[int, Any] = field(default_factory=dict)


def study_runs(client: Any, name: str, storage: str) -> StudyRuns:
    """The MLflow runs of study ``name`` in ``storage`` (found by their tags, in the
    experiment named ``name``; the first run where there are several of one trial)."""
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return StudyRuns(experiment_id=None)
    found = StudyRuns(experiment_id=experiment.experiment_id)
    key, token = storage_key(storage), None
    while True:
        page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        for run in page:
            tags = run.data.tags
            if tags.get(TAG_STUDY) != name or tags.get(TAG_STORAGE) != key:
                continue
            if tags.get(TAG_KIND) == KIND_STUDY and found.study is None:
                found.study = run
            elif tags.get(TAG_KIND) == KIND_TRIAL and str(tags.get(TAG_TRIAL, "")).isdigit():
                found.trials.setdefault(int(tags[TAG_TRIAL]), run)
        token = page.token
        if not token:
            return found


def find_study_run(uri: str, name: str, storage: str, *, flag: str = "mlflow") -> str:
    """The id of study ``name``'s own run at ``uri`` (checked with :func:`check_tracking_uri`);
    a ValueError (``flag: ...``) when there is none. Creates nothing (a SQLite database that
    is not there is not made by asking)."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise ConfigError(flag, f"no MLflow database at {uri[len('sqlite:///'):]}")
    with client_scope(uri):
        try:
            found = study_runs(make_client(uri), name, storage)
        except Exception as exc:  # MLflow's own errors: a store it cannot open, a server that fails
            raise ConfigError(flag, f"cannot read the runs of {uri} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if found.study is None:
        raise ConfigError(flag, f"no MLflow run of study {name!r} (storage {storage_key(storage)}) at {uri}; "
                         f"a study run with `--mlflow {uri}` has one")
    return found.study.info.run_id


def attach_folder(uri: str, run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Log every file under ``folder`` as the artifacts ``artifact_path/...`` of run ``run_id``
    (a file that is there already is replaced)."""
    with client_scope(uri):
        make_client(uri).log_artifacts(run_id, str(folder), artifact_path=artifact_path)
