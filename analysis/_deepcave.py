"""A study as a DeepCAVE run: ``python -m analysis.export RUN --format deepcave --out DIR``.

DeepCAVE (Sass et al., "DeepCAVE: An Interactive Analysis Tool for Automated Machine Learning",
ICML ReALML workshop 2022) analyses HPO runs: fANOVA and local parameter importance, ablation
paths, budget correlation, configuration footprint, Pareto fronts, cost over time. It reads
Optuna studies only without conditional parameters, and every space here is conditional (k
only where a stage uses ECA). Its "Pandas DataFrame" run format is what it reads from any
tool: a folder with

- ``configspace.csv``: one row per hyperparameter (``name``, ``type`` float | integer |
  categorical, ``log``, ``lower``, ``upper``, ``default``, ``distribution``, ``item_0`` ...,
  ``ordered``, ``distribution_mu|sigma|alpha|beta``);
- ``trials.csv``: one row per trial (``config_id``, one column per hyperparameter, each
  objective as ``metric:<name> [<lower>; <upper>] (<maximize|minimize>)``, ``budget``,
  ``seed``, ``start_time``, ``end_time``, ``status``; any other column is kept as the trial's
  "additional" data).

(DeepCAVE's ``docs/converters/dataframe.rst`` and its reader
``deepcave/runs/converters/dataframe.py``, ``DataFrameRun``, at automl/DeepCAVE 03f7e2cd.)

What the format cannot say, and what this export writes instead:

- **Conditions.** The reader builds a configuration space without conditions, and a
  configuration must give every hyperparameter a legal value. A parameter a trial did not
  have (``k_s0`` of a psi trial) is written as the parameter's default, and the trial's
  ``inactive`` column names every parameter written so. The condition itself is written in
  ``configspace.csv``'s ``condition`` column (``k_mode == fixed``, ``kind_s0 in {eca}``),
  which DeepCAVE does not read: inferred from the trials (the one categorical parameter whose
  values decide, in every trial, whether the parameter was sampled).
- **Sets of numbers.** Optuna's categorical choice among numbers (k in {1, 3, 5, 7, 9}, r,
  width) is written as an integer (or float) range from the smallest to the largest choice;
  the choices themselves are in the ``choices`` column. (DeepCAVE reads categorical items as
  text and the trials' values as numbers: a numeric categorical would not match itself.)
- **Failed and pruned trials' objectives.** DeepCAVE drops the objectives of any trial whose
  status is not ``success``; they are written anyway (a pruned trial's best top-1 so far, its
  measured costs) for other readers.

Every finished trial is a row: complete (``success``), pruned (``pruned``, its budget the
epoch it reached) and failed (``failed``; ``aborted`` for a trial the driver left running,
recorded failed on ``--resume``), in the order they started. The budget is the epochs a
trial ran, the seed its training seed; the objectives are the study's, with their bounds
(top-1 in [0; 100], costs in [0; +inf]) and directions. Replicates of one configuration share
a ``config_id``. The other columns: ``number`` (the Optuna trial), ``outcome``, ``error``
(its error line), ``reference``, ``group``, ``replicate``, ``inactive``, the costs
(``cost_params``, ``cost_macs``, ``cost_latency_ms``) and what each stage of the network had
(``stage<i>_kind``, ``stage<i>_C``, ``stage<i>_k``: a psi trial's resolved k, which its
``k_s<i>`` parameters, inactive, do not say).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from study.record import error_line
from study.validate import ConfigError

if TYPE_CHECKING:
    from analysis._load import FrameSource

__all__ = ["Hyperparameter", "deepcave_space", "deepcave_trials", "export_deepcave", "DEEPCAVE_FILES", "OBJECTIVE_BOUNDS"]

#: the two files of a DeepCAVE DataFrame run
DEEPCAVE_FILES = ("configspace.csv", "trials.csv")
#: an objective's bounds (DeepCAVE normalises by them) by the study's objective name
OBJECTIVE_BOUNDS = {"top1": ("0", "100"), "params": ("0", "+inf"), "macs": ("0", "+inf"), "latency": ("0", "+inf")}
#: the frame column of each objective (a complete trial's value, and a pruned or failed one's measurement)
_OBJECTIVE_COLUMNS = {"top1": "top1", "params": "params", "macs": "macs", "latency": "latency_ms"}
_STATUS = {"complete": "success", "pruned": "pruned", "failed": "failed"}
_COSTS = ("params", "macs", "latency_ms")
_INTERRUPTED = "interrupted:"


@dataclass(frozen=True)
class Hyperparameter:
    """One row of ``configspace.csv``: ``type`` is "float", "integer" or "categorical";
    ``items`` the categorical values (text), ``choices`` the numbers an Optuna categorical
    chose among (written as a range), ``condition`` when it is sampled (None: always)."""

    name: str
    type: str
    default: Any
    lower: float | int | None = None
    upper: float | int | None = None
    log: bool = False
    items: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    condition: str | None = None

    def row(self, width: int) -> dict[str, Any]:
        numeric = self.type != "categorical"
        out: dict[str, Any] = {"name": self.name, "type": self.type, "log": self.log if numeric else None,
                               "lower": self.lower if numeric else None, "upper": self.upper if numeric else None,
                               "default": self.default, "distribution": "uniform" if numeric else None}
        for i in range(width):
            out[f"item_{i}"] = self.items[i] if i < len(self.items) else None
        out.update({"ordered": None if numeric else False, "distribution_mu": None, "distribution_sigma": None,
                    "distribution_alpha": None, "distribution_beta": None,
                    "choices": " ".join(map(str, self.choices)) or None, "condition": self.condition})
        return out


def _isfinite_or_nan(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(distributions: Sequence[Any]) -> tuple[str, tuple[Any, ...], float | int | None, float | int | None, bool]:
    """(type, choices, lower, upper, log) of the union of one parameter's distributions."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    choices: list[Any] = []
    lows, highs, log, ints = [], [], False, True
    for d in distributions:
        if isinstance(d, CategoricalDistribution):
            choices += [c for c in d.choices if c not in choices]
        elif isinstance(d, (IntDistribution, FloatDistribution)):
            lows.append(d.low)
            highs.append(d.high)
            log = log or d.log
            ints = ints and isinstance(d, IntDistribution)
    if choices and all(_isfinite_or_nan(c) for c in choices):
        lows += [min(choices)]
        highs += [max(choices)]
        ints = ints and all(isinstance(c, int) for c in choices)
    elif choices:
        return "categorical", tuple(choices), None, None, False
    lo, hi = min(lows), max(highs)
    return ("integer", tuple(choices), int(lo), int(hi), log) if ints else ("float", tuple(choices), float(lo), float(hi), log)


def _shared_tail(a: str, b: str) -> int:
    """How many trailing ``_``-separated words two names share (``eca_k_s2``, ``kind_s2``: 1)."""
    n = 0
    for x, y in zip(reversed(a.split("_")), reversed(b.split("_"))):
        if x != y:
            break
        n += 1
    return n


def infer_conditions(rows: Sequence[Mapping[str, Any]], names: Iterable[str], categorical: set[str]) -> dict[str, str]:
    """For each parameter some trials lack: the condition under which the trials have it, as
    text. A candidate parent is a categorical parameter present whenever the parameter is,
    whose values decide, in every trial that has it, whether the parameter was sampled. With
    few trials a rarely sampled parameter may have several; the nearest is chosen: the one
    whose name ends like the parameter's (the same stage: ``kind_s2`` for ``coord_r_s2``),
    then the one present in the fewest trials (the deepest: ``eca_mode_s2`` before
    ``kind_s2`` for ``eca_gamma_s2``), then one whose value the parameter's name holds."""
    out: dict[str, str] = {}
    for p in names:
        has = [p in r for r in rows]
        if all(has):
            continue
        found: list[tuple[tuple[int, int, int, str], str, list[Any]]] = []
        for q in categorical - {p}:
            if any(p in r and q not in r for r in rows):
                continue
            with_q = [r for r in rows if q in r]
            values = list(dict.fromkeys(r[q] for r in with_q if p in r))
            if values and all((p in r) == (r[q] in values) for r in with_q):
                named = any(str(v) in p.split("_") or p.startswith(f"{v}_") for v in values)
                found.append(((-_shared_tail(p, q), len(with_q), -int(named), q), q, values))
        if not found:
            out[p] = f"sampled in {sum(has)} of {len(rows)} trials (no one parameter decides it)"
            continue
        _, q, values = min(found)
        out[p] = f"{q} == {values[0]}" if len(values) == 1 else f"{q} in {{{', '.join(map(str, values))}}}"
    return out


def deepcave_space(trials: Sequence[Any]) -> list[Hyperparameter]:
    """The configuration space of the finished ``trials`` (Optuna ``FrozenTrial`` s): every
    parameter any of them sampled, with the union of its distributions, its default (its
    value in the first reference point that has it, else the first trial's; the first choice
    of a categorical) and its inferred condition."""
    names: list[str] = list(dict.fromkeys(n for t in trials for n in t.params))
    rows = [t.params for t in trials]
    kinds = {n: _kind([t.distributions[n] for t in trials if n in t.distributions]) for n in names}
    conditions = infer_conditions(rows, names, {n for n in names if kinds[n][0] == "categorical"})
    references = [t for t in trials if t.user_attrs.get("reference")]
    space = []
    for n in names:
        kind, choices, lo, hi, log = kinds[n]
        default = next((t.params[n] for t in [*references, *trials] if n in t.params), None)
        if kind == "categorical":
            items = tuple(str(c) for c in choices)
            space.append(Hyperparameter(n, kind, str(default), items=items, condition=conditions.get(n)))
        else:
            default = int(default) if kind == "integer" else float(default)
            space.append(Hyperparameter(n, kind, default, lo, hi, log, choices=choices, condition=conditions.get(n)))
    return space


def _status(row: Mapping[str, Any]) -> str:
    if row["state"] == "failed" and str(row.get("error") or "").startswith(_INTERRUPTED):
        return "aborted"
    return _STATUS[row["state"]]


def deepcave_trials(frames: FrameSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(configspace, trials)``: the two DataFrames of the DeepCAVE run of a study (a run
    folder, a storage URL or :class:`~analysis.StudyFrames`); ConfigError for a study with no
    finished trial or one whose objectives DeepCAVE has no bounds for."""
    _, configspace, trials = _run_frames(frames)
    return configspace, trials


def _run_frames(frames: FrameSource) -> tuple[list[Hyperparameter], pd.DataFrame, pd.DataFrame]:
    from analysis._load import coerce_frames, finite_or_nan

    fr = coerce_frames(frames)
    unknown = [o for o in fr.objectives if o not in OBJECTIVE_BOUNDS]
    if unknown:
        raise ConfigError("objectives", f"no bounds for {', '.join(unknown)} (known: {', '.join(OBJECTIVE_BOUNDS)})")
    t = fr.trials
    t = t[t["state"].isin(list(_STATUS))] if not t.empty else t
    if t.empty or fr.study is None:
        raise ConfigError("export", f"study {fr.name!r} has no finished trial (complete, pruned or failed)")
    frozen = {ft.number: ft for ft in fr.study.get_trials(deepcopy=False)}
    t = t.assign(_start=[frozen[n].datetime_start.timestamp() if frozen[n].datetime_start else math.inf for n in t["number"]])
    t = t.sort_values(["_start", "number"])
    trials = [frozen[int(n)] for n in t["number"]]
    space = deepcave_space(trials)
    width = max((len(h.items) for h in space), default=0)
    configspace = pd.DataFrame([h.row(width) for h in space])
    metric_columns = {o: f"metric:{o} [{OBJECTIVE_BOUNDS[o][0]}; {OBJECTIVE_BOUNDS[o][1]}] ({d})"
                      for o, d in zip(fr.objectives, fr.directions)}
    stage_columns = [c for c in t.columns if re.fullmatch(r"stage\d+_(kind|C|k)", c)]
    ids: dict[tuple, int] = {}
    rows = []
    for (_, r), ft in zip(t.iterrows(), trials):
        values = {h.name: (ft.params[h.name] if h.name in ft.params else h.default) for h in space}
        values = {h.name: str(values[h.name]) if h.type == "categorical" else values[h.name] for h in space}
        config_id = ids.setdefault(tuple(values.values()), len(ids))
        end = ft.datetime_complete or ft.datetime_start
        row = {"config_id": config_id, **values}
        row.update({col: finite_or_nan(r.get(_OBJECTIVE_COLUMNS[o])) for o, col in metric_columns.items()})
        row.update({"budget": int(r["epochs"]), "seed": int(r["seed"]) if pd.notna(r.get("seed")) else -1,
                    "start_time": ft.datetime_start.timestamp() if ft.datetime_start else math.nan,
                    "end_time": end.timestamp() if end else math.nan, "status": _status(r),
                    "number": int(r["number"]), "outcome": r.get("outcome"),
                    "error": error_line(r["error"]) if isinstance(r.get("error"), str) else None,
                    "reference": r.get("reference"), "group": r.get("group"), "replicate": r.get("replicate"),
                    "inactive": " ".join(h.name for h in space if h.name not in ft.params) or None})
        row.update({f"cost_{c}": finite_or_nan(r.get(c)) for c in _COSTS})
        row.update({c: r[c] for c in stage_columns})  # what the network had: a psi trial's k per stage
        rows.append(row)
    return space, configspace, pd.DataFrame(rows)


def _check_readable(folder: Path, space: Sequence[Hyperparameter]) -> None:
    """Read the written files back as DeepCAVE's reader does (``pandas.read_csv`` with its
    defaults) and check that every categorical item and value reads back as the text written,
    every number lies in its range: a value pandas would read otherwise ("None", "1e3",
    "True") is a ConfigError naming the parameter, never a run DeepCAVE misreads."""
    trials = pd.read_csv(folder / "trials.csv")
    read = pd.read_csv(folder / "configspace.csv").set_index("name", drop=False)
    items_cols = [c for c in read.columns if c.startswith("item_")]
    for h in space:
        column, row = trials[h.name], read.loc[h.name]
        if h.type == "categorical":
            items = [row[c] for c in items_cols if pd.notna(row[c])]
            bad = [v for v in [*items, row["default"], *column] if not isinstance(v, str) or v not in h.items]
            if bad or len(items) != len(h.items):
                raise ConfigError("export", f"parameter {h.name!r}: {(bad or [items])[0]!r} would not read back as the text "
                                  "written in DeepCAVE's DataFrame format")
        elif not all(h.lower <= float(v) <= h.upper for v in column):
            raise ConfigError("export", f"parameter {h.name!r}: a value outside [{h.lower}, {h.upper}]")


def export_deepcave(frames: FrameSource, out_dir: str | Path) -> dict[str, Any]:
    """Write the DeepCAVE run of a study into ``out_dir`` (created; a folder that holds
    anything but an earlier DeepCAVE export is refused); returns what was written (counts
    per status, the parameters, the conditions)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or set(p.name for p in out.iterdir()) - set(DEEPCAVE_FILES)):
        raise ConfigError("out", about=str(out), reason="holds other files; choose an empty or new folder")
    space, configspace, trials = _run_frames(frames)
    out.mkdir(parents=True, exist_ok=True)
    configspace.to_csv(out / "configspace.csv", index=False)
    trials.to_csv(out / "trials.csv", index=False)
    _check_readable(out, space)
    return {"trials": len(trials), "status": trials["status"].value_counts().to_dict(), "parameters": [h.name for h in space],
            "conditions": {h.name: h.condition for h in space if h.condition}, "configurations": int(trials["config_id"].nunique())}
