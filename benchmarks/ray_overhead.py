"""The Ray runner's per-trial overhead against the local runner.

Runs the same trials (random sampler, same seed, no pruning) on the local runner (in
process) and on the Ray runner with one trial at a time on a local Ray started once by
this script, and prints the wall time per trial of both and the ratio Ray / local. The
Ray start-up itself is reported separately.

    python benchmarks/ray_overhead.py                 # 8 trials x 2 epochs, ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result
from _study_bench import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--proxy", default="synthetic-small")
    p.add_argument("--width", type=float, default=0.25)
    args = p.parse_args()
    common = dict(trials=args.trials, epochs=args.epochs, proxy_name=args.proxy, width=args.width, sampler="random", pruner="none")

    local_wall, local_trials = run("local", runner="local", **common)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    ray_start = time.perf_counter() - t0
    try:
        ray_wall, ray_trials = run("ray", runner="ray", max_concurrent=1, cpus_per_trial=1, **common)
    finally:
        ray.shutdown()
    n = args.trials
    print(f"local runner: {local_wall:.1f}s for {n} trials, {local_wall / n:.2f}s per trial")
    print(f"ray runner:   {ray_wall:.1f}s for {n} trials, {ray_wall / n:.2f}s per trial (Ray start-up {ray_start:.1f}s, not included)")
    print(f"Ray per-trial overhead: {(ray_wall - local_wall) / n:+.2f}s per trial; Ray / local wall time per trial "
          f"{ray_wall / local_wall:.2f}x "
          f"({args.trials} trials x {args.epochs} epochs, {args.proxy}, width {args.width}, one trial at a time)")
    write_result("ray_overhead", goal="the Ray runner's per-trial overhead over the local runner small against a trial",
                 headline={"Ray / local per trial": f"{ray_wall / local_wall:.2f}x",
                           "overhead (s/trial)": round((ray_wall - local_wall) / n, 2),
                           "local (s/trial)": round(local_wall / n, 2), "Ray start-up (s, not included)": round(ray_start, 1)},
                 detail={"trials": n, "epochs": args.epochs, "proxy": args.proxy, "width": args.width})


if __name__ == "__main__":
    main()
