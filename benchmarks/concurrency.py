"""Throughput of the Ray runner with 1 and 2 concurrent trials.

Runs the same trials (random sampler, same seed, no pruning) on a local Ray started once
by this script, one trial at a time and then two at once (1 CPU and 1 torch thread per
trial), and prints trials per minute of both and the speed-up.

    python benchmarks/concurrency.py                  # 8 trials x 2 epochs, ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result
from _study_bench import run, trial_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--proxy", default="default")
    p.add_argument("--width", type=float, default=0.25)
    args = p.parse_args()
    common = dict(trials=args.trials, epochs=args.epochs, proxy_name=args.proxy, width=args.width, sampler="random",
                  pruner="none", runner="ray", cpus_per_trial=1)
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        run("warmup", max_concurrent=2, **{**common, "trials": 2})  # worker processes and imports warm
        rates = {}
        for c in (1, 2):
            wall, trials = run(f"c{c}", max_concurrent=c, **common)
            rates[c] = len(trials) / wall * 60
            secs = trial_seconds(trials)
            # trial-seconds per wall second: how many trials really ran at once
            print(f"{c} concurrent: {len(trials)} trials in {wall:.1f}s = {rates[c]:.1f} trials/min "
                  f"(mean trial {sum(secs) / len(secs):.1f}s, mean trials in flight {sum(secs) / wall:.2f}, "
                  f"load average {os.getloadavg()[0]:.1f})")
    finally:
        ray.shutdown()
    print(f"throughput 2 vs 1 concurrent trials: {rates[2] / rates[1]:.2f}x ({args.trials} trials x {args.epochs} epochs, "
          f"{args.proxy} proxy, width {args.width}, {os.cpu_count()} CPUs)")
    write_result("concurrency", goal="2 concurrent trials near 2x the throughput of 1 (on 2 free cores)",
                 headline={"2 vs 1 concurrent": f"{rates[2] / rates[1]:.2f}x", "load average": round(os.getloadavg()[0], 1)},
                 detail={"trials_per_min": rates, "trials": args.trials, "epochs": args.epochs, "proxy": args.proxy, "width": args.width})


if __name__ == "__main__":
    main()
