"""Calibration of the whole k-vs-C answer, measured through the real study bookkeeping, in
scenarios inside and outside the analysis's own model.

Each simulated study is an ``eca_kmap --design inference`` study (100 configurations x 2
replicates of ResNet-18 by default) run by the local runner - settings, space, sampler,
replicates, paired seeds and the StudyBridge recording every trial into an Optuna storage
(the journal file, ``--storage journal:PATH``: 20x faster to write than SQLite here), exactly
as ``python -m study.run`` does - with a planted truth instead of training
(:class:`runners.Planted`). It is read back with ``analysis.load`` and analysed whole with
``analysis.analyze_kmap``, and every claim is scored against the truth:

- the k test: its false-positive rate where k does not matter, its power where it does;
- the coverage of every interval the answer reports: each mapping's regret against the best
  k per C and its difference to the paper's psi (the fitted psi's too), the per-C and the
  joint k* confidence sets, the sigma_seed interval;
- the claims the answer prints about mappings (its ``claims``: "X beats / loses to the
  paper's psi", "the paper's psi loses at least ..."), per study: how often a study makes
  any claim under a null (pooled over the null scenarios, the goal being at most alpha),
  how often any of its claims is false against the truth, the largest claim, and whether
  one output both says a mapping beats the paper's psi and that there is no evidence the
  paper's psi loses (never) or prints "nan" where an interval could be had (never);
- the k* sets scored so they can fail: a set covers only when it holds *every* truly best
  k at its C (under a null every k is best), beside the weaker "holds some best k";
- how often the stage and additivity checks speak, which is their power in the scenarios
  built for them and their false-alarm rate elsewhere.

Scenarios: ``null`` (k does not matter), ``planted`` (the paper's psi is the best k, 0.5
points), ``k3`` (k = 3 is best at every C, 1 point: the paper's psi loses where it asks for
5), ``hetero`` (a null whose noise grows as 1/width), ``heavy`` (a null with t(3) noise and
1 % collapsed runs), ``paired`` (a null whose replicates share half the noise variance),
``collapse`` (a null where 3 % of runs collapse to about chance), ``diverge`` (top-1 does
not depend on k, but every run with k = 9 at C <= 32 diverges), ``stage`` (the best k
depends on the stage, 3/5/7/9, not on C), ``one_stage`` (an effect in the last stage only)
and ``interaction`` (a pure interaction of 1 point between two stages' k). The last three
lie outside the model: there the answer should say so (the stage check, the additivity
check) rather than answer wrongly, and the coverage figures are against the networks' true
regrets, which the model's C-only effects cannot represent. The nulls (``null``, ``hetero``,
``heavy``, ``paired``, ``collapse``) are pooled for the per-study claim rate.

    python benchmarks/kmap_calibration.py                                 # 100 studies per scenario
    python benchmarks/kmap_calibration.py --studies 20 --scenarios null,planted --json out.json
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

#: scenario -> (Planted keyword arguments, whether the truth lies inside the model, whether k matters)
SCENARIOS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "null": ({}, True, False),
    "planted": ({"effect": 0.5}, True, True),
    "k3": ({"effect": 1.0, "stage_k": (3, 3, 3, 3)}, True, True),
    "hetero": ({"width_power": 1.0}, True, False),
    "heavy": ({"tails": 3.0, "collapse": 0.01}, True, False),
    "paired": ({"sigma": 0.5 / math.sqrt(2), "shared": 0.5 / math.sqrt(2)}, True, False),
    "collapse": ({"collapse": 0.03, "collapse_top1": 10.0}, True, False),
    "diverge": ({"diverge_k": 9, "diverge_C": 32}, True, True),
    "stage": ({"effect": 0.5, "stage_k": (3, 5, 7, 9)}, False, True),
    "one_stage": ({"effect": 1.0, "effect_stages": (3,)}, False, True),
    "interaction": ({"interaction": 1.0, "interaction_stages": (1, 2)}, False, True),
}
#: the scenarios where k does not matter, pooled for the per-study claim rate
NULLS = tuple(name for name, (_, _, matters) in SCENARIOS.items() if not matters)


def _truths(an: Any, planted: Any) -> dict[str, tuple[float, float]]:
    """mapping -> (true regret against the best k per C, true top-1 minus the paper's psi),
    over the networks each mapping was scored on, with the analysis's own k levels."""
    import analysis.kmap as km

    model = an.effect.model
    lv = model.estimable_levels()
    cf = model.data.configs
    nets = {str(s): (str(g.iloc[0]["backbone"]), [float(g.iloc[0][f"C{i}"]) for i in range(model.data.num_stages)])
            for s, g in cf.groupby("stratum")}
    paper = km.candidate_mappings()[0].k
    out = {}
    for m in km.candidate_mappings(an.fitted):
        row = an.mappings.set_index("mapping").loc[m.name]
        widths = [w for w in str(row["widths"]).split(",") if w]
        if not widths:
            continue
        reg, vs = [], []
        for w in widths:
            backbone, Cs = nets[w]
            r = v = 0.0
            for i, C in enumerate(Cs):
                if C not in lv:
                    continue
                k, p = m.k(i, C, backbone), paper(i, C, backbone)
                eff = {j: planted.stage_effect(int(C), int(j), i) for j in {*lv[C], k, p}}
                r += max(eff[j] for j in lv[C]) - eff[k]
                v += eff[k] - eff[p]
            reg.append(r)
            vs.append(v)
        out[m.name] = (sum(reg) / len(reg), sum(vs) / len(vs))
    return out


def _one(job: tuple[str, int, dict]) -> dict:
    """Simulate, record, read back and analyse one study; score its claims."""
    import optuna

    import analysis
    from runners import Planted, StudySettings, simulate_study
    from study.config import ProxySpec, Recipe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scenario, seed, a = job
    kwargs, inside, _ = SCENARIOS[scenario]
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="kmapcal-", dir=base))
    try:
        planted = Planted(**{"sigma": a["sigma"], **kwargs, "seed": seed})
        settings = StudySettings(
            name=f"{scenario}{seed}", space="eca_kmap", storage=f"journal:{folder / 'study.log'}", run_dir=str(folder),
            trials=a["configs"], runner="local", design="inference", replicates=a["replicates"], sampler="random", pruner="none",
            seed=seed, recipe=Recipe(epochs=1, warmup_epochs=0), proxy=ProxySpec(num_classes=10), backbone=a["backbone"],
        )
        (folder / "settings.json").write_text(json.dumps(settings.to_dict()))
        t0 = time.perf_counter()
        simulate_study(settings, planted)
        t1 = time.perf_counter()
        an = analysis.analyze_kmap(analysis.load(folder), alpha=a["alpha"], method=a["method"], permutations=a["permutations"],
                                   seed=seed)
        t2 = time.perf_counter()
        e = an.effect
        lv = e.model.estimable_levels()
        sets = {"per_C": [], "joint": [], "per_C_some": [], "joint_some": []}
        for r in e.table.itertuples():
            C = float(r.C)
            # the stage a C arises in first decides its best k when the truth depends on the stage
            stage = int(str(r.stages).split(",")[0])
            eff = {k: planted.stage_effect(int(C), int(k), stage) for k in lv[C]}
            best = {k for k, v in eff.items() if v >= max(eff.values()) - 1e-12}
            for name, col in (("per_C", r.k_set), ("joint", r.k_set_joint)):
                members = {float(k) for k in str(col).split(",")}
                sets[name].append(best <= members)  # covers only when it holds every best k
                sets[f"{name}_some"].append(bool(best & members))
        truths = _truths(an, planted)
        maps = {}
        for r in an.mappings.itertuples():
            if r.mapping not in truths or r.regret is None or not math.isfinite(r.regret):
                continue
            treg, tvs = truths[r.mapping]
            d = {"regret": r.regret, "true_regret": treg, "regret_covered": r.regret_lo - 1e-9 <= treg <= r.regret_hi + 1e-9,
                 "false_loses_regret": r.regret_lo > treg + 1e-9}
            if r.vs_paper is not None and math.isfinite(r.vs_paper) and r.mapping != "paper_psi":
                d.update(vs_covered=r.vs_paper_lo - 1e-9 <= tvs <= r.vs_paper_hi + 1e-9, true_vs=tvs,
                         false_beats=r.vs_paper_lo > 0 and tvs <= 1e-9, false_loses=r.vs_paper_hi < 0 and tvs >= -1e-9)
            maps[r.mapping] = d
        claims = []
        for c in an.claims:
            treg, tvs = truths.get(c.mapping, (math.nan, math.nan))
            false = {"beats": tvs <= 1e-9, "loses": tvs >= -1e-9, "paper_loses": c.lo > treg + 1e-9}[c.claim]
            claims.append({"mapping": c.mapping, "claim": c.claim, "estimate": c.estimate, "lo": c.lo, "hi": c.hi,
                           "false": bool(false) if math.isfinite(treg) else None})
        text = analysis.kmap.format_analysis(an)
        per_run = planted.sigma if not planted.width_power else None
        return {"scenario": scenario, "evidence": e.evidence, "p": e.p_value, "sets": sets, "maps": maps, "claims": claims,
                "contradiction": "beats the paper's psi" in text and "no evidence that the paper's psi loses" in text,
                "nan": "critical value nan" in text or " nan " in text,
                "sigma_covered": None if e.noise.ci is None or per_run is None else e.noise.ci[0] <= per_run <= e.noise.ci[1],
                "additive_rejected": e.additivity.get("additive") is False,
                "qualified": e.additivity.get("additive") is False or (e.additivity["spread"].get("p_value") or 1.0) < a["alpha"],
                "stage_rejected": bool(e.stage_test.get("stage_matters")),
                "fails": e.fails, "n_trials": e.n_trials, "sim_s": t1 - t0, "analysis_s": t2 - t1}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rate(x: list[bool]) -> tuple[float, float, float, int]:
    """Share, its 95 % Wilson interval, and the count."""
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    p = sum(x) / n
    z = 1.96
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, c - h), min(1.0, c + h), n


def _fmt(r: tuple[float, float, float, int]) -> str:
    return "n/a" if r[3] == 0 else f"{r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}, n={r[3]})"


def _claim_stats(rs: list[dict]) -> dict[str, Any]:
    sizes = [abs(c["estimate"]) for r in rs for c in r["claims"]]
    return {"any_claim": _rate([bool(r["claims"]) for r in rs]),
            "any_false_claim": _rate([any(c["false"] for c in r["claims"] if c["false"] is not None) for r in rs]),
            "largest_claim": max(sizes) if sizes else 0.0,
            "contradictions": sum(r["contradiction"] for r in rs), "nan_outputs": sum(r["nan"] for r in rs)}


def summarize(scenario: str, rs: list[dict], alpha: float) -> dict[str, Any]:
    _, inside, matters = SCENARIOS[scenario]
    maps = [m for r in rs for m in r["maps"].values()]
    fitted = [r["maps"]["fitted_psi"] for r in rs if "fitted_psi" in r["maps"]]
    out = {
        "scenario": scenario, "inside_model": inside, "k_matters": matters, "studies": len(rs),
        ("power" if matters else "false_positive_rate"): _rate([r["evidence"] for r in rs]),
        "k_set_per_C": _rate([c for r in rs for c in r["sets"]["per_C"]]),
        "k_set_joint": _rate([all(r["sets"]["joint"]) for r in rs]),
        "k_set_per_C_some": _rate([c for r in rs for c in r["sets"]["per_C_some"]]),
        "k_set_joint_some": _rate([all(r["sets"]["joint_some"]) for r in rs]),
        "k_set_per_C_all_at_once": _rate([all(r["sets"]["per_C"]) for r in rs]),
        "regret_coverage": _rate([m["regret_covered"] for m in maps]),
        "vs_paper_coverage": _rate([m["vs_covered"] for m in maps if "vs_covered" in m]),
        "fitted_vs_paper_coverage": _rate([m["vs_covered"] for m in fitted if "vs_covered" in m]),
        "false_beats_paper": _rate([m["false_beats"] for m in maps if "false_beats" in m and m["true_vs"] <= 1e-9]),
        "false_loses_to_paper": _rate([m["false_loses"] for m in maps if "false_loses" in m and m["true_vs"] >= -1e-9]),
        "fitted_false_beats_paper": _rate([m["false_beats"] for m in fitted if "false_beats" in m and m["true_vs"] <= 1e-9]),
        "false_regret_claims": _rate([m["false_loses_regret"] for m in maps]),
        "mean_regret_bias": (sum(m["regret"] - m["true_regret"] for m in maps) / len(maps)) if maps else math.nan,
        "sigma_seed_coverage": _rate([r["sigma_covered"] for r in rs if r["sigma_covered"] is not None]),
        "additivity_rejects": _rate([r["additive_rejected"] for r in rs]),
        "answer_qualified": _rate([r["qualified"] for r in rs]),
        "stage_test_rejects": _rate([r["stage_rejected"] for r in rs]),
        "failures_found": _rate([r["fails"] for r in rs]),
        **_claim_stats(rs),
    }
    return out


def _lines(s: dict[str, Any], alpha: float) -> list[str]:
    head = "k test power" if s["k_matters"] else f"k test false-positive rate (goal <= {alpha:g} + MC error)"
    key = "power" if s["k_matters"] else "false_positive_rate"
    where = "inside the model" if s["inside_model"] else "OUTSIDE the model (coverage against the networks' true regrets)"
    lines = [f"[{s['scenario']}] {s['studies']} studies, {where}",
             f"  {head}: {_fmt(s[key])}",
             f"  claims per study: any {_fmt(s['any_claim'])}, any false {_fmt(s['any_false_claim'])}; largest "
             f"{s['largest_claim']:.2f} points; outputs with 'beats' and 'no evidence the paper's psi loses': {s['contradictions']}; "
             f"with nan: {s['nan_outputs']}",
             f"  coverage (nominal {1 - alpha:.2f}): regret {_fmt(s['regret_coverage'])}; vs_paper {_fmt(s['vs_paper_coverage'])} "
             f"(fitted psi {_fmt(s['fitted_vs_paper_coverage'])}); k* set per C, every best k {_fmt(s['k_set_per_C'])} (some best "
             f"k {_fmt(s['k_set_per_C_some'])}); joint k* set, every best k at every C at once {_fmt(s['k_set_joint'])} (some "
             f"{_fmt(s['k_set_joint_some'])}); sigma_seed {_fmt(s['sigma_seed_coverage'])}",
             f"  intervals excluding the truth: beats the paper's psi {_fmt(s['false_beats_paper'])} (fitted psi "
             f"{_fmt(s['fitted_false_beats_paper'])}); loses to it {_fmt(s['false_loses_to_paper'])}; regret above the truth "
             f"{_fmt(s['false_regret_claims'])}; mean regret estimate minus truth {s['mean_regret_bias']:+.2f} points",
             f"  checks: interaction named {_fmt(s['additivity_rejects'])} (verdict qualified: {_fmt(s['answer_qualified'])}); stage "
             f"check rejects {_fmt(s['stage_test_rejects'])}; k-dependent failures to train found {_fmt(s['failures_found'])}"]
    return lines


def pooled_nulls(results: list[dict]) -> dict[str, Any] | None:
    """The per-study claim figures pooled over the null scenarios run."""
    rs = [r for r in results if r["scenario"] in NULLS]
    if not rs:
        return None
    return {"scenarios": sorted({r["scenario"] for r in rs}), "studies": len(rs), "k_test_rejects": _rate([r["evidence"] for r in rs]),
            "joint_set_false_exclusion": _rate([not all(r["sets"]["joint"]) for r in rs]), **_claim_stats(rs)}


def main() -> None:
    from search_spaces import get_space

    INFERENCE_BUDGET = get_space("eca_kmap").info.budget_for("inference")

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=100, help="simulated studies per scenario (default 100)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first study (studies are seeded first-seed, first-seed+1, ...)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of: {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--configs", type=int, default=INFERENCE_BUDGET.trials,
                   help="configurations per study (default: the inference design's)")
    p.add_argument("--replicates", type=int, default=2)
    p.add_argument("--sigma", type=float, default=0.5, help="noise per trial at width 1, points (default 0.5)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--method", default="permutation", choices=("f", "permutation"), help="the k test (default: the analysis's default)")
    p.add_argument("--permutations", type=int, default=999)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args()
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args = {k: v for k, v in vars(a).items() if k != "json"}
    if a.studies < 1:
        p.error("--studies: must be >= 1")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread per worker process
        os.environ.setdefault(var, "1")
    jobs = [(s, i, args) for i in range(a.first_seed, a.first_seed + a.studies) for s in scenarios]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(a.workers) as pool:
        results = list(pool.imap_unordered(_one, jobs))
    wall = time.perf_counter() - t0
    print(f"k-vs-C calibration: {a.studies} studies per scenario, each {a.configs} configurations x {a.replicates} replicates of "
          f"{a.backbone} (eca_kmap inference design, recorded by the real bookkeeping), noise sigma {a.sigma} points per trial at "
          f"width 1, {a.method} test at alpha {a.alpha}; whole answer by analysis.analyze_kmap")
    summary = []
    for s in scenarios:
        rs = [r for r in results if r["scenario"] == s]
        summary.append(summarize(s, rs, a.alpha))
        print("\n".join(_lines(summary[-1], a.alpha)))
    pooled = pooled_nulls(results)
    if pooled:
        print(f"[nulls pooled: {', '.join(pooled['scenarios'])}] {pooled['studies']} studies: any mapping claim "
              f"{_fmt(pooled['any_claim'])} (goal <= {a.alpha:g}, upper bound <= 0.08); joint k* set excluded a best k "
              f"{_fmt(pooled['joint_set_false_exclusion'])} (goal <= {a.alpha:g}); k test rejected {_fmt(pooled['k_test_rejects'])}; "
              f"largest claim {pooled['largest_claim']:.2f} points; contradictions {pooled['contradictions']}; nan {pooled['nan_outputs']}")
    sim = sum(r["sim_s"] for r in results) / len(results)
    ana = sum(r["analysis_s"] for r in results) / len(results)
    print(f"time: {wall:.0f} s on {a.workers} workers; per study {sim:.1f} s recording, {ana:.1f} s analysis")
    if a.json:
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "settings": args, "wall_s": wall, "scenarios": summary,
                                            "nulls_pooled": pooled}, indent=2))

    def share(r: tuple[float, float, float, int]) -> str:
        return "n/a" if r[3] == 0 else f"{r[0]:.3f}"

    table = [{"scenario": s["scenario"] + ("" if s["inside_model"] else " (outside the model)"),
              "k test": ("power " if s["k_matters"] else "false positives ")
              + _fmt(s["power" if s["k_matters"] else "false_positive_rate"]),
              "studies with a mapping claim / a false one": f"{share(s['any_claim'])} / {share(s['any_false_claim'])}",
              "largest claim (points)": f"{s['largest_claim']:.2f}",
              "regret coverage": share(s["regret_coverage"]),
              "vs_paper coverage (fixed / fitted psi)": f"{share(s['vs_paper_coverage'])} / {share(s['fitted_vs_paper_coverage'])}",
              "k* sets holding every best k: per C / joint": f"{share(s['k_set_per_C'])} / {share(s['k_set_joint'])}",
              "sigma_seed coverage": share(s["sigma_seed_coverage"]),
              "interaction named / stage check rejects": f"{share(s['additivity_rejects'])} / {share(s['stage_test_rejects'])}"}
             for s in summary]
    headline: dict[str, Any] = {"studies per scenario": a.studies, "scenarios": ", ".join(scenarios)}
    if pooled:
        headline.update({
            f"nulls pooled ({pooled['studies']} studies): any mapping claim": _fmt(pooled["any_claim"]),
            "nulls pooled: joint k* set excluded a best k": _fmt(pooled["joint_set_false_exclusion"]),
            "nulls pooled: k test rejected": _fmt(pooled["k_test_rejects"]),
        })
    for s in summary:
        if s["scenario"] in ("stage", "one_stage", "interaction"):
            headline[f"{s['scenario']}: interaction named"] = _fmt(s["additivity_rejects"])
        if s["scenario"] == "collapse":
            headline["collapse: largest claim (points)"] = round(s["largest_claim"], 2)
    headline["outputs with a contradiction / with nan"] = (f"{sum(s['contradictions'] for s in summary)} / "
                                                            f"{sum(s['nan_outputs'] for s in summary)}")
    headline["wall (s)"] = round(wall)
    write_result("kmap_calibration", goal=f"per study under a null: any mapping claim <= {a.alpha:g} (upper Monte Carlo bound <= 0.08), "
                                          f"joint k* set false exclusions <= {a.alpha:g}; interaction named in <= 10 % of stage and "
                                          "one-stage studies and >= 80 % of 1-point interactions; no claim beyond 10 points under "
                                          "collapsed runs; no nan, no contradiction",
                 headline=headline, detail={"settings": args, "wall_s": wall, "scenarios": summary, "nulls_pooled": pooled,
                                            "table": table})


if __name__ == "__main__":
    main()
