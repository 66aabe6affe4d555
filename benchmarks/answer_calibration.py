"""Calibration of the whole answer workflow under optional stopping, through the real bookkeeping.

Each simulated workflow is ``python -m study.run --space eca_kmap --design answer`` run by the
study CLI's own functions (:func:`runners.cli.run_answer`: the pilot at two fidelities,
the inference design, its analysis, the sequential confirmation in rounds, the decision), every
stage a study recorded into a journal storage, with a planted truth instead of training
(:class:`runners.Planted`: its ``seed_shared`` noise is what common random numbers leave to the
arms of one paired seed). Every arm's claim is scored against the truth: its planted top-1
minus the paper's psi's, per network, averaged over the confirmation's widths (``true_diff``).

Per scenario it prints the rate of each claim per arm (with 95 % Wilson intervals), the runs the
confirmation spent to its decision (mean and 95th percentile), and the runs of a fixed-size design
with the same error rates and power 0.8 (:func:`analysis.confirm.fixed_size` at the true noise of a
paired difference, x (arms + 1) x widths), twice: *planned* as a researcher must plan one, before
knowing which arms are equal (n large enough whether every arm is equal or 2 x delta better: the
design the goals compare against), and *knowing the truth* (n for the planted differences: an
oracle no study has, the bound below which no design can go).

    python benchmarks/answer_calibration.py --studies 100 --workers 2 --result
    python benchmarks/answer_calibration.py --scenario equal --scenario k3_2delta --studies 200
    python benchmarks/answer_calibration.py --studies 100 --scenario equal@200 --scenario k3_2delta@200 --scenario paper_best \\
        --scenario k3_delta --scenario hetero --scenario heavy --scenario noisy --workers 2 --result
    python benchmarks/answer_calibration.py --scenario effect=1.0,stage_k=3/3/3/3,sigma=0.8 --studies 20 --json out.json

A ``--scenario`` is a preset's name or ``key=value,...`` over :class:`runners.Planted`'s fields
(a tuple written with ``/`` between its values), optionally ending ``@N``: that scenario's
number of workflows (the goals ask 200 for ``equal`` and ``k3_2delta``, 100 for the rest); the
presets:

- ``equal``: every mapping equal (k does not matter);
- ``paper_best``: the paper's psi is the best k at every C (1 point a stage two odd steps away);
- ``k3_2delta``: k = 3 best everywhere; the paper's psi loses 2 x delta per network to it;
- ``k3_delta``: the same, losing delta;
- ``hetero``: every mapping equal, noise growing as 1 / width;
- ``heavy``: every mapping equal, t(3) noise and 3 % collapsed runs;
- ``noisy``: every mapping equal, seed noise of 1.3 points a run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import write_result

#: the margin every scenario is run with (top-1 points per network), unless --delta
DELTA = 0.5
PRESETS: dict[str, dict[str, Any]] = {
    "equal": {},
    "paper_best": {"effect": 1.0},
    "k3_2delta": {"effect": 2 * DELTA, "stage_k": (3, 3, 3, 3)},
    "k3_delta": {"effect": DELTA, "stage_k": (3, 3, 3, 3)},
    "hetero": {"width_power": 1.0},
    "heavy": {"tails": 3.0, "collapse": 0.03},
    "noisy": {"sigma": 1.3},
}
CLAIMS = ("beats", "loses", "equivalent", "undecided")


def parse_scenario(text: str) -> tuple[str, dict[str, Any], int | None]:
    """A preset's name, or ``key=value,...`` over Planted's fields (tuples with ``/``), with an
    optional ``@N``: that scenario's number of workflows instead of ``--studies``."""
    studies = None
    if "@" in text:
        text, _, n = text.rpartition("@")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--scenario {text}@{n}: expected a number of workflows >= 1 after @")
        studies = int(n)
    if text in PRESETS:
        return text, dict(PRESETS[text]), studies
    from runners import Planted

    fields = {f for f in Planted.__dataclass_fields__}
    out: dict[str, Any] = {}
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"--scenario {text!r}: expected a preset ({', '.join(PRESETS)}) or key=value,...")
        key, value = (x.strip() for x in part.split("=", 1))
        if key not in fields:
            raise ValueError(f"--scenario {text!r}: {key!r} is not a field of runners.Planted ({', '.join(sorted(fields))})")
        out[key] = tuple(int(v) if v.lstrip("-").isdigit() else float(v) for v in value.split("/")) if "/" in value else float(value)
    for key in ("stage_k", "effect_stages", "interaction_stages"):
        if key in out and not isinstance(out[key], tuple):
            out[key] = (int(out[key]),)
    return text, out, studies


def true_diffs(planted: Any, rule: dict[str, Any], arms: dict[str, Any], backbone: str = "resnet18",
               stem: str = "lowres") -> dict[str, float]:
    """Each arm's planted top-1 minus the paper's psi's, per network, averaged over the rule's widths."""
    from search_spaces import CONFIRM_REFERENCE, arm_ks
    from study.catalogue import stage_plans

    def top1(spec: dict[str, Any], w: float) -> float:
        ks = arm_ks(spec, backbone, stem, w)
        stages = [{"stage": i, "channels": p.channels, "kind": "none" if ks is None else "eca", "k": 0 if ks is None else ks[i]}
                  for i, p in enumerate(stage_plans(backbone, w, stem))]
        return planted.mean_top1(w, stages)

    widths = [float(w) for w in rule["widths"]]
    ref = {w: top1(arms[CONFIRM_REFERENCE], w) for w in widths}
    return {a: sum(top1(s, w) - ref[w] for w in widths) / len(widths) for a, s in arms.items() if a != CONFIRM_REFERENCE}


def paired_sd(planted: Any, widths: list[float]) -> float:
    """The true standard deviation of a paired difference averaged over ``widths`` (two runs'
    own noise a width; what the arms of a seed share cancels)."""
    return math.sqrt(sum(2 * (planted.sigma * w ** -planted.width_power) ** 2 for w in widths)) / len(widths)


def _one(job: tuple[str, dict[str, Any], int, dict[str, Any]]) -> dict[str, Any]:
    import optuna

    from runners import Planted, Progress, StudySettings, check_run, start_run
    from runners.cli import run_answer

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    name, kwargs, seed, a = job
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="anscal-", dir=base))
    try:
        planted = Planted(**{"sigma": a["sigma"], **kwargs, "seed": seed})
        settings = StudySettings(space="eca_kmap", design="answer", runner="local", name="answer", run_dir=str(folder / "answer"),
                                 storage=f"journal:{folder / 'study.log'}", seed=seed, trials=a["configs"],
                                 space_options={"delta": a["delta"]}, recipe={"epochs": 1, "warmup_epochs": 0})
        run = check_run(settings)
        start_run(run, log=lambda s: None)
        t0 = time.perf_counter()
        path = run_answer(settings, Progress(quiet=True), say=lambda s: None, train=planted.train, load_proxy=lambda p: None)
        took = time.perf_counter() - t0
        decision = json.loads((path.parent / "decision.json").read_text())
        confirm = json.loads((folder / "answer" / "confirm" / "settings.json").read_text())
        options = confirm["space_options"]
        truth = true_diffs(planted, options["rule"], options["arms"])
        return {"scenario": name, "runs": decision["runs"], "budget": decision["budget"], "seconds": took,
                "claims": {c["arm"]: c["claim"] for c in decision["claims"]}, "truth": truth,
                "tested": [x for x in options["rule"]["arms"] if x not in options["rule"]["identical"]
                           and x not in options["rule"]["same_as"]],
                "paired_sd": paired_sd(planted, [float(w) for w in options["rule"]["widths"]]), "widths": len(options["rule"]["widths"])}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rate(hits: int, n: int) -> tuple[float, float, float, int]:
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    p, z = hits / n, 1.96
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, c - h), min(1.0, c + h), n


def summarize(name: str, rs: list[dict[str, Any]], delta: float, alpha: float) -> dict[str, Any]:
    import numpy as np

    from analysis.confirm import fixed_size

    arms = sorted({a for r in rs for a in r["claims"]})
    out_arms = []
    for arm in arms:
        got = [r["claims"][arm] for r in rs if arm in r["claims"]]
        diffs = [r["truth"][arm] for r in rs if arm in r["truth"]]
        out_arms.append({"arm": arm, "true_diff": float(np.mean(diffs)) if diffs else math.nan,
                         "rates": {c: _rate(sum(g == c for g in got), len(got))[0] for c in CLAIMS},
                         "intervals": {c: _rate(sum(g == c for g in got), len(got))[1:3] for c in CLAIMS}})
    errors = {"false_beats": [], "false_loses": [], "false_equivalent": []}
    for r in rs:
        for arm, claim in r["claims"].items():
            t = r["truth"].get(arm, math.nan)
            if abs(t) <= 1e-9:
                errors["false_beats"].append(claim == "beats")
                errors["false_loses"].append(claim == "loses")
            if abs(t) >= delta - 1e-9:
                errors["false_equivalent"].append(claim == "equivalent")
    runs = np.array([r["runs"] for r in rs], float)
    r0 = rs[0]
    per_n = (len(r0["tested"]) + 1) * r0["widths"]
    fixed = fixed_size([r0["truth"][a] for a in r0["tested"]], r0["paired_sd"], delta, alpha) * per_n
    m = len(r0["tested"])  # planned as a researcher must: every arm equal or 2 x delta better, whichever needs more
    planned = max(fixed_size([0.0] * m, r0["paired_sd"], delta, alpha), fixed_size([2 * delta] * m, r0["paired_sd"], delta, alpha)) * per_n
    equal = [a["rates"]["equivalent"] for a in out_arms if abs(a["true_diff"]) <= 1e-9]
    better = [a["rates"]["beats"] for a in out_arms if a["true_diff"] >= 2 * delta - 1e-9]
    return {"name": name, "studies": len(rs), "delta": delta, "runs_mean": float(runs.mean()), "runs_p95": float(np.percentile(runs, 95)),
            "fixed_runs": int(fixed), "planned_fixed_runs": int(planned),
            "power_equivalent": min(equal) if equal else None, "power_beats": min(better) if better else None,
            "budget_mean": float(np.mean([r["budget"] for r in rs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])), "arms": out_arms,
            "errors": {k: _rate(sum(v), len(v)) for k, v in errors.items()}}


def _fmt(r: tuple[float, float, float, int]) -> str:
    return "n/a" if r[3] == 0 else f"{r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}, n={r[3]})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", default=[],
                   help="a preset or key=value,... over runners.Planted, optionally @N workflows; repeatable "
                                                                   f"(default: every preset: {', '.join(PRESETS)})")
    p.add_argument("--studies", type=int, default=100, help="simulated workflows per scenario (default 100)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--delta", type=float, default=DELTA, help=f"the margin, top-1 points (default {DELTA})")
    p.add_argument("--sigma", type=float, default=0.5, help="noise per run at width 1, points, unless a scenario sets it (default 0.5)")
    p.add_argument("--configs", type=int, default=100, help="the exploration's configurations (default 100, the inference design's)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--result", action="store_true", help="write benchmarks/results/answer_calibration.json (the docs table)")
    a = p.parse_args()
    try:
        scenarios = [parse_scenario(s) for s in (a.scenario or list(PRESETS))]
    except ValueError as exc:
        p.error(str(exc))
    if a.studies < 1:
        p.error("--studies: must be >= 1")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    args = {"delta": a.delta, "sigma": a.sigma, "configs": a.configs}
    jobs = [(name, kw, seed, args) for name, kw, n in scenarios for seed in range(a.first_seed, a.first_seed + (n or a.studies))]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(a.workers) as pool:
        results = list(pool.imap_unordered(_one, jobs))
    wall = time.perf_counter() - t0
    alpha = 0.05
    print(f"answer calibration: {a.studies} workflows per scenario unless @N (pilot, inference design of {a.configs} "
          f"configurations x 2, its analysis, sequential confirmation, decision; recorded by the real bookkeeping), "
          f"margin {a.delta}, alpha {alpha}")
    summary = []
    for name, _, _ in scenarios:
        s = summarize(name, [r for r in results if r["scenario"] == name], a.delta, alpha)
        summary.append(s)
        print(f"[{name}] {s['studies']} workflows: confirmation runs to decision mean {s['runs_mean']:.0f}, 95th percentile "
              f"{s['runs_p95']:.0f} (budget {s['budget_mean']:.0f}); a fixed-size design planned for the claims "
              f"{s['planned_fixed_runs']} (ratio {s['runs_mean'] / max(s['planned_fixed_runs'], 1):.2f}), one sized knowing the "
              f"truth {s['fixed_runs']} (ratio {s['runs_mean'] / max(s['fixed_runs'], 1):.2f}); {s['seconds_mean']:.0f} s a workflow")
        powers = [f"{k.removeprefix('power_')} {s[k]:.2f}" for k in ("power_equivalent", "power_beats") if s[k] is not None]
        if powers:
            print(f"  power (least over the arms so planted): {', '.join(powers)}")
        print(f"  errors: false beats {_fmt(s['errors']['false_beats'])}, false loses {_fmt(s['errors']['false_loses'])}, false "
              f"equivalent {_fmt(s['errors']['false_equivalent'])}")
        for arm in s["arms"]:
            rates = ", ".join(f"{c} {arm['rates'][c]:.2f}" for c in CLAIMS)
            print(f"  {arm['arm']:<11} true diff {arm['true_diff']:+.2f}: {rates}")
    print(f"time: {wall:.0f} s on {a.workers} workers")
    payload = {"command": " ".join(sys.argv), "settings": args, "wall_s": wall,
               "scenarios": [{k: v for k, v in s.items() if k not in ("errors",)} | {"errors": {k: list(v) for k, v in s["errors"].items()}}
                             for s in summary]}
    if a.json:
        Path(a.json).write_text(json.dumps(payload, indent=2))
    if a.result:
        headline: dict[str, Any] = {"margin": a.delta}
        for s in summary:
            headline[f"{s['name']}: workflows"] = s["studies"]
            headline[f"{s['name']}: runs mean / p95 / fixed planned / fixed knowing the truth"] = (
                f"{s['runs_mean']:.0f} / {s['runs_p95']:.0f} / {s['planned_fixed_runs']} / {s['fixed_runs']}")
            for k in ("power_equivalent", "power_beats"):
                if s[k] is not None:
                    headline[f"{s['name']}: {k.replace('_', ' ')}"] = f"{s[k]:.3f}"
            headline[f"{s['name']}: false beats / loses / equivalent"] = " / ".join(f"{s['errors'][k][0]:.3f}" for k in
                                                                                 ("false_beats", "false_loses", "false_equivalent"))
        headline["wall (s)"] = round(wall)
        write_result("answer_calibration", goal="false beats and loses <= alpha/2, false equivalent <= alpha; power >= 0.8 for an arm "
                                                "2 x delta better and for equal arms; runs <= 0.6 (2 x delta) / 1.2 (all equal) x a "
                                                "fixed-size design", headline=headline, detail=payload)


if __name__ == "__main__":
    main()
