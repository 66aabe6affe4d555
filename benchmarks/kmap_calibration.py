"""Calibration of the k-vs-C inference, measured through the real study bookkeeping.

Each simulated study is an ``eca_kmap --design inference`` study run by the local runner
(settings, space, sampler, replicates, seeds and the StudyBridge recording every trial into
an SQLite storage, exactly as ``python -m study.run`` does) with a planted truth instead of
training (:class:`runners.Planted`): top-1 = a width effect + a k effect + Gaussian noise of
``--sigma`` points per trial, where a stage loses ``--effect`` points two or more odd steps
away from k*(C) = psi(C; gamma, b) (half of it one step away). The study is then read back
with ``analysis.load`` and analysed with ``analysis.k_effect``, and the script prints

(a) the false-positive rate under the null (no k effect) with its Monte Carlo interval
    (goal: at most alpha plus Monte Carlo error);
(b) the power against the planted effect at the default inference budget (goal >= 0.8);
(c) the coverage of the k* confidence sets (per C, and all C of a study at once), of the
    sigma_seed interval, and of the simultaneous interval of the largest k difference.

    python benchmarks/kmap_calibration.py                       # 100 + 100 studies of 100 configurations x 2
    python benchmarks/kmap_calibration.py --studies 20 --workers 2 --configs 60
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _one(job: tuple[str, int, dict]) -> dict:
    """Simulate, record, read back and analyse one study."""
    import json

    import optuna

    import analysis
    from runners import Planted, StudySettings, simulate_study
    from study.config import ProxySpec, Recipe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scenario, seed, a = job
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="kmapcal-", dir=base))
    try:
        planted = Planted(effect=a["effect"] if scenario == "planted" else 0.0, gamma=a["gamma"], b=a["b"], sigma=a["sigma"], seed=seed)
        settings = StudySettings(
            name=f"{scenario}{seed}", space="eca_kmap", storage=f"sqlite:///{folder / 'study.db'}", run_dir=str(folder),
            trials=a["configs"], runner="local", design="inference", replicates=a["replicates"], sampler="random", pruner="none",
            seed=seed, recipe=Recipe(epochs=1, warmup_epochs=0), proxy=ProxySpec(num_classes=10), backbone=a["backbone"],
        )
        (folder / "settings.json").write_text(json.dumps(settings.to_dict()))
        t0 = time.perf_counter()
        simulate_study(settings, planted)
        t1 = time.perf_counter()
        e = analysis.k_effect(analysis.load(folder), alpha=a["alpha"], method=a["method"], permutations=a["permutations"], seed=seed)
        t2 = time.perf_counter()
        tab = e.table
        covered = []
        for C, kset in zip(tab["C"], tab["k_set"]):
            ks = [int(float(k)) for k in str(kset).split(",")]
            covered.append(planted.k_star(int(C)) in ks if scenario == "planted" else True)
        # the interval of the largest estimated difference must cover that pair's true difference
        lo, hi = e.effect_ci
        C, k_high, k_low = e.effect_at
        true = planted.stage_effect(int(C), int(k_high)) - planted.stage_effect(int(C), int(k_low))
        return {"scenario": scenario, "evidence": e.evidence, "p": e.p_value, "covered": covered,
                "effect_covered": lo <= true <= hi,
                "sigma_covered": None if e.noise.ci is None else e.noise.ci[0] <= a["sigma"] <= e.noise.ci[1],
                "n_trials": e.n_trials, "sim_s": t1 - t0, "analysis_s": t2 - t1}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rate(x: list[bool]) -> tuple[float, float, float]:
    """Share and its 95 % Wilson interval."""
    n = len(x)
    p = sum(x) / n
    z = 1.96
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, c - h), min(1.0, c + h)


def main() -> None:
    from search_spaces._eca_kmap import INFERENCE_BUDGET

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=100, help="simulated studies per scenario (null, planted)")
    p.add_argument("--configs", type=int, default=INFERENCE_BUDGET.trials, help="configurations per study (default: the inference design's)")
    p.add_argument("--replicates", type=int, default=2)
    p.add_argument("--effect", type=float, default=0.5, help="planted effect, points")
    p.add_argument("--sigma", type=float, default=0.5, help="noise per trial, points")
    p.add_argument("--gamma", type=float, default=2.0)
    p.add_argument("--b", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--method", default="f", choices=("f", "permutation"))
    p.add_argument("--permutations", type=int, default=199)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    args = vars(a)
    jobs = [(s, i, args) for i in range(a.studies) for s in ("null", "planted")]
    t0 = time.perf_counter()
    with get_context("fork").Pool(a.workers) as pool:
        results = list(pool.imap_unordered(_one, jobs))
    wall = time.perf_counter() - t0
    null = [r for r in results if r["scenario"] == "null"]
    planted = [r for r in results if r["scenario"] == "planted"]
    fpr, power = _rate([r["evidence"] for r in null]), _rate([r["evidence"] for r in planted])
    per_c = _rate([c for r in planted for c in r["covered"]])
    all_c = _rate([all(r["covered"]) for r in planted])
    eff = _rate([r["effect_covered"] for r in results])
    sig = _rate([r["sigma_covered"] for r in results if r["sigma_covered"] is not None]) if a.replicates > 1 else None
    n_trials = sum(r["n_trials"] for r in results) / len(results)
    print(f"k-vs-C calibration: {a.studies} null + {a.studies} planted studies, each {a.configs} configurations x {a.replicates} "
          f"replicates (~{n_trials:.0f} trials) of {a.backbone}, eca_kmap inference design, recorded by the real bookkeeping; "
          f"planted effect {a.effect} points (k* = psi(C; {a.gamma:g}, {a.b:g})), noise sigma {a.sigma} points per trial; "
          f"{a.method} test at alpha {a.alpha}")
    print(f"(a) false-positive rate under the null: {fpr[0]:.3f} (95 % MC interval {fpr[1]:.3f}-{fpr[2]:.3f}); goal <= {a.alpha} "
          f"+ MC error: {'met' if fpr[1] <= a.alpha else 'NOT met'}")
    print(f"(b) power against the planted effect: {power[0]:.3f} ({power[1]:.3f}-{power[2]:.3f}); goal >= 0.8: "
          f"{'met' if power[0] >= 0.8 else 'NOT met'}")
    print(f"(c) coverage of the k* confidence sets (nominal >= {1 - a.alpha:.2f}): per C {per_c[0]:.3f} ({per_c[1]:.3f}-{per_c[2]:.3f}), "
          f"every C of a study at once {all_c[0]:.3f} ({all_c[1]:.3f}-{all_c[2]:.3f})")
    print(f"    simultaneous interval of the largest k difference covering that pair's true difference: {eff[0]:.3f} ({eff[1]:.3f}-{eff[2]:.3f})"
          + (f"; sigma_seed interval covering the planted sigma: {sig[0]:.3f} ({sig[1]:.3f}-{sig[2]:.3f})" if sig else ""))
    sim = sum(r["sim_s"] for r in results) / len(results)
    ana = sum(r["analysis_s"] for r in results) / len(results)
    print(f"time: {wall:.0f} s on {a.workers} workers; per study {sim:.1f} s recording, {ana:.1f} s analysis")


if __name__ == "__main__":
    main()
