"""Reading one study into pandas: a frame of trials and a long frame of epochs.

The study's Optuna storage is the record (see ``docs/architecture.md``); the attribute names are those
of :mod:`study.record`. Analysis never writes to a storage: SQLite files are opened in
SQLite's read-only URI mode, PostgreSQL sessions with ``default_transaction_read_only``,
other databases without table creation, a journal file (``journal:PATH``) through a backend
that only reads it (no lock file, never created), and a storage that holds no Optuna tables
is refused before Optuna could initialise it. A URL without a password connects with the one
in ``STUDY_STORAGE_PASSWORD`` (or libpq's ``PGPASSWORD`` / ``~/.pgpass``). All of that is
:func:`study.storage.open_storage` with ``readonly=True``, the one opener of a storage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import optuna
import pandas as pd

from study import record
from study.catalogue import psi_kinds as catalogue_psi_kinds
from study.metrics import METRIC_FIELDS
from study.storage import StorageURL, is_storage_url, open_storage, public_url, redact
from study.validate import ConfigError

__all__ = ["StudyFrames", "FrameSource", "load", "frames_of", "open_study_readonly", "summarize_kinds", "config_key"]

SETTINGS_FILE = "settings.json"
DEFAULT_DB = "study.db"
_STATES = {
    optuna.trial.TrialState.COMPLETE: "complete",
    optuna.trial.TrialState.PRUNED: "pruned",
    optuna.trial.TrialState.FAIL: "failed",
    optuna.trial.TrialState.RUNNING: "running",
    optuna.trial.TrialState.WAITING: "waiting",
}
#: the recorded per-epoch figures (every EpochMetrics field but ``epoch``, which is a column of its own)
_EPOCH_FIELDS = tuple(f for f in METRIC_FIELDS if f != "epoch")


@dataclass(frozen=True, eq=False)
class StudyFrames:
    """One study read into pandas.

    ``trials``: one row per trial with ``number``, ``state`` ("complete", "pruned",
    "failed", ...), ``outcome``, ``value`` (first objective) and ``obj_<name>`` per
    objective, ``top1`` (the best validation top-1 the trial reached: its objective when
    complete, the best intermediate value when pruned), ``top1_last``, ``epochs`` (epochs
    run), the costs (``params``, ``macs``, ``macs_224``, ``latency_ms``, ``resolution``,
    ``attention_params``; the latency's ``latency_iqr_ms``, ``latency_own_ms``,
    ``latency_device``, ``latency_threads`` and ``latency_exclusive``, NaN/None in a study
    recorded before the latency probe), the architecture (``backbone``, ``width``, ``stem``,
    ``num_stages``), per stage ``stage{i}_kind``, ``stage{i}_C`` (channels the attention acts
    on), ``stage{i}_planes``, ``stage{i}_blocks`` and one column per attention parameter
    (``stage{i}_k`` - the resolved ECA k -, ``stage{i}_r``, ``stage{i}_gamma``, ...),
    ``attention`` (per-stage kinds summarized, see :func:`summarize_kinds`), ``pattern``
    (the kinds joined by ","), ``gamma``/``b`` where every ECA stage asked for the same psi
    mapping, Optuna's sampled parameters as ``param_<name>``, ``reference``, ``group`` and
    ``replicate`` (replicate runs of one configuration), ``seed``, ``error``, ``config`` (the
    TrialConfig dict) and ``key`` (see :func:`config_key`).

    ``epochs``: one row per (trial, epoch) with the recorded EpochMetrics fields (``top1``,
    ``top5``, ``val_loss``, ...) and the trial's ``state``; when a trial has no recorded
    history its intermediate values give ``top1``.
    """

    trials: pd.DataFrame
    epochs: pd.DataFrame
    name: str
    storage: str  # its URL, written down without a password (reports print it)
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    run_dir: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    study: optuna.Study | None = field(default=None, repr=False)

    @property
    def complete(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == "complete"]

    @property
    def num_stages(self) -> int:
        return int(self.trials["num_stages"].max()) if len(self.trials) and self.trials["num_stages"].notna().any() else 0

    def __repr__(self) -> str:
        counts = self.trials["state"].value_counts().to_dict() if len(self.trials) else {}
        return f"StudyFrames(name={self.name!r}, trials={len(self.trials)}, states={counts})"


#: what the analysis functions take for a study: its frames, a run folder or a storage URL
FrameSource: TypeAlias = StudyFrames | str | Path


# --------------------------------------------------------------------------------------
# storage access (read-only)


def _resolve_run_dir(run_dir: Path) -> tuple[str, str | None, dict[str, Any]]:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    settings: dict[str, Any] = {}
    sfile = run_dir / SETTINGS_FILE
    if sfile.is_file():
        try:
            settings = json.loads(sfile.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{sfile}: not valid JSON ({exc})") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{sfile}: expected a JSON object")
    url = settings.get("storage")
    local_db = run_dir / DEFAULT_DB
    parsed = StorageURL.maybe(str(url)) if url else None
    if not url or (parsed is not None and parsed.is_sqlite and local_db.is_file()):
        # the run folder's own study.db wins over a relative path written from another cwd
        if not local_db.is_file():
            raise FileNotFoundError(f"run folder {str(run_dir)!r} has no {DEFAULT_DB} and its {SETTINGS_FILE} names no storage")
        url = f"sqlite:///{local_db}"
    return str(url), settings.get("name"), settings


def open_study_readonly(source: str | Path, study_name: str | None = None) -> tuple[optuna.Study, str, Path | None, dict[str, Any]]:
    """``(study, storage_url, run_dir, settings)`` for a run folder or a storage URL."""
    text = str(source)
    run_dir: Path | None = None
    settings: dict[str, Any] = {}
    if is_storage_url(text):
        url = text
    else:
        run_dir = Path(text)
        url, name, settings = _resolve_run_dir(run_dir)
        study_name = study_name or name
    storage = open_storage(url, readonly=True)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            listing = ", ".join(names) if names else "none"
            raise ConfigError("study", f"the storage holds {len(names)} studies ({listing}); name one with --study")
        study_name = names[0]
    elif study_name not in names:
        listing = ", ".join(names) if names else "none"
        raise ConfigError("study", f"no study named {study_name!r} in {redact(url)} (studies: {listing})")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not settings and isinstance(study.user_attrs.get(record.STUDY_SETTINGS), dict):
        settings = dict(study.user_attrs[record.STUDY_SETTINGS])  # the runners also keep their settings on the study
    return study, url, run_dir, settings


# --------------------------------------------------------------------------------------
# frames


def summarize_kinds(kinds: Sequence[str]) -> str:
    """One label for a per-stage attention pattern.

    Every stage the same kind -> that kind ("eca", "none"); one attention kind in some
    stages and none in the others -> "<kind>+none"; more than one attention kind -> "mixed".
    """
    kinds = [str(k) for k in kinds if k is not None]
    if not kinds:
        return "unknown"
    distinct = set(kinds)
    if len(distinct) == 1:
        return kinds[0]
    active = distinct - {"none"}
    if len(active) == 1:
        return f"{next(iter(active))}+none"
    return "mixed"


def config_key(config: Mapping[str, Any] | None, *, what: str = "arch") -> str | None:
    """A canonical string naming a configuration, to match trials across studies.

    ``what="arch"`` (default): the architecture without ``num_classes`` (two proxies may
    differ in class count); ``"net"``: also without the stem (an export for full training
    swaps the proxy's low-resolution stem for ImageNet's); ``"arch+recipe"`` adds the recipe;
    ``"all"`` the whole TrialConfig.
    """
    if not config:
        return None
    if what == "all":
        data: Any = config
    else:
        drop = ("num_classes", "stem") if what == "net" else ("num_classes",)
        arch = {k: v for k, v in dict(config.get("arch", {})).items() if k not in drop}
        data = arch if what in ("arch", "net") else {"arch": arch, "recipe": config.get("recipe")}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def finite_or_nan(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def psi_kinds() -> tuple[str, ...]:
    """The attention kinds with a kernel size k that psi(C) may set (:func:`study.catalogue.psi_kinds`, read without torch)."""
    return catalogue_psi_kinds()


def _trial_row(t: optuna.trial.FrozenTrial, objectives: Sequence[str]) -> dict[str, Any]:
    rec = record.read_trial(t)
    cfg = dict(rec.config) if rec.config else None
    state = _STATES.get(t.state, t.state.name.lower())
    row: dict[str, Any] = {"number": t.number, "state": state, "outcome": rec.outcome}
    values = list(t.values) if t.values is not None else [math.nan] * len(objectives)
    row["value"] = finite_or_nan(values[0]) if values else math.nan
    for name, v in zip(objectives, values):
        row[f"obj_{name}"] = finite_or_nan(v)
    hist_top1 = [finite_or_nan(h.get("top1")) for h in rec.history if isinstance(h, Mapping)]
    inter = [finite_or_nan(v) for _, v in sorted(t.intermediate_values.items())]
    curve = [v for v in (hist_top1 or inter) if not math.isnan(v)]
    top1 = math.nan
    if "top1" in objectives and state == "complete":
        top1 = row["obj_top1"]
    if math.isnan(top1) and curve:
        top1 = max(curve)
    row["top1"] = top1
    row["top1_last"] = curve[-1] if curve else math.nan
    row["epochs"] = max(len(rec.history), len(t.intermediate_values))
    for key in ("params", "macs", "macs_224", "latency_ms", "resolution", "attention_params", "latency_iqr_ms", "latency_own_ms"):
        row[key] = finite_or_nan(rec.costs.get(key)) if key in rec.costs and rec.costs.get(key) is not None else math.nan
    for key in ("latency_device", "latency_threads", "latency_exclusive"):  # None before the latency probe
        row[key] = rec.costs.get(key)
    arch = dict(cfg.get("arch", {})) if cfg else {}
    row["backbone"] = arch.get("backbone")
    row["width"] = finite_or_nan(arch.get("width")) if "width" in arch else math.nan
    row["stem"] = arch.get("stem")
    row["num_classes"] = arch.get("num_classes")
    recipe = dict(cfg.get("recipe", {})) if cfg else {}
    row["budget_epochs"] = recipe.get("epochs")
    proxy = dict(cfg.get("proxy", {})) if cfg else {}
    row["proxy"] = proxy.get("source")
    row["proxy_resolution"] = proxy.get("resolution")
    # per-stage: the recorded (resolved) description wins; the config fills what it lacks
    spec_stages = list(arch.get("stages") or [])
    stages = [dict(s) for s in rec.stages] if rec.stages else []
    n = max(len(stages), len(spec_stages))
    row["num_stages"] = n if n else math.nan
    kinds: list[str] = []
    psi_pairs: set[tuple[float, float]] = set()
    fixed_k = False  # an ECA stage with an explicit k: not every ECA stage follows one psi mapping
    eca_kinds = psi_kinds()
    for i in range(n):
        st = stages[i] if i < len(stages) else {}
        sp = spec_stages[i] if i < len(spec_stages) else {}
        if isinstance(sp, str):
            sp = {"kind": sp}
        kind = st.get("kind", sp.get("kind"))
        kinds.append(kind)
        row[f"stage{i}_kind"] = kind
        row[f"stage{i}_C"] = st.get("channels", math.nan)
        row[f"stage{i}_planes"] = st.get("planes", math.nan)
        row[f"stage{i}_blocks"] = st.get("blocks", math.nan)
        params = {k: v for k, v in sp.items() if k != "kind"}
        params.update({k: v for k, v in st.items() if k not in record.STAGE_KEYS})
        for k, v in params.items():
            row[f"stage{i}_{k}"] = v
        if kind in eca_kinds and ("gamma" in sp or "b" in sp) and "k" not in sp:
            psi_pairs.add((float(sp.get("gamma", 2)), float(sp.get("b", 1))))
        elif kind in eca_kinds and "k" in sp:
            fixed_k = True
    row["attention"] = summarize_kinds(kinds) if kinds else "unknown"
    row["pattern"] = ",".join(str(k) for k in kinds)
    row["gamma"], row["b"] = next(iter(psi_pairs)) if len(psi_pairs) == 1 and not fixed_k else (math.nan, math.nan)
    for name, v in t.params.items():
        row[f"param_{name}"] = v
    row["reference"] = rec.reference
    row["group"] = rec.group
    row["replicate"] = rec.replicate
    row["seed"] = cfg.get("seed") if cfg else None
    row["error"] = rec.error
    row["datetime_start"] = t.datetime_start
    row["duration_s"] = t.duration.total_seconds() if t.duration is not None else math.nan
    row["config"] = cfg
    row["key"] = config_key(cfg)
    return row


def _epoch_rows(t: optuna.trial.FrozenTrial, state: str) -> list[dict[str, Any]]:
    rec = record.read_trial(t)
    rows: list[dict[str, Any]] = []
    if rec.history:
        for i, h in enumerate(rec.history):
            if not isinstance(h, Mapping):
                continue
            r = {"trial": t.number, "epoch": int(h.get("epoch", i + 1)), "state": state}
            for f in _EPOCH_FIELDS:
                r[f] = finite_or_nan(h.get(f))
            rows.append(r)
    else:
        for step, v in sorted(t.intermediate_values.items()):
            rows.append({"trial": t.number, "epoch": int(step), "state": state, "top1": finite_or_nan(v)})
    return rows


def frames_from_trials(
    trials: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [_trial_row(t, objectives) for t in trials]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["number", "state", "outcome", "value", "top1", "top1_last", "epochs", "params", "macs",
                                   "macs_224", "latency_ms", "attention", "pattern", "num_stages", "config", "key"])
    # stage columns in a stable order, after the fixed ones
    stage_cols = sorted((c for c in df.columns if c.startswith("stage") and "_" in c), key=_stage_sort)
    other = [c for c in df.columns if c not in stage_cols]
    front = [c for c in other if c not in ("config", "key", "error", "datetime_start", "duration_s")]
    back = [c for c in ("error", "datetime_start", "duration_s", "config", "key") if c in other]
    df = df[front + stage_cols + back]
    erows = [r for t, row in zip(trials, rows) for r in _epoch_rows(t, row["state"])]
    ep = pd.DataFrame(erows, columns=["trial", "epoch", "state", *_EPOCH_FIELDS])
    return df.reset_index(drop=True), ep


def _stage_sort(col: str) -> tuple[int, int, str]:
    head, rest = col.split("_", 1)
    try:
        i = int(head[5:])
    except ValueError:
        i = 10**6
    order = {"kind": 0, "C": 1, "planes": 2, "blocks": 3}
    return i, order.get(rest, 4), rest


def _objective_names(study: optuna.Study, settings: Mapping[str, Any]) -> tuple[str, ...]:
    names = settings.get("objectives")
    n = len(study.directions)
    if isinstance(names, (list, tuple)) and len(names) == n:
        return tuple(str(x) for x in names)
    metric = study.metric_names if getattr(study, "metric_names", None) else None
    if metric and len(metric) == n:
        return tuple(metric)
    return ("top1",) if n == 1 else tuple(["top1", *[f"objective{i}" for i in range(1, n)]])


def load(source: str | Path, study_name: str | None = None) -> StudyFrames:
    """Read a study: ``load("runs/NAME")`` or ``load("postgresql://...", "NAME")``.

    A run folder is read through its ``settings.json`` (``name``, ``storage``,
    ``objectives``) and its ``study.db``. A storage URL needs ``study_name`` unless it
    holds exactly one study. Raises ``FileNotFoundError`` for a missing folder or database
    and ``ValueError`` (naming the problem) for a bad URL or an unknown study name.
    """
    study, url, run_dir, settings = open_study_readonly(source, study_name)
    return frames_of(study, settings=settings, storage=public_url(url), run_dir=run_dir)


def frames_of(study: optuna.Study, *, settings: Mapping[str, Any] | None = None, storage: str = "",
              run_dir: Path | None = None) -> StudyFrames:
    """The frames of an already opened ``optuna.Study`` (e.g. one a runner just wrote)."""
    settings = dict(settings or {})
    objectives = _objective_names(study, settings)
    df, ep = frames_from_trials(study.get_trials(deepcopy=False), objectives)
    return StudyFrames(
        trials=df,
        epochs=ep,
        name=study.study_name,
        storage=storage,
        objectives=objectives,
        directions=tuple(d.name.lower() for d in study.directions),
        run_dir=run_dir,
        settings=settings,
        study=study,
    )


def coerce_frames(obj: FrameSource, study_name: str | None = None) -> StudyFrames:
    """A :class:`StudyFrames` from frames, a run folder, or a storage URL."""
    if isinstance(obj, StudyFrames):
        return obj
    if isinstance(obj, (str, Path)):
        return load(obj, study_name)
    raise TypeError(f"expected StudyFrames, a run folder or a storage URL, got {type(obj).__name__}")


def numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
