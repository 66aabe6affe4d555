"""The names under which a study records each trial: one module, used by the runners
(which write) and by analysis (which reads).

Every trial of a study - complete, pruned or failed - carries these Optuna user attributes
(all JSON values):

============  ===========================================================================
``config``    the TrialConfig as its JSON dict (:meth:`study.config.TrialConfig.to_dict`)
``stages``    per stage: ``{"stage", "channels", "planes", "blocks", "kind", <params>}``
              with ECA's resolved ``k`` (:meth:`study.models.StageInfo.to_dict`)
``costs``     ``{"params", "macs", "macs_224", "latency_ms", "resolution", ...}``
              (:class:`study.costs.Costs`); ``latency_ms`` probed with the node to itself,
              ``latency_iqr_ms`` its IQR, ``latency_device``/``latency_threads`` where,
              ``latency_exclusive``, ``arch_digest``; a trial whose network another trial
              measured first also has ``latency_own_ms`` (its own probe) and
              ``latency_from`` (that trial's number). Costs recorded before the probe lack
              these keys (they read as missing)
``history``   the per-epoch metrics so far (:meth:`study.metrics.EpochMetrics.to_dict`)
``outcome``   "complete", "pruned", "diverged" or "failed"
``error``     the error text of a failed or diverged trial
``reference`` the name of a reference point the study enqueued (e.g. "paper_psi")
``attempt``   how many times this configuration was started (resume re-runs)
``resumed_from`` the number of the trial this one re-runs (a trial the driver left running)
``group``     the replicate group: the number of the first trial of this configuration (its
              replicates, run with other seeds, share it)
``replicate`` the index of this run within its group (0, 1, ...)
============  ===========================================================================

The study itself carries ``settings`` (the runner's resolved settings as a dict),
``space`` (the search space's name) and, per network measured, ``latency:<arch_digest>``:
the latency its first trial probed (:data:`LATENCY_KEYS` and ``trial``), which every trial of
that network records (:func:`latency_attr`).

The objective of a single-objective study is the best validation top-1 (%) the trial
reached; the intermediate value at step ``epoch`` is that epoch's validation top-1.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CONFIG", "STAGES", "COSTS", "HISTORY", "OUTCOME", "ERROR", "REFERENCE", "ATTEMPT", "RESUMED_FROM",
    "GROUP", "REPLICATE", "trial_seed", "is_finite",
    "STUDY_SETTINGS", "STUDY_SPACE", "STAGE_KEYS",
    "OUTCOME_COMPLETE", "OUTCOME_PRUNED", "OUTCOME_DIVERGED", "OUTCOME_FAILED",
    "OBJECTIVES", "TrialRecord", "read_trial", "error_text", "error_line", "LATENCY_KEYS", "latency_attr",
]

CONFIG = "config"
STAGES = "stages"
COSTS = "costs"
HISTORY = "history"
OUTCOME = "outcome"
ERROR = "error"
REFERENCE = "reference"
ATTEMPT = "attempt"
RESUMED_FROM = "resumed_from"
GROUP = "group"
REPLICATE = "replicate"

#: study user attributes
STUDY_SETTINGS = "settings"
STUDY_SPACE = "space"

#: the costs keys of one probed latency, shared by the trials of one network (study attribute ``latency:<digest>``)
LATENCY_KEYS = ("latency_ms", "latency_iqr_ms", "latency_device", "latency_threads", "latency_exclusive")


def latency_attr(digest: str) -> str:
    """The study user attribute holding the latency of the network ``digest``
    (:func:`study.costs.arch_digest`)."""
    return f"latency:{digest}"


#: the structural keys of a recorded stage dict; every other key is an attention parameter
STAGE_KEYS = ("stage", "channels", "planes", "blocks", "kind")

OUTCOME_COMPLETE = "complete"
OUTCOME_PRUNED = "pruned"
OUTCOME_DIVERGED = "diverged"
OUTCOME_FAILED = "failed"

#: Objectives a study can optimise: name -> (cost key in ``costs`` or "top1", direction).
OBJECTIVES: dict[str, tuple[str, str]] = {
    "top1": ("top1", "maximize"),
    "params": ("params", "minimize"),
    "macs": ("macs", "minimize"),
    "latency": ("latency_ms", "minimize"),
}


@dataclass(frozen=True)
class TrialRecord:
    """The recorded attributes of one trial, read back from a FrozenTrial."""

    config: Mapping[str, Any] | None
    stages: tuple[Mapping[str, Any], ...]
    costs: Mapping[str, Any]
    history: tuple[Mapping[str, Any], ...]
    outcome: str | None
    error: str | None
    reference: str | None
    group: int | None = None
    replicate: int | None = None


def read_trial(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """Read the recorded attributes of an ``optuna.trial.FrozenTrial`` (missing ones are empty)."""
    attrs = trial.user_attrs
    return TrialRecord(
        config=attrs.get(CONFIG),
        stages=tuple(attrs.get(STAGES) or ()),
        costs=dict(attrs.get(COSTS) or {}),
        history=tuple(attrs.get(HISTORY) or ()),
        outcome=attrs.get(OUTCOME),
        error=attrs.get(ERROR),
        reference=attrs.get(REFERENCE),
        group=attrs.get(GROUP),
        replicate=attrs.get(REPLICATE),
    )


def error_text(exc: BaseException, *, frames: int = 8) -> str:
    """The text recorded for an error (a failed trial's ``error``, a failed rank's): the
    innermost ``frames`` frames of its traceback, then the error line (always the last line)."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-frames)
    return "".join(tb).strip()


def error_line(text: str | None) -> str:
    """The error line of a recorded error text (:func:`error_text`: its last line; the text
    itself when it is one line), "" for none."""
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number`` of a study seeded ``study_seed`` (seed mode
    "per_trial"): drawn from ``numpy.random.SeedSequence([study_seed, number])``, so every
    trial - and every replicate of a configuration - trains from its own seed, and the
    same study seed gives the same seeds again."""
    return int(np.random.SeedSequence([int(study_seed), int(number)]).generate_state(1)[0] % (2**31 - 1))


def is_finite(x: Any) -> bool:
    """Whether a recorded value (a top-1, a cost) is a finite number (not a bool, None,
    NaN or infinity)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
