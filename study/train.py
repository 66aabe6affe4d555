"""Full training of one TrialConfig: ``python -m study.train --config CONFIG.json``.

::

    python -m study.train --config CONFIG.json [--data DIR] [--epochs N] [--out DIR]
                          [--resume] [--device cpu|cuda]

Trains the config (the same JSON that studies store and ``analysis`` exports) with
:func:`study.trainer.train` and writes into ``--out`` (default
``runs/train/<backbone>-<attention>-<source><res>-s<seed>-<hash>/``, derived from the
config):

- ``config.json``: the effective config (after ``--data`` / ``--epochs``);
- ``metrics.csv`` and ``metrics.json``: one row per epoch, rewritten after every epoch;
- ``checkpoint.pt``: model, optimizer, schedule, RNG and history after every epoch
  (written aside, then renamed);
- ``result.json``: outcome, final and best metrics, history, costs and stages.

It prints one line per epoch and a summary. After an interruption, ``--resume`` continues
from the last checkpoint and ends with the same result as an uninterrupted run. Starting
into a folder that holds a checkpoint without ``--resume`` is refused. ``--data DIR``
trains on a cache made by ``python -m study.data prepare`` (``proxy.source = "cache"``).

Exit status: 0 when the run completed, 1 when it diverged, 2 for bad input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from study._cli import ArgumentParser, UsageError, run_cli
from study._io import write_atomic, write_json
from study.config import ConfigError, TrialConfig, load_config
from study.metrics import MetricsWriter, write_metrics

__all__ = ["main", "derive_name", "DEFAULT_ROOT"]

PROG = "python -m study.train"
DEFAULT_ROOT = Path("runs") / "train"


def derive_name(config: TrialConfig) -> str:
    """``<backbone>-<attention>-<source><res>-s<seed>-<hash8>``, e.g.
    ``resnet18-eca-synthetic32-s0-1a2b3c4d``; the attention part is the one kind shared by
    every stage, or the per-stage kinds joined by dots; the hash covers the whole config."""
    kinds = [s.kind for s in config.arch.stages]
    attention = kinds[0] if len(set(kinds)) == 1 else ".".join(kinds)
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.arch.backbone}-{attention}-{config.proxy.source}{config.proxy.resolution}-s{config.seed}-{digest}"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Train one TrialConfig to the end, with per-epoch metrics and checkpoints.")
    p.add_argument("--config", required=True, metavar="CONFIG.json", help="a TrialConfig JSON file")
    p.add_argument("--data", metavar="DIR", help="a proxy cache folder made by `python -m study.data prepare` (sets proxy.source to 'cache')")
    p.add_argument("--epochs", type=int, metavar="N", help="override recipe.epochs")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default {DEFAULT_ROOT}/<name derived from the config>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = load_config(args.config)
    if args.data is not None:
        if not Path(args.data).is_dir():
            raise UsageError(f"--data: {args.data} is not a folder")
        config = config.replace(proxy=dataclasses.replace(config.proxy, source="cache", data=str(args.data)))
    if args.epochs is not None:
        try:
            config = config.replace(recipe=dataclasses.replace(config.recipe, epochs=args.epochs))
        except ConfigError as exc:
            raise UsageError(f"--epochs: {exc}") from None

    from study.costs import resolve_device
    from study.trainer import read_checkpoint, train

    try:
        resolve_device(args.device)
    except ValueError:  # the choices are cpu and cuda: only CUDA can be missing
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine") from None
    out = Path(args.out) if args.out else DEFAULT_ROOT / derive_name(config)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    state = read_checkpoint(out) if out.is_dir() else None
    if state is not None and not args.resume:
        raise UsageError(f"--out: {out} already holds a checkpoint (epoch {state['epoch']} of "
                         f"{state['config']['recipe']['epochs']}); pass --resume to continue it or choose another --out")
    if args.resume and state is None:
        print(f"no checkpoint in {out}; starting from epoch 1")

    from study.data import load_proxy

    data = load_proxy(config.proxy)  # bad data fails here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if state is None:  # a resumed run keeps its config.json until train() has checked the config
        write_atomic(out / "config.json", config.to_json() + "\n")
    del state
    print(f"training {config.arch.backbone} ({', '.join(s.kind for s in config.arch.stages)}) "
          f"on {config.proxy.source} {config.proxy.resolution}px for {config.recipe.epochs} epochs -> {out}")
    result = train(config, MetricsWriter(out), device=args.device, data=data, checkpoint_dir=out, resume=args.resume, log=print)
    write_atomic(out / "config.json", config.to_json() + "\n")
    write_metrics(out, [m.to_dict() for m in result.history])
    write_json(out / "result.json", result.to_dict())

    best, final = result.best, result.final
    line = f"{result.outcome}: {result.epochs_run} of {config.recipe.epochs} epochs"
    if final is not None:
        line += f"; final top1 {final.top1:.2f} top5 {final.top5:.2f}"
    if best is not None:
        line += f"; best top1 {best.top1:.2f} at epoch {best.epoch}"
    if result.message:
        line += f" ({result.message})"
    print(line)
    print(f"written to {out}")
    return 1 if result.outcome == "diverged" else 0


if __name__ == "__main__":
    run_cli(main, prog=PROG)
