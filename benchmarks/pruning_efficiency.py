"""Pruning efficiency: the same study with and without a pruner, over several seeds.

For each seed it runs an eca_kmap study on the local runner without pruning (``--pruner
none``), then the same study (same seed, same random sampler, so the same configurations in
the same order, each trained from its own per-trial seed) under every pruner asked for, and
prints per seed and as a summary over the seeds:

- one objective (``--objectives top1``): the epochs spent and the best top-1 as ratios
  pruned / unpruned (and the difference in points), and whether the pruned study kept the
  unpruned study's best configuration (completed it); the summary gives the mean, the
  standard deviation and the min-max over the seeds, and the fraction of seeds that kept it;
- several (``--objectives top1,macs``): the hypervolume of the final front of top-1 (%,
  maximised) against the cost (minimised), with the fixed reference point (cost = 1.1 x the
  largest cost any trial of the seed's study measured - the same trials in every study of the
  seed -, top-1 = 0), as a ratio pruned / unpruned, and the epochs spent.

The pruned studies are, by default, replayed: the real bridge, sampler, pruner and storage
run the study while the trainer hands back the top-1 per epoch that the unpruned study's
training of the same trial reached (:func:`_study_bench.replay`). Training one configuration
from one seed on the CPU repeats itself exactly (one torch thread), so that is the study the
pruner would have run; the first seed's first pruned study is also trained for real and
checked against its replay (trial states and per-epoch top-1 equal), ``--train-pruned``
trains every pruned study. So pruners can be compared at the cost of training each seed once.

**Choosing and reporting on different seeds** (``--select A-B --report C-D``): every pruner
with a grid (:data:`GRIDS`: pareto, median, sha, hyperband, wilcoxon; several objectives:
pareto, the only one that takes them) is replayed at every setting of its grid on the
selection seeds; :func:`choose` takes, among the settings that meet the quality goal there,
the one with the fewest epochs (none meeting it: the best quality); the chosen setting and
the registry default are then reported on the held-out seeds, with the goals, and the Spearman
rank correlation of each epoch's top-1 with the final top-1 over the recorded trials - what
every pruner bets on. ``--result`` writes ``benchmarks/results/pruning_efficiency.json``
(``pruning_efficiency_multi.json`` for several objectives).

Optuna's WilcoxonPruner (``wilcoxon``) is built for a value that is the mean over instances
(folds, problems), each step a different instance; a step here is an epoch and the value the
final top-1, so its signed-rank test compares a trial's learning curve with the best trial's
at the same epochs. It runs, but its p-value is no error rate (autocorrelated epochs, not
exchangeable instances): it prunes a curve that lay below the best one at (nearly) every
epoch so far, at p 0.1 after four or more epochs.

    python benchmarks/pruning_efficiency.py --trials 16 --epochs 12 --resolution 16 --val-per-class 50 --seeds 10 \
        --no-check --save-curves runs/pruning-curves       # record 10 unpruned seeds once (CPU: ~3 min a seed alone)
    python benchmarks/pruning_efficiency.py --trials 16 --epochs 12 --resolution 16 --val-per-class 50 \
        --curves-from runs/pruning-curves --select 0-4 --report 5-9 --result
    python benchmarks/pruning_efficiency.py                        # 5 seeds x 12 trials x 4 epochs, the default pruner
    python benchmarks/pruning_efficiency.py --pruner median sha sha:reduction_factor=4
    python benchmarks/pruning_efficiency.py --objectives top1,macs --seeds 3 --resolution 16    # widths 0.25-1
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _study_bench import curves, replay, run

from analysis import hypervolume
from runners import DESIGNS, PRUNER_REGISTRY, PRUNERS
from study import record


def parse_pruner(text: str) -> tuple[str, dict[str, int]]:
    """``NAME`` or ``NAME:option=value,option=value``."""
    name, _, rest = text.partition(":")
    if name not in PRUNERS or name == "none":
        raise argparse.ArgumentTypeError(f"unknown pruner {name!r} (valid: {', '.join(p for p in PRUNERS if p != 'none')})")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected option=value, got {item!r}")
        options[key.strip()] = int(value)
    return name, options


def label(pruner: tuple[str, dict[str, int]]) -> str:
    name, options = pruner
    return name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def epochs_spent(trials) -> int:
    return sum(len(t.user_attrs.get(record.HISTORY) or []) for t in trials)


def best(trials) -> tuple[float, int | None]:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    if not complete:
        return math.nan, None
    t = max(complete, key=lambda t: t.values[0])
    return t.values[0], t.number


def front_hv(trials, cost: str, reference: tuple[float, float]) -> tuple[float, set[int]]:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    c = [t.user_attrs[record.COSTS][cost] for t in complete]
    y = [t.values[0] for t in complete]
    front = {t.number for t in complete
             if not any((o.values[0] >= t.values[0] and o.user_attrs[record.COSTS][cost] <= t.user_attrs[record.COSTS][cost])
                        and (o.values[0] > t.values[0] or o.user_attrs[record.COSTS][cost] < t.user_attrs[record.COSTS][cost])
                        for o in complete)}
    return hypervolume(c, y, reference=reference), front


def same_study(a, b) -> bool:
    key = lambda ts: [(t.number, t.state.name, [m["top1"] for m in t.user_attrs.get(record.HISTORY) or []]) for t in ts]
    return key(a) == key(b)


def spread(xs: list[float], fmt: str) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"mean {fmt.format(statistics.mean(xs))} (sd {fmt.format(sd)}, {fmt.format(min(xs))} to {fmt.format(max(xs))})"


def proxy_changes(args: argparse.Namespace) -> dict[str, int] | None:
    """The proxy fields the flags change (None: the proxy as it is)."""
    changes = {k: v for k, v in (("resolution", args.resolution), ("num_classes", args.classes),
                                 ("val_per_class", args.val_per_class)) if v is not None}
    return changes or None


#: the settings tried per pruner when choosing on the selection seeds (``--select``): every
#: combination of the listed values (the registry default is added when it is not among them)
GRIDS: dict[str, dict[str, list[int]]] = {
    "pareto": {"percentile": [25, 50, 75], "warmup": [1, 2, 4, 6]},
    "median": {"warmup": [1, 2, 4, 6], "startup": [3, 5]},
    "sha": {"min_resource": [1, 2, 4], "reduction_factor": [2, 3, 4]},
    "hyperband": {"min_resource": [1, 2, 4], "reduction_factor": [2, 3, 4]},
    "wilcoxon": {"warmup": [2, 4, 6, 8]},
}
#: several objectives: only the pareto pruner takes them
MULTI_GRIDS: dict[str, dict[str, list[int]]] = {"pareto": {"percentile": [50, 75, 90], "warmup": [1, 2, 4, 6], "startup": [1, 3]}}

#: the goals: one objective - at most this fraction of the epochs, the best top-1 at most this
#: many points below on average, the unpruned best configuration kept in this fraction of the
#: seeds; several - at most this fraction of the epochs at a hypervolume of at least this ratio
GOAL_EPOCHS, GOAL_POINTS, GOAL_KEPT = 0.40, 0.5, 0.8
GOAL_MULTI_EPOCHS, GOAL_HV = 0.60, 0.99


def seed_range(text: str) -> list[int]:
    """``A-B`` (inclusive) or ``A,B,C``."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as A-B or A,B,C, got {text!r}") from None


def grid(name: str, multi: bool) -> list[tuple[str, dict[str, int]]]:
    """The settings of pruner ``name`` tried in the selection phase, the registry default first."""
    values = (MULTI_GRIDS if multi else GRIDS).get(name)
    if values is None:
        raise SystemExit(f"--select: no grid for pruner {name!r} (grids: {', '.join(MULTI_GRIDS if multi else GRIDS)})")
    default = PRUNER_REGISTRY.get(name).defaults(multi=multi)
    out = [(name, default)]
    for combo in itertools.product(*values.values()):
        options = {**default, **dict(zip(values, combo))}
        if options != default:
            out.append((name, options))
    return out


class Seed:
    """One seed's unpruned study (trained, or as recorded) and what the pruned ones are held against."""

    def __init__(self, seed: int, recorded: dict[int, dict[str, Any]], plain: list, wall: float, *, cost: str | None):
        self.seed, self.recorded, self.plain, self.wall = seed, recorded, plain, wall
        self.epochs = epochs_spent(plain)
        self.cost = cost
        if cost is not None:
            self.reference = (1.1 * max(t.user_attrs[record.COSTS][cost] for t in plain), 0.0)
            self.hv, self.front = front_hv(plain, cost, self.reference)
        else:
            self.best, self.best_trial = best(plain)

    def describe(self, source: str) -> str:
        if self.cost is not None:
            return (f"seed {self.seed} unpruned: {len(self.plain)} trials, {self.epochs} epochs, front of {len(self.front)}, "
                    f"hypervolume {self.hv:.4g} (reference {self.cost} {self.reference[0]:.4g}, top-1 0), {source} in {self.wall:.0f} s")
        return (f"seed {self.seed} unpruned: {len(self.plain)} trials, {self.epochs} epochs, best top-1 {self.best:.2f} "
                f"(trial {self.best_trial}), {source} in {self.wall:.0f} s")

    def measure(self, pruner: tuple[str, dict[str, int]], pruned: list) -> dict[str, Any]:
        """The pruned study's figures against this seed's unpruned one."""
        e1 = epochs_spent(pruned)
        row: dict[str, Any] = {"seed": self.seed, "epochs": e1 / self.epochs, "pruned": sum(t.state.name == "PRUNED" for t in pruned)}
        if self.cost is not None:
            hv1, front1 = front_hv(pruned, self.cost, self.reference)
            row.update(hv=hv1 / self.hv, front=len(self.front & front1) / len(self.front))
            row["text"] = (f"seed {self.seed} {label(pruner)}: {row['pruned']} pruned, {e1} epochs ({e1 / self.epochs:.2f}x), "
                           f"hypervolume {hv1:.4g} ({hv1 / self.hv:.4f}x), kept {len(self.front & front1)} of the "
                           f"{len(self.front)} unpruned front points")
        else:
            b1, _ = best(pruned)
            kept = any(t.number == self.best_trial and t.state.name == "COMPLETE" for t in pruned)
            row.update(top1=b1 / self.best, diff=b1 - self.best, kept=kept)
            row["text"] = (f"seed {self.seed} {label(pruner)}: {row['pruned']} pruned, {e1} epochs ({e1 / self.epochs:.2f}x), best top-1 "
                           f"{b1:.2f} ({b1 / self.best:.3f}x, {b1 - self.best:+.2f} points), unpruned best configuration "
                           f"{'kept' if kept else 'lost'}")
        return row


def summarize(rows: list[dict[str, Any]], multi: bool) -> dict[str, Any]:
    """Means over the seeds and whether the goals are met."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in rows], "epochs": statistics.mean(r["epochs"] for r in rows),
                           "epochs_range": (min(r["epochs"] for r in rows), max(r["epochs"] for r in rows))}
    if multi:
        out["hv"] = statistics.mean(r["hv"] for r in rows)
        out["hv_range"] = (min(r["hv"] for r in rows), max(r["hv"] for r in rows))
        out["quality_met"] = out["hv"] >= GOAL_HV
        out["met"] = out["quality_met"] and out["epochs"] <= GOAL_MULTI_EPOCHS
    else:
        out["diff"] = statistics.mean(r["diff"] for r in rows)
        out["diff_range"] = (min(r["diff"] for r in rows), max(r["diff"] for r in rows))
        out["kept"] = sum(r["kept"] for r in rows)
        out["quality_met"] = out["diff"] >= -GOAL_POINTS and out["kept"] >= GOAL_KEPT * len(rows)
        out["met"] = out["quality_met"] and out["epochs"] <= GOAL_EPOCHS
    return out


def summary_text(lab: str, rows: list[dict[str, Any]], multi: bool) -> str:
    ep = [r["epochs"] for r in rows]
    s = summarize(rows, multi)
    if multi:
        hv = [r["hv"] for r in rows]
        fr = [r["front"] for r in rows]
        return (f"  {lab}: epochs {spread(ep, '{:.2f}')}x; hypervolume {spread(hv, '{:.4f}')}x; unpruned front points kept "
                f"{spread(fr, '{:.2f}')}; goal (hypervolume >= {GOAL_HV}x for <= {GOAL_MULTI_EPOCHS:.2f}x the epochs) "
                f"{'met' if s['met'] else 'NOT met'}")
    t1 = [r["top1"] for r in rows]
    d = [r["diff"] for r in rows]
    return (f"  {lab}: epochs {spread(ep, '{:.2f}')}x; best top-1 {spread(t1, '{:.3f}')}x, {spread(d, '{:+.2f}')} points; "
            f"kept the unpruned best configuration in {s['kept']}/{len(rows)} seeds; goal (best top-1 within {GOAL_POINTS} points "
            f"on average, the best kept in >= {GOAL_KEPT:.0%} of the seeds, <= {GOAL_EPOCHS:.2f}x the epochs) "
            f"{'met' if s['met'] else 'NOT met'}")


def choose(results: dict[str, dict[str, Any]]) -> str:
    """The selection rule: among the settings that meet the quality goal on the selection seeds
    (one objective: best top-1 within 0.5 points on average and the best configuration kept in
    >= 80 % of the seeds; several: hypervolume >= 0.99x), the one with the fewest epochs; when
    none meets it, the best quality (top-1 difference, then configurations kept; hypervolume),
    then the fewest epochs. ``results``: label -> :func:`summarize`'s figures."""
    meeting = [k for k, s in results.items() if s["quality_met"]]
    if meeting:
        return min(meeting, key=lambda k: results[k]["epochs"])
    if "hv" in next(iter(results.values())):
        return max(results, key=lambda k: (results[k]["hv"], -results[k]["epochs"]))
    return max(results, key=lambda k: (results[k]["diff"], results[k]["kept"], -results[k]["epochs"]))


def rank_agreement(seeds: list[Seed]) -> list[dict[str, Any]]:
    """Per epoch e: Spearman's rank correlation, over a seed's trials, of the top-1 at epoch e
    with the final top-1 (mean, min and max over the seeds): how well an epoch's ranking
    predicts the final one, which is what every pruner bets on."""
    from scipy.stats import spearmanr

    epochs = max(len(c["top1"]) for s in seeds for c in s.recorded.values())
    out = []
    for e in range(1, epochs + 1):
        rhos = []
        for s in seeds:
            full = [c["top1"] for c in s.recorded.values() if len(c["top1"]) == epochs]
            if len(full) > 2:
                rho = spearmanr([c[e - 1] for c in full], [c[-1] for c in full])[0]
                if math.isfinite(rho):
                    rhos.append(float(rho))
        if rhos:
            out.append({"epoch": e, "mean": statistics.mean(rhos), "min": min(rhos), "max": max(rhos)})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--objectives", default="top1", help="top1 (default) or top1,COST (macs, params, latency)")
    p.add_argument("--pruner", nargs="+", type=parse_pruner, default=None, metavar="NAME[:OPTION=VALUE,...]",
                   help="pruners to measure (default: the search design's for the objectives; with --select: every "
                        "pruner with a grid that takes the objectives, options ignored)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (studies) to run: --seed, --seed + 1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--select", type=seed_range, metavar="SEEDS",
                   help="choose each pruner's options on these seeds (A-B or A,B,C: every setting of its grid, the "
                        "selection rule of choose()) and report the chosen and the default settings on --report")
    p.add_argument("--report", type=seed_range, metavar="SEEDS", help="with --select: the held-out seeds the choice is reported on")
    p.add_argument("--proxy", default="default", help="'default' (study.run's) or a preset name")
    p.add_argument("--resolution", type=int, default=None, help="the proxy's resolution (default: the proxy's own, 32 px)")
    p.add_argument("--classes", type=int, default=None, help="the synthetic proxy's classes (default: the proxy's own, 10)")
    p.add_argument("--val-per-class", type=int, default=None, help="the synthetic proxy's validation images per class (default 20)")
    p.add_argument("--width", type=float, default=None,
                   help="fix the width (default: 0.25 for one objective; for several the space's widths 0.25, 0.5, 1)")
    p.add_argument("--train-pruned", action="store_true", help="train every pruned study instead of replaying it")
    p.add_argument("--no-check", action="store_true", help="skip training the first pruned study to check its replay")
    p.add_argument("--save-curves", metavar="DIR", help="write each seed's unpruned curves to DIR/seed<N>.json")
    p.add_argument("--curves-from", metavar="DIR", help="take each seed's unpruned study from DIR/seed<N>.json (written by "
                   "--save-curves with the same settings) instead of training it; the replay check still trains")
    p.add_argument("--scratch", metavar="DIR", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="where the studies' temporary SQLite files go (default: /dev/shm where it exists, else the system's)")
    p.add_argument("--result", action="store_true", help="write benchmarks/results/pruning_efficiency.json (with --select)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.scratch:
        tempfile.tempdir = args.scratch
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    multi = len(objectives) > 1
    cost = record.OBJECTIVES[objectives[1]][0] if multi else None
    design = DESIGNS["search"]
    if args.select and not args.report:
        raise SystemExit("--select needs --report: the held-out seeds the chosen settings are reported on")
    if args.select:
        names = [n for n, _ in args.pruner] if args.pruner else list(MULTI_GRIDS if multi else GRIDS)
        names = list(dict.fromkeys(names))
        pruners = [(n, PRUNER_REGISTRY.get(n).defaults(multi=multi)) for n in names]
        seeds = list(dict.fromkeys(args.select + args.report))
        if set(args.select) & set(args.report):
            raise SystemExit("--select and --report: the seeds must differ (a choice is never scored on the data that chose it)")
    else:
        pruners = args.pruner or [(design.multi_objective_pruner if multi else design.pruner, {})]
        seeds = list(range(args.seed, args.seed + args.seeds))
    width = args.width if args.width is not None else (None if multi else 0.25)
    common: dict[str, Any] = dict(trials=args.trials, epochs=args.epochs, proxy_name=args.proxy, width=width, runner="local",
                                  sampler="random", objectives=objectives, proxy_changes=proxy_changes(args))
    print(f"pruning efficiency: eca_kmap, {args.trials} trials x {args.epochs} epochs, random sampler, width "
          f"{width if width is not None else '0.25/0.5/1'}, objectives {','.join(objectives)}, proxy {args.proxy}"
          f"{f' changed {proxy_changes(args)}' if proxy_changes(args) else ''}, seeds {','.join(map(str, seeds))}; "
          f"pruned studies {'trained' if args.train_pruned else 'replayed from the unpruned curves (the first checked by training it)'}")
    t_start = time.perf_counter()
    meta = {k: v for k, v in common.items() if k != "runner"}
    data: dict[int, Seed] = {}
    for seed in seeds:
        data[seed] = load_seed(seed, args, common, meta, cost)
        print(data[seed].describe("recorded: trained" if args.curves_from else "trained"), flush=True)

    def study(pr: tuple[str, dict[str, int]], seed: int, check: bool = False) -> dict[str, Any]:
        name, options = pr
        settings = dict(pruner=name, pruner_options=options, seed=seed, **common)
        if args.train_pruned:
            _, pruned = run(f"{name}-s{seed}", **settings)
        else:
            _, pruned = replay(f"{name}-s{seed}", data[seed].recorded, **settings)
            if check and not args.no_check:
                _, trained = run(f"{name}-s{seed}-check", **settings)
                if not same_study(pruned, trained):
                    sys.exit(f"replay check failed: the trained {label(pr)} study of seed {seed} differs from its replay")
                print(f"seed {seed} {label(pr)}: replay check passed (the trained pruned study equals its replay)", flush=True)
        return data[seed].measure(pr, pruned)

    if not args.select:
        results: dict[str, list[dict[str, Any]]] = {label(pr): [] for pr in pruners}
        for seed in seeds:
            for i, pr in enumerate(pruners):
                row = study(pr, seed, check=seed == seeds[0] and i == 0)
                print(row["text"], flush=True)
                results[label(pr)].append(row)
        print(f"\nsummary over {len(seeds)} seeds ({time.perf_counter() - t_start:.0f} s):")
        for lab, rows in results.items():
            print(summary_text(lab, rows, multi))
        return

    # selection phase: every setting of every pruner's grid on the selection seeds
    print(f"\nselection on seeds {','.join(map(str, args.select))}: the fewest epochs among the settings that meet the quality goal "
          f"({'hypervolume >= 0.99x' if multi else 'top-1 within 0.5 points on average, the best kept in >= 4 of 5 seeds'}); "
          f"none meeting it: the best quality", flush=True)
    selection: dict[str, dict[str, dict[str, Any]]] = {}
    chosen: dict[str, tuple[str, dict[str, int]]] = {}
    for name, _ in pruners:
        settings = {label(pr): pr for pr in grid(name, multi)}
        selection[name] = {lab: summarize([study(pr, seed) for seed in args.select], multi) for lab, pr in settings.items()}
        pick = choose(selection[name])
        chosen[name] = settings[pick]
        for lab, s in selection[name].items():
            quality = f"hypervolume {s['hv']:.4f}x" if multi else f"top-1 {s['diff']:+.2f} points, best kept {s['kept']}/{len(args.select)}"
            mark = " <- chosen" if lab == pick else ""
            print(f"  {lab}: epochs {s['epochs']:.2f}x, {quality}{' (quality goal met)' if s['quality_met'] else ''}{mark}", flush=True)

    # report phase: the chosen and the default settings on the held-out seeds
    print(f"\nreport on the held-out seeds {','.join(map(str, args.report))}:", flush=True)
    report: dict[str, dict[str, Any]] = {}
    for i, (name, default) in enumerate(pruners):
        for which, pr in (("chosen", chosen[name]), ("default", (name, default))):
            if which == "default" and pr == chosen[name]:
                continue
            rows = [study(pr, seed, check=i == 0 and which == "chosen" and seed == args.report[0]) for seed in args.report]
            for row in rows:
                print(row["text"], flush=True)
            report[f"{name} {which}"] = {"setting": label(pr), **summarize(rows, multi), "rows": [
                {k: v for k, v in r.items() if k != "text"} for r in rows]}
            also = ", also the default" if which == "chosen" and pr[1] == default else ""
            print(summary_text(f"{label(pr)} ({which}{also})", rows, multi), flush=True)
    agreement = rank_agreement(list(data.values()))
    print("\nrank agreement of the epoch-e top-1 with the final top-1 (Spearman over a seed's trials; mean, min-max over "
          f"{len(data)} seeds): " + ", ".join(f"e{a['epoch']} {a['mean']:.2f} ({a['min']:.2f}..{a['max']:.2f})" for a in agreement))
    print(f"({time.perf_counter() - t_start:.0f} s in all)")
    if args.result:
        write(args, multi, objectives, meta, pruners, chosen, selection, report, agreement, data)


def load_seed(seed: int, args: argparse.Namespace, common: dict[str, Any], meta: dict[str, Any], cost: str | None) -> Seed:
    """Seed ``seed``'s unpruned study: read from --curves-from (and replayed unpruned, through
    the same machinery) or trained; written to --save-curves when asked."""
    if args.curves_from:
        path = Path(args.curves_from) / f"seed{seed}.json"
        saved = json.loads(path.read_text())
        if saved["settings"] != json.loads(json.dumps(meta)):
            sys.exit(f"--curves-from: {path} was recorded with {saved['settings']}, not {meta}")
        recorded = {int(n): c for n, c in saved["curves"].items()}
        wall = saved["wall_s"]
        _, plain = replay(f"none-s{seed}", recorded, pruner="none", seed=seed, **common)  # the unpruned study, as recorded
    else:
        wall, plain = run(f"none-s{seed}", pruner="none", seed=seed, **common)
        recorded = curves(plain)
    if args.save_curves:
        Path(args.save_curves).mkdir(parents=True, exist_ok=True)
        (Path(args.save_curves) / f"seed{seed}.json").write_text(json.dumps({"settings": meta, "wall_s": wall, "curves": recorded}))
    return Seed(seed, recorded, plain, wall, cost=cost)


def write(args, multi, objectives, meta, pruners, chosen, selection, report, agreement, data) -> None:
    from _results import write_result

    goal = (f"several objectives ({','.join(objectives)}): <= {GOAL_MULTI_EPOCHS:.2f}x the epochs at a hypervolume >= {GOAL_HV}x"
            if multi else f"one objective: <= {GOAL_EPOCHS:.2f}x the epochs, best top-1 within {GOAL_POINTS} points on average, "
            f"the unpruned best configuration kept in >= 4 of 5 seeds")
    goal += f"; settings chosen on seeds {args.select}, reported on the held-out seeds {args.report}"
    headline: dict[str, Any] = {}
    for key, r in report.items():
        quality = f"hypervolume {r['hv']:.4f}x" if multi else f"top-1 {r['diff']:+.2f} points, best kept {r['kept']}/{len(r['rows'])}"
        headline[f"{key} ({r['setting']})"] = f"{r['epochs']:.2f}x epochs, {quality}: {'met' if r['met'] else 'NOT met'}"
    name = "pruning_efficiency" + ("_multi" if multi else "")
    path = write_result(name, goal=goal, headline=headline, detail={
        "settings": meta, "seeds_select": args.select, "seeds_report": args.report,
        "chosen": {n: label(pr) for n, pr in chosen.items()},
        "defaults": {n: label((n, d)) for n, d in pruners},
        "selection": selection, "report": report, "rank_agreement": agreement,
        "unpruned": {s.seed: ({"epochs": s.epochs, "hv": s.hv} if multi else {"epochs": s.epochs, "best": s.best}) for s in data.values()},
    })
    print(f"result: {path}")


if __name__ == "__main__":
    main()
