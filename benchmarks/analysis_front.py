"""Pareto-front extraction: analysis.non_dominated (chunked numpy) against a plain Python
pairwise check, on the same random points with ties, measured in the same run.

    python benchmarks/analysis_front.py [--n 1500] [--repeats 3]

Prints the median seconds of each and the speed-up ratio (baseline / ours), after checking
both give the same front.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _results import write_result

from analysis import non_dominated


def brute(points: np.ndarray) -> np.ndarray:
    """Baseline: for every point, look for a dominating one (cost min, top-1 max)."""
    n = len(points)
    out = np.ones(n, bool)
    for i in range(n):
        ci, ai = points[i]
        for j in range(n):
            cj, aj = points[j]
            if cj <= ci and aj >= ai and (cj < ci or aj > ai):
                out[i] = False
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cost = rng.integers(1, 200, args.n).astype(float)  # params in units, many ties
    top1 = np.round(60 + 10 * np.log(cost) + rng.normal(0, 3, args.n), 1)
    P = np.c_[cost, top1]
    assert (non_dominated(P, maximize=[False, True]) == brute(P)).all()
    tb, tv = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        brute(P)
        tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        non_dominated(P, maximize=[False, True])
        tv.append(time.perf_counter() - t0)
    b, v = statistics.median(tb), statistics.median(tv)
    print(f"points={args.n}  front={int(non_dominated(P, maximize=[False, True]).sum())}")
    print(f"python pairwise baseline: {b:.4f} s   analysis.non_dominated: {v:.4f} s   speed-up x{b / v:.1f}")
    write_result("analysis_front", goal="analysis.non_dominated faster than a pairwise Python check, same front",
                 headline={"speed-up": f"{b / v:.0f}x", "points": args.n, "ours (s)": round(v, 4), "pairwise (s)": round(b, 4)},
                 detail={"front": int(non_dominated(P, maximize=[False, True]).sum()), "repeats": args.repeats})


if __name__ == "__main__":
    main()
