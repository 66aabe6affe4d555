"""The claims a k-vs-C answer makes about mappings, held per study.

A mapping claim is a sentence the answer prints about a mapping and the paper's psi: ``beats``
("k3 beats the paper's psi by ..."), ``loses`` ("... loses ... to the paper's psi") and
``paper_loses`` ("the paper's psi loses at least ... against the best k per C"). They are
controlled together, per study, not one interval at a time:

- every interval behind them comes from the mapping table's one max-t family (every pair of
  k at every C, every fixed mapping and every psi curve against the paper's psi;
  :mod:`analysis.kmap._mappings`), so all of them hold at once with 1 - alpha, both sides
  and all mappings;
- no claim is made unless the test of k in top-1 rejects (a mapping can differ from the
  paper's psi only if k matters, so under "k does not matter" the study makes a claim at
  most as often as that exact test rejects), and none where the model's checks reject the
  C-only, additive description the mapping scores rest on;
- the paper's regret lower bound is at least every mapping's lower bound on its advantage,
  so "X beats the paper's psi" and "no evidence that the paper's psi loses" never stand in
  one answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analysis.kmap._analysis import KmapAnalysis
    from analysis.kmap._effect import KEffect

__all__ = ["CLAIMS", "Claim", "claim_gate", "mapping_claims", "mapping_lines"]

#: the kinds of mapping claim
CLAIMS = ("beats", "loses", "paper_loses")


@dataclass(frozen=True)
class Claim:
    """One claim sentence about a mapping: ``claim`` one of :data:`CLAIMS`, ``estimate`` and
    ``lo``..``hi`` the interval it rests on (top-1 points), ``text`` the sentence printed."""

    mapping: str
    claim: str
    estimate: float
    lo: float
    hi: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def claim_gate(effect: KEffect) -> str | None:
    """Why no mapping claim may be made, or None when claims may be made."""
    if not effect.top1_evidence:
        return (f"the test of k in top-1 did not reject (p = {effect.p_value:.2g}, level {effect.top1_level:g}), and no claim "
                "about a mapping is made without it")
    if not effect.fits:
        what = []
        if effect.stage_matters:
            what.append("an effect of k that differs between stages at equal C")
        if not effect.additive:
            what.append("interacting kernel sizes of two stages")
        return (f"the model's checks found {' and '.join(what)}, which the mapping scores (functions of C, additive over "
                "stages) assume away, so the table's differences are shown, not found")
    return None


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def mapping_claims(effect: KEffect, table: pd.DataFrame) -> tuple[Claim, ...]:
    """Every claim the mapping ``table`` supports (none when :func:`claim_gate` says so)."""
    if claim_gate(effect) is not None:
        return ()
    conf = f"{100 * (1 - effect.alpha):.0f} %"
    out = []
    m = table.set_index("mapping")
    for name, r in m.iterrows():
        est, lo, hi = _f(r["vs_paper"]), _f(r["vs_paper_lo"]), _f(r["vs_paper_hi"])
        if name == "paper_psi" or not math.isfinite(est):
            continue
        ci = f"{conf} CI {lo:.2f} to {hi:.2f}, simultaneous"
        if lo > 0:
            out.append(Claim(str(name), "beats", est, lo, hi, f"{name} beats the paper's psi by {est:.2f} points ({ci})"))
        elif hi < 0:
            out.append(Claim(str(name), "loses", est, lo, hi, f"{name} loses {-est:.2f} points to the paper's psi ({ci})"))
    if "paper_psi" in m.index:
        r = m.loc["paper_psi"]
        est, lo, hi = _f(r["regret"]), _f(r["regret_lo"]), _f(r["regret_hi"])
        if math.isfinite(lo) and lo > 0:
            out.append(Claim("paper_psi", "paper_loses", est, lo, hi,
                             f"the paper's psi loses at least {lo:.2f} points (estimate {est:.2f}, {conf} CI {lo:.2f} to {hi:.2f}, "
                             "simultaneous) against the best k per C"))
    return tuple(out)


def mapping_lines(an: KmapAnalysis) -> list[str]:
    """The mapping comparison in words: the claims the table supports (or why none is made),
    the paper's regret, and the fitted psi named as chosen on the data. Shared by the CLI
    and the report."""
    e = an.effect
    conf = f"{100 * (1 - e.alpha):.0f} %"
    gate = claim_gate(e)
    lines = []
    if gate:
        lines.append(f"no mapping is shown better or worse than the paper's psi at this budget: {gate}")
    else:
        lines += [c.text for c in an.claims if c.claim != "paper_loses"]
        if not any(c.claim in ("beats", "loses") for c in an.claims):
            lines.insert(0, "no mapping is shown better or worse than the paper's psi at this budget")
    paper = [c for c in an.claims if c.claim == "paper_loses"]
    m = an.mappings.set_index("mapping")
    if paper:
        lines.append(paper[0].text)
    elif "paper_psi" in m.index and np.isfinite(_f(m.loc["paper_psi", "regret_lo"])):
        r = m.loc["paper_psi"]
        lines.append(f"no evidence that the paper's psi loses top-1 against the best k per C (regret {conf} CI "
                     f"{r['regret_lo']:.2f} to {r['regret_hi']:.2f}, simultaneous)")
    f = an.fitted
    if f is not None:
        where = (f"its intervals are simultaneous over the {f.candidates} psi curves it was chosen among, in the table's one family "
                 f"(critical value {an.critical:.2f}), and its estimates are optimistic" if math.isfinite(an.critical) and
                 np.isfinite(_f(m.loc["fitted_psi", "vs_paper"])) else
                 "its difference to the paper's psi cannot be scored on these widths")
        lines.append(f"fitted psi: gamma={f.gamma:g}, b={f.b:g}, chosen on this study's data ({len(f.equal)} grid pairs predict the "
                     f"same top-1; the paper's (2, 1) {'is' if f.contains_paper else 'is not'} among them); it is scored on the data "
                     f"that chose it, so {where}; confirm it on fresh data with python -m study.run --space kmap_confirm --from RUN")
    return lines
