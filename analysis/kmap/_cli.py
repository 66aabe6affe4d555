"""``python -m analysis.kmap``: the k-vs-C answer of a study, or fits to given (C, k) points."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis._load import load
from analysis.kmap._analysis import analyze_kmap
from analysis.kmap._fits import METRICS, KmapFit, fit_kmap
from analysis.kmap._render import answer_blocks, render_text
from study.cli import ArgumentParser, UsageError, as_usage_error

if TYPE_CHECKING:
    from analysis.kmap._analysis import KmapAnalysis
    from study.cli import ArgumentParser

__all__ = ["build_parser", "format_analysis", "format_fit", "main", "read_points"]

PROG = "python -m analysis.kmap"


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a CSV with columns C and k (and optionally weight), header names case-insensitive."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"{p}: cannot read points ({exc.strerror or exc})") from None
    rows = list(csv.reader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")))
    if not rows:
        raise ValueError(f"{p}: empty file; expected a header with columns C, k and optionally weight")
    header = [h.strip().lower() for h in rows[0]]
    for need in ("c", "k"):
        if need not in header:
            raise ValueError(f"{p}: missing column {need.upper() if need == 'c' else need!r} (header: {', '.join(rows[0])})")
    ic, ik = header.index("c"), header.index("k")
    iw = header.index("weight") if "weight" in header else None
    C, K, W = [], [], []
    for n, r in enumerate(rows[1:], start=2):
        try:
            C.append(float(r[ic]))
            K.append(float(r[ik]))
            if iw is not None:
                W.append(float(r[iw]))
        except (ValueError, IndexError):
            columns = "C, k" + (", weight" if iw is not None else "")
            raise ValueError(f"{p}: line {n}: expected numbers in columns {columns}, got {','.join(r)!r}") from None
    if not C:
        raise ValueError(f"{p}: no points below the header")
    return np.array(C), np.array(K), (np.array(W) if iw is not None else None)




def format_fit(fit: KmapFit) -> str:
    tab = fit.table()
    lines = [f"{len(fit.points)} points, {fit.points['C'].nunique()} distinct C; loss = weighted {fit.psi[fit.rule].metric}; "
             f"paper's psi (gamma=2, b=1) loss = {fit.psi['paper'].paper_loss:.4g}"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 90):
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for r, f in fit.psi.items():
        pts = ", ".join(f"({g:g}, {b:g})" for g, b in f.equal_loss[:12])
        more = f" ... ({len(f.equal_loss)} in all)" if len(f.equal_loss) > 12 else ""
        lines.append(f"psi ({r}) equal-loss (gamma, b): {pts}{more}; paper's (2, 1) {'is' if f.contains_paper else 'is not'} among them")
    lines += list(fit.notes)
    return "\n".join(lines)


def format_analysis(an: KmapAnalysis) -> str:
    """The k-vs-C answer as text: the verdict first, then the numbers it qualifies (:mod:`analysis.kmap._render`)."""
    return render_text(answer_blocks(an))


def build_parser() -> ArgumentParser:
    """The flags of ``python -m analysis.kmap``."""

    ap = ArgumentParser(prog=PROG, description="Does k matter, which k does each C prefer, and does psi(C) describe it? "
                                                "(or: fit psi to given (C, k) points)")
    ap.add_argument("run", nargs="?", help="a run folder runs/NAME (or use --points or --storage)")
    ap.add_argument("--points", help="CSV with columns C, k and optionally weight: fit psi, the log and the linear mapping to them")
    ap.add_argument("--storage", help="storage URL of the study (with --study)")
    ap.add_argument("--study", help="study name in the storage")
    ap.add_argument("--json", action="store_true", help="print the answer as JSON (top-level k_effect, preferred_k, mappings, ...)")
    ap.add_argument("--alpha", type=float, default=0.05, help="level of the test and of the confidence sets (default 0.05)")
    ap.add_argument("--method", choices=("f", "permutation"), default="permutation",
                    help="test of 'k matters': permutation of the k vectors within strata (default; exact whatever the noise) "
                         "or the F-test")
    ap.add_argument("--permutations", type=int, default=999, help="shuffles of the permutation test (default 999)")
    ap.add_argument("--epoch", type=int, help="read top-1 at this epoch (default: the last epoch every finished trial ran)")
    ap.add_argument("--kind", help="the attention kind whose k is analysed (default: eca, or eca_ns if it has more stages)")
    ap.add_argument("--mapping", action="append", default=[], metavar="SPEC",
                    help="score one more mapping: gamma=G,b=B[,rule=timm] or k=K0,K1,... (one k per stage); repeatable")
    ap.add_argument("--variance", choices=("strata", "pooled"), default="strata",
                    help="variance of a configuration mean: one per width/backbone stratum (default) or one pooled")
    ap.add_argument("--rule", default="paper", choices=["paper", "timm"],
                    help="--points: psi rounding rule reported first (both are fitted)")
    ap.add_argument("--metric", default="mse", choices=list(METRICS), help="--points: loss in k")
    ap.add_argument("--bootstrap", type=int, default=1000, help="--points: bootstrap replicates of the continuous fit (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: Sequence[str] | None = None) -> int:

    args = build_parser().parse_args(argv)
    sources = [x for x in (args.points, args.run, args.storage) if x]
    if len(sources) != 1:
        raise UsageError(f"give exactly one of --points FILE.csv, a run folder, or --storage URL (see {PROG} --help)")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap: must be >= 0, got {args.bootstrap}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: must be in (0, 1), got {args.alpha:g}")
    if args.points:
        try:  # a file of points that cannot be read, or fitted, is the user's input
            C, K, W = read_points(args.points)
            fit = fit_kmap(C, K, W, rule=args.rule, metric=args.metric, n_bootstrap=args.bootstrap, seed=args.seed)
        except ValueError as exc:
            raise as_usage_error(exc) from None
        print(json.dumps(fit.to_dict(), indent=2) if args.json else format_fit(fit))
        return 0
    try:  # a study that cannot be read is the user's input, not a bug
        fr = load(args.storage or args.run, args.study)
    except ValueError as exc:
        raise as_usage_error(exc) from None
    try:
        an = analyze_kmap(fr, alpha=args.alpha, method=args.method, permutations=args.permutations, epoch=args.epoch,
                          kind=args.kind, variance=args.variance, mappings=args.mapping, seed=args.seed)
    except ValueError as exc:
        raise as_usage_error(exc, build_parser()) from None  # "epoch: ..." is --epoch, as data
    print(json.dumps(an.to_dict(), indent=2) if args.json else format_analysis(an))
    return 0
