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

    python benchmarks/pruning_efficiency.py                        # 5 seeds x 12 trials x 4 epochs, the default pruner
    python benchmarks/pruning_efficiency.py --pruner median sha sha:reduction_factor=4
    python benchmarks/pruning_efficiency.py --objectives top1,macs --seeds 3 --resolution 16    # widths 0.25-1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _study_bench import curves, replay, run  # noqa: E402

from analysis import hypervolume  # noqa: E402
from runners._settings import DESIGNS, PRUNERS  # noqa: E402
from study import record  # noqa: E402


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
    key = lambda ts: [(t.number, t.state.name, [m["top1"] for m in t.user_attrs.get(record.HISTORY) or []]) for t in ts]  # noqa: E731
    return key(a) == key(b)


def spread(xs: list[float], fmt: str) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"mean {fmt.format(statistics.mean(xs))} (sd {fmt.format(sd)}, {fmt.format(min(xs))} to {fmt.format(max(xs))})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--objectives", default="top1", help="top1 (default) or top1,COST (macs, params, latency)")
    p.add_argument("--pruner", nargs="+", type=parse_pruner, default=None, metavar="NAME[:OPTION=VALUE,...]",
                   help="pruners to measure (default: the search design's for the objectives)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (studies) to run: --seed, --seed + 1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proxy", default="default", help="'default' (study.run's) or a preset name")
    p.add_argument("--resolution", type=int, default=None, help="the proxy's resolution (default: the proxy's own, 32 px)")
    p.add_argument("--width", type=float, default=None,
                   help="fix the width (default: 0.25 for one objective; for several the space's widths 0.25, 0.5, 1)")
    p.add_argument("--train-pruned", action="store_true", help="train every pruned study instead of replaying it")
    p.add_argument("--no-check", action="store_true", help="skip training the first pruned study to check its replay")
    p.add_argument("--save-curves", metavar="DIR", help="write each seed's unpruned curves to DIR/seed<N>.json")
    p.add_argument("--curves-from", metavar="DIR", help="take each seed's unpruned study from DIR/seed<N>.json (written by "
                   "--save-curves with the same settings) instead of training it; the replay check still trains")
    args = p.parse_args()

    objectives = tuple(o.strip() for o in args.objectives.split(","))
    multi = len(objectives) > 1
    cost = record.OBJECTIVES[objectives[1]][0] if multi else None
    design = DESIGNS["search"]
    pruners = args.pruner or [(design.multi_objective_pruner if multi else design.pruner, {})]
    width = args.width if args.width is not None else (None if multi else 0.25)
    common: dict[str, Any] = dict(trials=args.trials, epochs=args.epochs, proxy_name=args.proxy, width=width, runner="local",
                                  sampler="random", objectives=objectives,
                                  proxy_changes={"resolution": args.resolution} if args.resolution else None)
    print(f"pruning efficiency: eca_kmap, {args.trials} trials x {args.epochs} epochs, random sampler, width "
          f"{width if width is not None else '0.25/0.5/1'}, objectives {','.join(objectives)}, proxy {args.proxy}"
          f"{f' at {args.resolution} px' if args.resolution else ''}, seeds {args.seed}-{args.seed + args.seeds - 1}; "
          f"pruned studies {'trained' if args.train_pruned else 'replayed from the unpruned curves (the first checked by training it)'}")
    results: dict[str, list[dict[str, Any]]] = {label(pr): [] for pr in pruners}
    t_start = time.perf_counter()
    meta = {k: v for k, v in common.items() if k != "runner"}
    for seed in range(args.seed, args.seed + args.seeds):
        if args.curves_from:
            path = Path(args.curves_from) / f"seed{seed}.json"
            saved = json.loads(path.read_text())
            if saved["settings"] != json.loads(json.dumps(meta)):
                sys.exit(f"--curves-from: {path} was recorded with {saved['settings']}, not {meta}")
            recorded = {int(n): c for n, c in saved["curves"].items()}
            wall0 = saved["wall_s"]
            _, plain = replay(f"none-s{seed}", recorded, pruner="none", seed=seed, **common)  # the unpruned study, as recorded
        else:
            wall0, plain = run(f"none-s{seed}", pruner="none", seed=seed, **common)
            recorded = curves(plain)
        if args.save_curves:
            Path(args.save_curves).mkdir(parents=True, exist_ok=True)
            (Path(args.save_curves) / f"seed{seed}.json").write_text(json.dumps({"settings": meta, "wall_s": wall0, "curves": recorded}))
        e0 = epochs_spent(plain)
        if multi:
            reference = (1.1 * max(t.user_attrs[record.COSTS][cost] for t in plain), 0.0)
            hv0, front0 = front_hv(plain, cost, reference)
            print(f"seed {seed} unpruned: {len(plain)} trials, {e0} epochs, front of {len(front0)}, hypervolume {hv0:.4g} "
                  f"(reference {cost} {reference[0]:.4g}, top-1 0), {'recorded: ' if args.curves_from else ''}trained in {wall0:.0f} s")
        else:
            b0, n0 = best(plain)
            print(f"seed {seed} unpruned: {len(plain)} trials, {e0} epochs, best top-1 {b0:.2f} (trial {n0}), {'recorded: ' if args.curves_from else ''}trained in {wall0:.0f} s")
        for i, pr in enumerate(pruners):
            name, options = pr
            settings = dict(pruner=name, pruner_options=options, seed=seed, **common)
            if args.train_pruned:
                _, pruned = run(f"{name}-s{seed}", **settings)
            else:
                _, pruned = replay(f"{name}-s{seed}", recorded, **settings)
                if seed == args.seed and i == 0 and not args.no_check:
                    _, trained = run(f"{name}-s{seed}-check", **settings)
                    if not same_study(pruned, trained):
                        sys.exit(f"replay check failed: the trained {label(pr)} study of seed {seed} differs from its replay")
                    print(f"seed {seed} {label(pr)}: replay check passed (the trained pruned study equals its replay)")
            e1 = epochs_spent(pruned)
            n_pruned = sum(t.state.name == "PRUNED" for t in pruned)
            row: dict[str, Any] = {"seed": seed, "epochs": e1 / e0}
            if multi:
                hv1, front1 = front_hv(pruned, cost, reference)
                row.update(hv=hv1 / hv0, front=len(front0 & front1) / len(front0))
                print(f"seed {seed} {label(pr)}: {n_pruned} pruned, {e1} epochs ({e1 / e0:.2f}x), hypervolume {hv1:.4g} "
                      f"({hv1 / hv0:.4f}x), kept {len(front0 & front1)} of the {len(front0)} unpruned front points")
            else:
                b1, n1 = best(pruned)
                kept = any(t.number == n0 and t.state.name == "COMPLETE" for t in pruned)
                row.update(top1=b1 / b0, diff=b1 - b0, kept=kept)
                print(f"seed {seed} {label(pr)}: {n_pruned} pruned, {e1} epochs ({e1 / e0:.2f}x), best top-1 {b1:.2f} "
                      f"({b1 / b0:.3f}x, {b1 - b0:+.2f} points), unpruned best configuration {'kept' if kept else 'lost'}")
            results[label(pr)].append(row)
    print(f"\nsummary over {args.seeds} seeds ({time.perf_counter() - t_start:.0f} s):")
    for lab, rows in results.items():
        ep = [r["epochs"] for r in rows]
        if multi:
            hv = [r["hv"] for r in rows]
            fr = [r["front"] for r in rows]
            ok = statistics.mean(hv) >= 0.99 and statistics.mean(ep) <= 0.60
            print(f"  {lab}: epochs {spread(ep, '{:.2f}')}x; hypervolume {spread(hv, '{:.4f}')}x; unpruned front points kept "
                  f"{spread(fr, '{:.2f}')}; goal (hypervolume >= 0.99x for <= 0.60x the epochs) {'met' if ok else 'NOT met'}")
        else:
            t1 = [r["top1"] for r in rows]
            d = [r["diff"] for r in rows]
            kept = sum(r["kept"] for r in rows)
            ok = statistics.mean(d) >= -0.5 and statistics.mean(ep) <= 0.40
            print(f"  {lab}: epochs {spread(ep, '{:.2f}')}x; best top-1 {spread(t1, '{:.3f}')}x, {spread(d, '{:+.2f}')} points; "
                  f"kept the unpruned best configuration in {kept}/{len(rows)} seeds ({kept / len(rows):.0%}); "
                  f"goal (best top-1 within 0.5 points for <= 0.40x the epochs) {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
