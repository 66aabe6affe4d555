"""Latency under load: measured inside a trial it reads the load; the probe measures alone.

1. One network (ResNet-18, low-res stem, width 0.5, ECA k = 3, 32 px, batch 1, 1 torch
   thread) measured while 0, 1 and 2 other trainings run on the node (real training loops,
   ``study.trainer.train`` in subprocesses of 1 thread each): the old in-trial way
   (``measure_latency``: 3 warm-up and 10 timed passes, the median) and by the probe
   (``probe_latency``: the node's turnstile closed, rounds until the IQR is within 5 % of
   the median). Each is repeated ``--reps`` times; the figure is the median of the repeats
   as a ratio to the idle median, and ``spread`` the largest repeat over the smallest.
2. The goal: a small real Ray study at one width (eca_kmap, width 0.5, default proxy, two
   trials at once, one CPU each), run with the turnstile off (every trial measures while the
   other trains: the figure before) and on; the spread (max / min) of its complete trials'
   recorded latency, and of their own probes (before the study shares one figure per network).
3. What the turnstile costs a training step when no probe waits (a gate pass, microseconds).

    python benchmarks/latency_under_load.py                 # ~10 min on 2 cores
    python benchmarks/latency_under_load.py --skip-study    # part 1 only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result

ROOT = Path(__file__).resolve().parents[1]
GOAL = "a Ray study at one width, two trials at once: every trial's latency within 25 % of the others' (max/min <= 1.25)"

#: a training loop that runs until it is ended (1 torch thread); writes ``flag`` when its costs are measured
TRAINER = '''
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from study.config import TrialConfig
from study.data import load_proxy
from study.metrics import Reporter
from study.trainer import train

config, flag = TrialConfig.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2])

class Started(Reporter):
    def start(self, costs, stages):
        flag.write_text("1")

    def report(self, metrics):
        return False

train(config, Started(), device="cpu", data=load_proxy(config.proxy))
'''


def _config(epochs: int = 1000):
    from runners import DEFAULT_PROXY as proxy
    from runners import DEFAULT_RECIPE
    from study.config import ArchSpec, AttentionSpec, Recipe, TrialConfig

    arch = ArchSpec.uniform("resnet18", AttentionSpec.of("eca", k=3), stem="lowres", width=0.5, num_classes=proxy.num_classes)
    return TrialConfig(arch=arch, recipe=Recipe(**{**DEFAULT_RECIPE, "epochs": epochs}), proxy=proxy, seed=0)


def _start_trainers(n: int, folder: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    config = json.dumps(_config().to_dict())
    procs, flags = [], []
    for i in range(n):
        flag = folder / f"started-{time.monotonic_ns()}-{i}"
        procs.append(subprocess.Popen([sys.executable, "-c", TRAINER, config, str(flag)], cwd=ROOT, env=env))
        flags.append(flag)
    t0 = time.monotonic()
    while not all(f.exists() for f in flags):
        if time.monotonic() - t0 > 300 or any(p.poll() is not None for p in procs):
            _stop(procs)
            raise RuntimeError("a training did not start")
        time.sleep(0.1)
    time.sleep(2.0)  # into its steps
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def under_load(reps: int) -> list[dict]:
    """Part 1: per number of trainings, the naive and the probed latency (ms) of ``reps`` repeats."""
    import torch

    from study.costs import measure_latency, probe_latency
    from study.models import build_model
    from study.turnstile import ENV, Turnstile

    torch.set_num_threads(1)
    config = _config()
    model = build_model(config.arch, config.proxy.resolution)
    folder = Path(tempfile.mkdtemp(prefix="latency-load-"))
    turnstile = Turnstile(folder / "turnstile")
    env = {**os.environ, ENV: str(turnstile.folder), "PYTHONPATH": str(ROOT)}
    rows = []
    for n in (0, 1, 2):
        procs = _start_trainers(n, folder, env)
        try:
            naive, probed, rounds = [], [], []
            for _ in range(reps):
                naive.append(measure_latency(model, config.proxy.resolution))
                time.sleep(0.3)
                lat = probe_latency(model, config.proxy.resolution, turnstile=turnstile)
                probed.append(lat.median_ms)
                rounds.append(lat.rounds)
                assert lat.exclusive, "the probe did not get the node"
                time.sleep(0.3)
            load = os.getloadavg()[0]
        finally:
            _stop(procs)
        rows.append({"trainings": n, "naive_ms": naive, "probe_ms": probed, "probe_rounds": rounds, "load_average": load})
        print(f"{n} training(s): naive median {statistics.median(naive):.2f} ms (repeats {min(naive):.2f}-{max(naive):.2f}), "
              f"probe median {statistics.median(probed):.2f} ms (repeats {min(probed):.2f}-{max(probed):.2f}, "
              f"{statistics.median(rounds):.0f} rounds), load average {load:.1f}", flush=True)
    idle_naive, idle_probe = (statistics.median(rows[0][k]) for k in ("naive_ms", "probe_ms"))
    for r in rows:
        r["naive_ratio"] = statistics.median(r["naive_ms"]) / idle_naive
        r["probe_ratio"] = statistics.median(r["probe_ms"]) / idle_probe
        r["naive_spread"] = max(r["naive_ms"]) / min(r["naive_ms"])
        r["probe_spread"] = max(r["probe_ms"]) / min(r["probe_ms"])
    return rows


def gate_cost_us(steps: int = 100_000) -> float:
    """What a training step pays for the turnstile when no probe waits: microseconds per gate pass."""
    from study.turnstile import Turnstile

    with Turnstile(tempfile.mkdtemp(prefix="latency-gate-")).computing() as gate:
        t0 = time.perf_counter()
        for _ in range(steps):
            gate.step()
        return (time.perf_counter() - t0) / steps * 1e6


def ray_study(label: str, *, turnstile: str, trials: int, epochs: int) -> dict:
    """Part 2: one Ray study (two trials at once, 1 CPU each) with ``STUDY_TURNSTILE=turnstile``."""
    import ray
    from _study_bench import run

    from study.turnstile import ENV

    os.environ[ENV] = turnstile
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             runtime_env={"env_vars": {ENV: turnstile}})
    try:
        wall, ran = run(label, trials=trials, epochs=epochs, proxy_name="default", width=0.5, sampler="random", pruner="none",
                        runner="ray", cpus_per_trial=1, max_concurrent=2)
    finally:
        ray.shutdown()
        os.environ.pop(ENV, None)
    done = [t for t in ran if t.state.name == "COMPLETE"]
    recorded = [t.user_attrs["costs"]["latency_ms"] for t in done]
    own = [t.user_attrs["costs"].get("latency_own_ms", t.user_attrs["costs"]["latency_ms"]) for t in done]
    iqr = [t.user_attrs["costs"].get("latency_iqr_ms") for t in done]
    from study.costs import LATENCY_SPREAD_FLAG

    flagged = sum(q is None or q > LATENCY_SPREAD_FLAG * m for q, m in zip(iqr, recorded))
    out = {"turnstile": "off" if turnstile == "off" else "on", "trials": len(done), "wall_s": wall,
           "recorded_ms": recorded, "own_ms": own, "iqr_ms": iqr, "flagged": flagged, "load_average": os.getloadavg()[0],
           "exclusive": [t.user_attrs["costs"].get("latency_exclusive") for t in done],
           "networks": len({t.user_attrs["costs"].get("arch_digest") for t in done}),
           "spread_recorded": max(recorded) / min(recorded), "spread_own": max(own) / min(own)}
    print(f"Ray study, turnstile {out['turnstile']}: {len(done)} trials ({out['networks']} networks) in {wall:.0f} s; recorded latency "
          f"{min(recorded):.2f}-{max(recorded):.2f} ms (max/min {out['spread_recorded']:.2f}), own probes "
          f"{min(own):.2f}-{max(own):.2f} ms (max/min {out['spread_own']:.2f}); {flagged} flagged (IQR above "
          f"{100 * LATENCY_SPREAD_FLAG:.0f} % of the median), load average {out['load_average']:.1f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="repeats of each measurement per load (default 5)")
    p.add_argument("--trials", type=int, default=6, help="trials of each Ray study (default 6)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each Ray trial (default 2)")
    p.add_argument("--skip-study", action="store_true", help="part 1 only (no Ray studies)")
    args = p.parse_args()
    rows = under_load(args.reps)
    headline = {f"naive, {r['trainings']} training(s) (x idle)": round(r["naive_ratio"], 2) for r in rows[1:]}
    headline.update({f"probe, {r['trainings']} training(s) (x idle)": round(r["probe_ratio"], 2) for r in rows[1:]})
    gate_us = gate_cost_us()
    print(f"a gate pass costs a training step {gate_us:.1f} us", flush=True)
    headline["gate pass per training step (us)"] = round(gate_us, 1)
    detail: dict = {"under_load": rows, "gate_step_us": gate_us}
    if not args.skip_study:
        before = ray_study("latency-off", turnstile="off", trials=args.trials, epochs=args.epochs)
        after = ray_study("latency-on", turnstile=tempfile.mkdtemp(prefix="latency-turnstile-"), trials=args.trials, epochs=args.epochs)
        detail.update({"study_before": before, "study_after": after})
        headline["Ray study max/min latency, before"] = round(before["spread_own"], 2)
        headline["Ray study max/min latency, after"] = round(after["spread_recorded"], 2)
        headline["goal met"] = "yes" if after["spread_recorded"] <= 1.25 else "no"
        headline["load average (other processes included)"] = round(after["load_average"], 1)
    print(json.dumps(headline, indent=1))
    print(f"wrote {write_result('latency_under_load', goal=GOAL, headline=headline, detail=detail)}")


if __name__ == "__main__":
    main()
