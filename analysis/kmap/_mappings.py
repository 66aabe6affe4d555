"""Mappings k = m(C) scored by the top-1 they are predicted to lose, with intervals that hold
together, whatever the truth is.

What matters about a mapping is not how far its k lie from a noisy k* (the squared error in
k that the ECA paper's plots invite) but how much top-1 a network loses by using it. For a
network of the study (a backbone at one of its widths, the analysed attention in every
stage) the fitted model (:mod:`analysis.kmap._effect`) predicts

- **regret**: sum over its stages of max_k theta(C, k) - theta(C, the mapping's k), averaged
  over the study's widths. The best k is unknown, so the interval is built from intervals of
  every difference between two k at every C: at each C the regret lies between
  max(0, max_k lower bound) and max(0, max_k upper bound) of the contrasts
  theta(C, k) - theta(C, m(C)), whatever k is best, and the network's interval sums these.
  The point estimate is the best of noisy estimates, biased upward when k matters little;
  the interval is not.
- **vs paper**: the mapping's top-1 minus the paper's psi (gamma=2, b=1) top-1, a linear
  contrast.

**One family for the whole table.** Every interval of the table comes from one max-t family
(Hothorn, Bretz and Westfall 2008; :class:`analysis.kmap._model.MaxT`): every pair of k at
every C, every fixed mapping against the paper's psi (the paper's psi, timm's rule, k=3 everywhere, the
authors' released per-stage k, any mapping the user names) and every distinct psi curve on
the (gamma, b) grid against the paper's psi. So every claim the table supports holds at
once with 1 - alpha, both sides and all mappings together, and so does a claim about a
mapping chosen after looking at the data: **the fitted psi**, the (gamma, b) whose psi
curve maximises the predicted top-1 (over the grid; every equal optimum reported), is one of
the grid's curves. Its point estimates remain optimistic; a confirmation study on fresh
data scores it without selection. For the same reason the paper's regret lower bound is at
least every mapping's lower bound on its advantage over the paper's psi (the best k per C
is at least as good as any mapping), so the table cannot say that a mapping beats the
paper's psi and that the paper's psi loses nothing.

**Same networks for every mapping.** Every mapping is scored on the widths where all of them
can be scored (a mapping whose k was never tried at some C, or whose effect there is not
estimable, cannot be scored for that network and says so, ``missing``); the fitted psi is
chosen on those widths too, so no regret or difference is an average over other networks
than its neighbour's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.kmap._effect import KModel, pair_contrasts
from analysis.kmap._fits import PAPER_B, PAPER_GAMMA, psi
from analysis.kmap._model import MaxT
from analysis.kmap._psi_choice import PsiChoice, networks
from study.validate import ConfigError

__all__ = [
    "PAPER_B",
    "PAPER_GAMMA",
    "REGRET_CAVEAT",
    "Mapping",
    "MappingScore",
    "MappingScores",
    "candidate_mappings",
    "common_widths",
    "parse_mapping",
    "score_mappings",
]

#: what a regret is, in words, for the report and the CLI
REGRET_CAVEAT = ("Regret is measured against the best k per C, which the data estimate: its interval holds whatever k is best, "
                 "and its estimate, the best of noisy estimates, is biased upward; a regret whose interval reaches 0 is no "
                 "evidence of loss")

#: a mapping: (stage index, C, backbone) -> k, or None where it gives none
KFn = Callable[[int, float, str], "int | None"]


@dataclass(frozen=True)
class Mapping:
    """A candidate mapping: ``name``, ``description`` and ``k(i, C, backbone)``; ``chosen``
    True for one chosen on the study's data (the fitted psi)."""

    name: str
    description: str
    k: KFn
    chosen: bool = False


@dataclass(frozen=True)
class MappingScore:
    """One mapping's predicted cost. ``regret``/``regret_ci``: top-1 points a network of the
    study loses against the best k per C (mean over the scored widths); ``vs_paper`` and
    ``vs_paper_ci``: its top-1 minus the paper's psi (both intervals from the table's one
    family, see the module doc); ``widths``: where it was scored; ``missing``: (C, k) it asks
    for that the study never ran or whose effect it cannot estimate (aliased)."""

    name: str
    description: str
    regret: float | None
    regret_ci: tuple[float, float] | None
    vs_paper: float | None
    vs_paper_ci: tuple[float, float] | None
    widths: tuple[str, ...]
    missing: tuple[tuple[int, int], ...]

    def row(self) -> dict[str, Any]:
        f = lambda v: None if v is None or not math.isfinite(v) else float(v)
        return {"mapping": self.name, "regret": f(self.regret),
                "regret_lo": f(self.regret_ci[0]) if self.regret_ci else None,
                "regret_hi": f(self.regret_ci[1]) if self.regret_ci else None,
                "vs_paper": f(self.vs_paper), "vs_paper_lo": f(self.vs_paper_ci[0]) if self.vs_paper_ci else None,
                "vs_paper_hi": f(self.vs_paper_ci[1]) if self.vs_paper_ci else None,
                "widths": ",".join(self.widths), "missing": " ".join(f"C={c}:k={k}" for c, k in self.missing),
                "description": self.description}


@dataclass(frozen=True)
class MappingScores:
    """Every candidate mapping's score (``table``, one row each, best first), the one max-t
    ``critical`` value all its intervals use and the size of that family (``family``: its
    contrasts), the ``widths`` every mapping was scored on and ``notes`` on what could not
    be scored where."""

    table: pd.DataFrame
    critical: float
    family: int
    widths: tuple[str, ...]
    notes: tuple[str, ...] = ()


def _choices(model: KModel, mapping: Mapping, backbone: str, Cs: Sequence[float]) -> tuple[list[tuple[float, float]] | None, list]:
    """The (C, k) a mapping gives a network's stages that carry k effects, or None with the
    (C, k) it asks for that cannot be scored (never run, or aliased)."""
    lv = model.estimable_levels()
    choice = [mapping.k(i, C, backbone) for i, C in enumerate(Cs)]
    scored = [(C, k) for C, k in zip(Cs, choice) if C in lv]
    bad = [(int(C), int(k) if k is not None else -1) for C, k in scored if k is None or float(k) not in lv[C]]
    if bad or not scored:
        return None, [b for b in bad if b[1] >= 0]
    return [(C, float(k)) for C, k in scored], []


def common_widths(model: KModel, mappings: Sequence[Mapping]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The widths on which every mapping that can be scored somewhere can be scored, and
    notes naming the widths left out and why. When no width serves them all, the widths of
    the paper's psi (or, failing that, every width): each mapping is then scored where it
    can be, and a note says so."""
    nets = networks(model)
    ok = {m.name: {w for w, (bb, Cs) in nets.items() if _choices(model, m, bb, Cs)[0] is not None} for m in mappings}
    some = [w for w in ok.values() if w]
    common = set(nets).intersection(*some) if some else set()
    notes = []
    if common:
        dropped = sorted(set(nets) - common)
        if dropped:
            why = [f"{name} cannot be scored at {', '.join(sorted(set(nets) - ws))}" for name, ws in ok.items() if ws and set(nets) - ws]
            notes.append(f"every mapping is scored on the same widths ({', '.join(sorted(common))}), leaving out "
                         f"{', '.join(dropped)}: " + "; ".join(why))
        return tuple(sorted(common)), tuple(notes)
    fallback = ok.get("paper_psi") or set(nets)
    notes.append("no width lets every mapping be scored: each mapping is scored on the widths where it can be (column widths), "
                 "so their averages are over different networks")
    return tuple(sorted(fallback)), tuple(notes)


def _t_interval(model: KModel, L: np.ndarray, crit: float) -> tuple[float, tuple[float, float]]:
    est = float(L @ model.beta)
    se = math.sqrt(max(L @ model.cov @ L, 0.0))
    return est, (est - crit * se, est + crit * se)


class _Regret:
    """Regret bounds per C from the table's family's intervals of every pair of k at every C."""

    def __init__(self, model: KModel, crit: float):
        self.model, self.crit = model, crit

    def at(self, C: float, k: float) -> tuple[float, float, float]:
        """(estimate, lower, upper) of max_j theta(C, j) - theta(C, k)."""
        m = self.model
        est, lo, hi = 0.0, 0.0, 0.0
        for j in m.estimable_levels()[C]:
            if j == k:
                continue
            d, se = m.contrast(C, j, k)
            est, lo, hi = max(est, d), max(lo, d - self.crit * se), max(hi, d + self.crit * se)
        return est, lo, hi


def _vs_paper(model: KModel, mapping: Mapping, nets: dict[str, tuple[str, list[float]]]) -> np.ndarray | None:
    """L with L @ beta = the mapping's top-1 minus the paper's psi, averaged over ``nets``
    (None where either cannot be scored on one of them)."""
    paper = candidate_mappings()[0]
    rows = []
    for backbone, Cs in nets.values():
        mine, _ = _choices(model, mapping, backbone, Cs)
        ref, _ = _choices(model, paper, backbone, Cs)
        if mine is None or ref is None:
            return None
        rows.append(sum(model.theta_vector(C, k) - model.theta_vector(C, p) for (C, k), (_, p) in zip(mine, ref)))
    return np.mean(np.stack(rows), axis=0) if rows else None


def _score(model: KModel, mapping: Mapping, nets: dict[str, tuple[str, list[float]]], regret: _Regret,
           L: np.ndarray | None) -> MappingScore:
    per_net, widths, missing = [], [], set()
    for stratum, (backbone, Cs) in networks(model).items():
        mine, bad = _choices(model, mapping, backbone, Cs)
        missing.update(bad)
        if mine is None or stratum not in nets:
            continue
        widths.append(stratum)
        per_net.append(np.sum([regret.at(C, k) for C, k in mine], axis=0))
    if not widths:
        return MappingScore(mapping.name, mapping.description, None, None, None, None, (), tuple(sorted(missing)))
    est, lo, hi = np.mean(per_net, axis=0)
    vs, vs_ci = _t_interval(model, L, regret.crit) if L is not None else (None, None)
    return MappingScore(mapping.name, mapping.description, float(est), (float(lo), float(hi)), vs, vs_ci, tuple(widths),
                        tuple(sorted(missing)))


def parse_mapping(spec: str) -> Mapping:
    """A mapping the user names: ``gamma=G,b=B`` (psi; ``,rule=timm`` for timm's floor of 3)
    or ``k=K0,K1,...`` (one k per stage). ValueError naming the problem otherwise."""
    text = spec.strip()
    if text.startswith("k="):
        try:
            ks = [int(x) for x in text[2:].split(",")]
        except ValueError:
            raise ConfigError("mapping", about=repr(spec), reason="k= takes one integer per stage, e.g. k=3,5,7,7") from None
        if not ks or any(k < 1 or k % 2 == 0 for k in ks):
            raise ConfigError("mapping", about=repr(spec), reason="every k must be an odd integer >= 1")
        return Mapping(f"k({','.join(map(str, ks))})", f"k = {','.join(map(str, ks))} per stage (named by the user)",
                       lambda i, C, bb, ks=tuple(ks): ks[i] if i < len(ks) else None)
    parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
    if not parts or set(parts) - {"gamma", "b", "rule"} or "gamma" not in parts or "b" not in parts \
            or len(parts) != len(text.split(",")):
        raise ConfigError("mapping", about=repr(spec), reason="expected gamma=G,b=B[,rule=paper|timm] or k=K0,K1,... (one odd k per stage)")
    try:
        gamma, b = float(parts["gamma"]), float(parts["b"])
    except ValueError:
        raise ConfigError("mapping", about=repr(spec), reason="gamma and b must be numbers") from None
    rule = parts.get("rule", "paper")
    if not gamma > 0 or not math.isfinite(b) or rule not in ("paper", "timm"):
        raise ConfigError("mapping", about=repr(spec), reason="gamma must be > 0, b finite, rule paper or timm")
    name = f"psi({gamma:g},{b:g}{',timm' if rule == 'timm' else ''})"
    return Mapping(name, f"psi(C) with gamma={gamma:g}, b={b:g}{' and a floor of 3' if rule == 'timm' else ''} (named by the user)",
                   lambda i, C, bb: psi(int(C), gamma, b, rule))


def _paper(i: int, C: float, backbone: str) -> int:
    return psi(int(C), PAPER_GAMMA, PAPER_B)


def candidate_mappings(fitted: PsiChoice | None = None, named: Sequence[Mapping] = ()) -> list[Mapping]:
    """The mappings scored: the paper's psi, timm's rule, k=3, the released k, the user's, the fitted psi."""
    from study.attention import released_k

    def released(i: int, C: float, backbone: str) -> int | None:
        try:
            ks = released_k(backbone)
        except ValueError:
            return None
        return ks[i] if i < len(ks) else None

    out = [
        Mapping("paper_psi", "psi(C) with gamma=2, b=1 (ECA-Net eq. 12, the authors' code)", _paper),
        Mapping("timm_rule", "psi(C) with gamma=2, b=1 and a floor of 3 (timm's EcaModule)",
                lambda i, C, bb: psi(int(C), PAPER_GAMMA, PAPER_B, "timm")),
        Mapping("k3", "k=3 in every stage (the authors' code default)", lambda i, C, bb: 3),
        Mapping("released", "the authors' released per-stage k (ResNet-18 3,5,7,7; ResNet-50 3,5,5,7; ...)", released),
        *named,
    ]
    if fitted is not None:
        out.append(Mapping("fitted_psi", f"psi(C) with gamma={fitted.gamma:g}, b={fitted.b:g}, chosen on this study's data "
                                         f"(in-sample; intervals simultaneous over the {fitted.candidates} psi curves it was chosen among)",
                           lambda i, C, bb, f=fitted: psi(int(C), f.gamma, f.b), chosen=True))
    return out


def score_mappings(model: KModel, *, fitted: PsiChoice | None = None, named: Sequence[Mapping] = (), alpha: float = 0.05,
                   seed: int = 0, maxt: MaxT | None = None) -> MappingScores:
    """Score every candidate mapping on the same widths with intervals from one max-t family
    (see the module doc); the table is sorted best (lowest regret) first."""
    mappings = candidate_mappings(fitted, named)
    widths, notes = common_widths(model, mappings)
    nets = networks(model, widths)
    Ls = {m.name: _vs_paper(model, m, nets) for m in mappings if m.name != "paper_psi"}
    pairs, _ = pair_contrasts(model)
    family = [pairs, *[L[None, :] for L in Ls.values() if L is not None]]
    if fitted is not None and fitted.contrasts.size and set(fitted.widths) == set(widths):
        family.append(fitted.contrasts)
    family_L = np.vstack(family) if family else np.zeros((0, len(model.beta)))
    crit = (maxt or MaxT(model, seed)).critical(family_L, alpha)
    regret = _Regret(model, crit)
    paper_L = np.zeros(len(model.beta))
    rows = [_score(model, m, nets, regret, paper_L if m.name == "paper_psi" else Ls.get(m.name)).row() for m in mappings]
    table = pd.DataFrame(rows)
    _paper_bound(table)
    table = table.sort_values("regret", na_position="last", kind="stable").reset_index(drop=True)
    return MappingScores(table=table, critical=crit, family=len(family_L), widths=widths, notes=notes)


def _paper_bound(table: pd.DataFrame) -> None:
    """The paper's psi loses at least what any mapping is shown to gain over it: its regret
    interval's lower end is raised to the largest lower bound of a mapping's advantage (both
    from the one family, so together they still hold with 1 - alpha)."""
    is_paper = table["mapping"] == "paper_psi"
    if not is_paper.any() or table.loc[is_paper, "regret_lo"].isna().all():
        return
    gains = pd.to_numeric(table.loc[~is_paper, "vs_paper_lo"], errors="coerce").dropna()
    best = float(gains.max()) if len(gains) else 0.0
    i = table.index[is_paper][0]
    if best > table.at[i, "regret_lo"]:
        table.at[i, "regret_lo"] = best
        table.at[i, "regret_hi"] = max(table.at[i, "regret_hi"], best)
