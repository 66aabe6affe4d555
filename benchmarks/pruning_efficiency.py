"""Pruning efficiency: the same study with and without the Optuna pruner.

Runs the same eca_kmap study (same seed, same sampler, same trials: the random sampler,
so both runs try the same configurations) twice on the local runner - once with the
pruner (median by default) and once with ``--pruner none`` - and prints the epochs spent
and the best top-1 reached as ratios pruned / unpruned.

    python benchmarks/pruning_efficiency.py                 # 12 trials x 4 epochs, ~4 min on 2 cores
    python benchmarks/pruning_efficiency.py --trials 20 --epochs 6 --pruner sha
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _study_bench import run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--pruner", default="median", choices=("median", "sha", "hyperband"))
    p.add_argument("--proxy", default="default", help="'default' (study.run's) or a preset name")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    common = dict(trials=args.trials, epochs=args.epochs, proxy_name=args.proxy, width=args.width, seed=args.seed,
                  runner="local", sampler="random")
    results = {}
    for label, pruner in (("pruned", args.pruner), ("unpruned", "none")):
        wall, trials = run(label, pruner=pruner, **common)
        epochs = sum(len(t.user_attrs.get("history") or []) for t in trials)
        best = max((t.value for t in trials if t.value is not None and t.state.name == "COMPLETE"), default=float("nan"))
        pruned = sum(t.state.name == "PRUNED" for t in trials)
        results[label] = (wall, epochs, best, pruned)
        print(f"{label:9s} pruner={pruner:6s} trials={len(trials)} pruned={pruned} epochs spent={epochs} "
              f"best top1={best:.2f} wall={wall:.1f}s")
    (w1, e1, b1, _), (w0, e0, b0, _) = results["pruned"], results["unpruned"]
    print(f"pruning efficiency ({args.pruner}, {args.trials} trials x {args.epochs} epochs): "
          f"epochs spent {e1 / e0:.2f}x, best top-1 {b1 / b0:.3f}x, wall time {w1 / w0:.2f}x of the unpruned study")


if __name__ == "__main__":
    main()
