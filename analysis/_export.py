"""Export of selected trials for full training; documented in :mod:`analysis.export`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis._deepcave import export_deepcave
from study.cli import ArgumentParser, as_usage_error
from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.validate import ConfigError

if TYPE_CHECKING:
    from analysis._load import FrameSource
    from study.cli import ArgumentParser

__all__ = ["RECIPES", "full_training_config", "select_trials", "export_trials", "main", "build_parser"]

RECIPES: dict[str, Recipe] = {
    "eca-imagenet": Recipe(epochs=100, batch_size=256, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                           warmup_epochs=0.0, schedule="step", step_every=30, step_factor=0.1, label_smoothing=0.0,
                           amp=True, channels_last=True),
    "in100-cosine": Recipe(epochs=120, batch_size=256, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
                           warmup_epochs=5.0, schedule="cosine", label_smoothing=0.1, amp=True, channels_last=True),
}
#: the cache folder of the ``in100-224`` proxy preset (:func:`study.data.proxy_preset`)
DEFAULT_DATA = "caches/in100-224"


def full_training_config(
    config: TrialConfig | dict[str, Any],
    *,
    recipe: str | Recipe = "eca-imagenet",
    num_classes: int = 100,
    resolution: int = 224,
    data: str | None = DEFAULT_DATA,
    keep_stem: bool = False,
) -> TrialConfig:
    """The trial's architecture with a full-training recipe, stem, class count and proxy."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ConfigError("recipe", f"must be one of {', '.join(RECIPES)}, got {recipe!r}")
        recipe = RECIPES[recipe]
    arch: ArchSpec = cfg.arch
    arch = ArchSpec(backbone=arch.backbone, stages=arch.stages, stem=arch.stem if keep_stem else "imagenet",
                    width=arch.width, num_classes=num_classes, psi_input=arch.psi_input)
    proxy = ProxySpec(source="cache" if data else cfg.proxy.source, data=data if data else cfg.proxy.data,
                      resolution=resolution, num_classes=max(2, num_classes), images_per_class=None,
                      val_per_class=None if data else cfg.proxy.val_per_class, subset_seed=cfg.proxy.subset_seed,
                      augment="rrc_flip")
    return TrialConfig(arch=arch, recipe=recipe, proxy=proxy, seed=cfg.seed)


def select_trials(frames: FrameSource, *, top: int | None = None, pareto: str | None = None) -> pd.DataFrame:
    """Complete trials with a config: the ``top`` best by top-1, or the Pareto front of
    top-1 against ``pareto`` (params, macs or latency). Adds ``rank`` and ``selected_by``."""
    from analysis._load import coerce_frames
    from analysis._pareto import pareto_front

    fr = coerce_frames(frames)
    if (top is None) == (pareto is None):
        raise ConfigError("select", "give exactly one of top or pareto")
    t = fr.trials
    if t.empty:
        raise ConfigError("export", f"study {fr.name!r} has no trials")
    t = t[(t["state"] == "complete") & t["config"].notna() & t["top1"].notna()]
    if t.empty:
        raise ConfigError("export", f"study {fr.name!r} has no complete trials with a recorded config")
    if top is not None:
        if top < 1:
            raise ConfigError("top", f"must be >= 1, got {top!r}")
        sel = t.sort_values(["top1", "number"], ascending=[False, True]).head(top).copy()
        sel["selected_by"] = f"top{top}"
    else:
        sel = pareto_front(t, cost=pareto).copy()
        if sel.empty:
            raise ConfigError("export", f"no complete trial has a recorded {pareto}")
        sel["selected_by"] = f"pareto:{pareto}"
    sel["rank"] = range(1, len(sel) + 1)
    return sel


def export_trials(
    frames: FrameSource,
    out_dir: str | Path,
    *,
    top: int | None = None,
    pareto: str | None = None,
    recipe: str = "eca-imagenet",
    num_classes: int = 100,
    resolution: int = 224,
    data: str | None = DEFAULT_DATA,
    keep_stem: bool = False,
) -> list[dict[str, Any]]:
    """Write one TrialConfig JSON per selected trial plus ``index.json``/``index.csv``;
    return the index entries."""
    from analysis._load import coerce_frames

    fr = coerce_frames(frames)
    if recipe not in RECIPES:
        raise ConfigError("recipe", f"must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if num_classes < 2:
        raise ConfigError("num_classes", f"must be >= 2, got {num_classes!r}")
    sel = select_trials(fr, top=top, pareto=pareto)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for _, r in sel.iterrows():
        cfg = full_training_config(r["config"], recipe=recipe, num_classes=num_classes, resolution=resolution, data=data,
                                   keep_stem=keep_stem)
        name = f"rank{int(r['rank']):02d}-trial{int(r['number']):04d}-{r['attention']}.json".replace("+", "-")
        (out / name).write_text(cfg.to_json() + "\n")
        entry = {
            "file": name, "rank": int(r["rank"]), "trial": int(r["number"]), "selected_by": r["selected_by"],
            "study": fr.name, "proxy_top1": _num(r["top1"]), "proxy_epochs": _num(r["epochs"]),
            "proxy_params": _num(r.get("params")), "proxy_macs": _num(r.get("macs")), "proxy_latency_ms": _num(r.get("latency_ms")),
            "attention": r["attention"], "pattern": r["pattern"], "backbone": r["backbone"], "width": _num(r["width"]),
            "recipe": recipe, "num_classes": num_classes, "resolution": resolution, "stem": cfg.arch.stem,
            "command": f"python -m study.train --config {out / name}",
        }
        index.append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    with open(out / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(index[0]))
        w.writeheader()
        w.writerows(index)
    return index


def _num(v: Any) -> int | float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() else f


def build_parser() -> ArgumentParser:
    """The flags of ``python -m analysis.export``."""
    ap = ArgumentParser(prog="python -m analysis.export", description="Export chosen trials as full-training TrialConfig JSON.")
    ap.add_argument("run", nargs="?", help="run folder runs/NAME")
    ap.add_argument("--storage", help="storage URL (instead of a run folder)")
    ap.add_argument("--study", help="study name in the storage")
    ap.add_argument("--format", choices=("configs", "deepcave"), default="configs",
                    help="configs (default): the chosen trials (--top or --pareto) as full-training TrialConfig JSON; deepcave: "
                    "every finished trial as a DeepCAVE run (configspace.csv, trials.csv: its Pandas DataFrame format)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--top", type=int, help="the N complete trials with the best top-1")
    g.add_argument("--pareto", nargs="?", const="params", choices=["params", "macs", "latency"],
                   help="the Pareto front of top-1 against this cost (default params)")
    ap.add_argument("--recipe", default="eca-imagenet", choices=sorted(RECIPES))
    ap.add_argument("--num-classes", type=int, default=100, help="classes of the full-training data (default 100, ImageNet-100)")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--data", default=DEFAULT_DATA, help=f"prepared cache folder at that resolution (default {DEFAULT_DATA})")
    ap.add_argument("--keep-stem", action="store_true", help="keep the trial's stem instead of the ImageNet stem")
    ap.add_argument("--out", help="output folder (default RUN/export; with --format deepcave RUN/deepcave)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from analysis._load import load

    ap = build_parser()
    args = ap.parse_args(argv)
    if bool(args.run) == bool(args.storage):
        ap.error("give a run folder or --storage URL (not both)")
    selected = args.top is not None or args.pareto is not None
    if args.format == "deepcave" and selected:
        ap.error(f"{'--top' if args.top is not None else '--pareto'}: chooses trials for --format configs; "
                 "--format deepcave exports every finished trial")
    if args.format == "configs" and not selected:
        ap.error("one of the arguments --top --pareto is required")
    if args.top is not None and args.top < 1:
        ap.error(f"--top: must be >= 1, got {args.top}")
    try:  # a study that cannot be read is the user's input, not a bug
        fr = load(args.storage or args.run, args.study)
    except ValueError as exc:
        raise as_usage_error(exc) from None
    if args.format == "deepcave":
        return _main_deepcave(fr, args.out)
    out = Path(args.out) if args.out else (fr.run_dir or Path("runs") / fr.name) / "export"
    index = export_trials(fr, out, top=args.top, pareto=args.pareto, recipe=args.recipe, num_classes=args.num_classes,
                          resolution=args.resolution, data=args.data, keep_stem=args.keep_stem)
    for e in index:
        print(f"{e['file']}: trial {e['trial']} ({e['selected_by']}), proxy top-1 {e['proxy_top1']:.2f}, {e['attention']}")
    print(f"wrote {len(index)} configs and index.json, index.csv to {out}")
    return 0


def _main_deepcave(fr: Any, out_arg: str | None) -> int:
    """``--format deepcave``: every finished trial as a DeepCAVE run (:mod:`analysis._deepcave`)."""
    out = Path(out_arg) if out_arg else (fr.run_dir or Path("runs") / fr.name) / "deepcave"
    try:
        done = export_deepcave(fr, out)
    except ValueError as exc:
        raise as_usage_error(exc, build_parser()) from None
    statuses = ", ".join(f"{n} {s}" for s, n in done["status"].items())
    print(f"wrote {done['trials']} trials ({statuses}; {done['configurations']} configurations) and "
          f"{len(done['parameters'])} parameters ({len(done['conditions'])} conditional) to {out}: configspace.csv, trials.csv")
    for name, condition in done["conditions"].items():
        print(f"  {name}: {condition}")
    print(f"open it in DeepCAVE as a run of the 'DataFrame' kind: deepcave --open, then add {out.resolve()}")
    return 0
