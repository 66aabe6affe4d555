"""A confirmation study read back as paired differences, and its decision.

A confirmation's trials carry the parameters ``arm`` and ``width`` and their round (the
``replicate`` index: every run of round r trains from the round's one seed). The response of a
run is its validation top-1 at the last epoch; a run that failed or diverged has none, and a
run that collapsed (:func:`analysis.kmap.collapsed_runs`, per width) is counted with them: the
pair it belongs to is left out of that arm's sequence and counted (``failed``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames
from analysis.confirm._decision import Decision, Rule, decide
from analysis.kmap import collapsed_runs
from study.validate import ConfigError

__all__ = ["RULE_KEY", "confirmation_decision", "paired_differences", "study_rule"]

#: the key of the decision rule in a confirmation study's ``space_options``
RULE_KEY = "rule"


def study_rule(frames: FrameSource) -> Rule:
    """The decision rule a confirmation study stored before its first run."""
    fr = coerce_frames(frames)
    options = dict(fr.settings.get("space_options") or {})
    if RULE_KEY not in options:
        raise ConfigError("confirmation", "the study stores no decision rule (it is not a sequential kmap_confirm study)")
    return Rule.from_dict(options[RULE_KEY])


def paired_differences(frames: FrameSource, rule: Rule) -> tuple[pd.DataFrame, int]:
    """One row per (tested arm, round) with ``d``: the arm's top-1 minus the paper's psi's,
    averaged over the rule's widths (NaN where a run of the pair failed, diverged or
    collapsed, or is missing); and the runs the study has spent (finished or failed)."""
    fr = coerce_frames(frames)
    t = fr.trials
    if t.empty or "param_arm" not in t:
        return pd.DataFrame(columns=["arm", "round", "d"]), 0
    spent = int(t["state"].isin(["complete", "pruned", "failed"]).sum())
    t = t[t["state"].isin(["complete", "pruned", "failed"])].copy()
    width = t["param_width"] if "param_width" in t else t["width"]
    t["w"] = pd.to_numeric(width, errors="coerce").astype(float)
    t["round"] = pd.to_numeric(t["replicate"], errors="coerce")
    t["y"] = pd.to_numeric(t["top1_last"], errors="coerce").where(t["state"] != "failed")
    ok = t["y"].notna()
    if ok.any():
        chance = 100.0 / pd.to_numeric(t.loc[ok, "num_classes"], errors="coerce").to_numpy(float)
        down = collapsed_runs(t.loc[ok, "y"].to_numpy(float), chance, t.loc[ok, "w"].map(lambda w: f"{w:g}").to_numpy(str))
        t.loc[t.index[ok][down], "y"] = math.nan
    y = t.pivot_table(index=["round", "w"], columns="param_arm", values="y", aggfunc="mean", dropna=False)
    rows = []
    widths = [float(w) for w in rule.widths]
    for arm in rule.tested:
        ran = t[t["param_arm"] == arm]["round"].dropna().astype(int).unique()
        for r in sorted(ran):
            try:
                mine = np.array([y.loc[(r, w), arm] for w in widths], float)
                ref = np.array([y.loc[(r, w), rule.reference] for w in widths], float)
            except KeyError:
                mine = ref = np.array([math.nan])
            d = float(np.mean(mine - ref)) if np.isfinite(mine).all() and np.isfinite(ref).all() else math.nan
            rows.append({"arm": arm, "round": r, "d": d})
    return pd.DataFrame(rows, columns=["arm", "round", "d"]), spent


def confirmation_decision(frames: FrameSource, *, stopped: str = "") -> Decision:
    """The decision of a confirmation study as it stands (see :mod:`analysis.confirm._decision`)."""
    fr = coerce_frames(frames)
    rule = study_rule(fr)
    pairs, spent = paired_differences(fr, rule)
    stop = stopped or dict(fr.settings.get("space_options") or {}).get("stopped", "")
    return decide(pairs, rule, runs=spent, stopped=stop)
