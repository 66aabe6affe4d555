"""Full training of TrialConfigs: ``python -m study.train --config CONFIG.json``.

::

    python -m study.train --config CONFIG.json [--data DIR] [--epochs N] [--out DIR]
                          [--resume] [--device cpu|cuda]
    python -m study.train --config CONFIG.json --workers N [--gpus-per-worker G] [--cpus-per-worker C]
                          [--address ADDR] [--max-failures K] [--sync-bn] [--batch-per-worker B] [--stage-data] ...
    python -m study.train --batch runs/NAME/export/index.json [--workers N ...] [--out ROOT] [--resume]

Trains the config (the same JSON that studies store and ``analysis`` exports) with
:func:`study.trainer.train` and writes into ``--out`` (default
``runs/train/<backbone>-<attention>-<source><res>-s<seed>-<hash>/``, derived from the
config):

- ``config.json``: the effective config (after ``--data`` / ``--epochs`` /
  ``--batch-per-worker``);
- ``metrics.csv`` and ``metrics.json``: one row per epoch, rewritten after every epoch;
- ``checkpoint.pt``: model, optimizer, schedule, RNG and history after every epoch
  (written aside, then renamed);
- ``result.json``: outcome, final and best metrics, history, costs and stages (written last).

It prints one line per epoch and a summary. After an interruption, ``--resume`` continues
from the last checkpoint and ends with the same result as an uninterrupted run. Starting
into a folder that holds a checkpoint without ``--resume`` is refused. ``--data DIR``
trains on a cache made by ``python -m study.data prepare`` (``proxy.source = "cache"``),
with the cache's class count and, unless the config sets one, its resolution (as
``study.run --data``); an architecture for another class count is an error.

Without ``--workers`` the run is one process, as it always was. ``--workers N`` runs the same
trainer data-parallel on Ray Train (:func:`study.cluster.train_distributed`): on the Ray
cluster at ``--address``, or a local Ray started for the run. The config's
``recipe.batch_size`` is the global batch (each worker gets ``batch_size // N``, the
remainder is dropped and said) and the learning rate is the recipe's; ``--batch-per-worker
B`` instead fixes the per-worker batch, makes the global batch N x B and scales the peak lr
linearly (lr x N B / batch_size). Checkpoints are rank 0's, written into ``--out`` every
epoch; a worker that dies is restarted from the last one up to ``--max-failures`` times.
Every node that can run a worker must read the proxy cache at its path (checked first,
naming a node that cannot), or ``--stage-data`` ships it to each node's local disk.

``--batch INDEX`` trains every config of an export index, as many at once as the cluster
holds, each into ``ROOT/<config name>/`` (default ROOT: ``runs/NAME/train``), prints each
run's progress and a closing table; ``--resume`` leaves finished runs alone and continues
the others. An entry whose config is invalid fails with its reason; the others train.

Exit status: 0 when every run completed, 3 when one diverged or failed (the last line names
the first of them and why), 2 for bad input (nothing started, a damaged ``--data`` cache
included), 130 when interrupted, 1 for an internal error (a bug).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shlex
import sys
from argparse import ArgumentTypeError, Namespace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.cli import EXIT_FAILED, EXIT_INTERRUPTED, ArgumentParser, UsageError, as_usage_error, flag_names, run_cli
from study.cluster import (
    Scaling,
    TrainingFailed,
    absolute_data,
    batch_status,
    check_resources,
    cluster_nodes,
    format_table,
    init_ray,
    prepare_data,
    read_index,
    scale_recipe,
    train_batch,
    train_distributed,
)
from study.config import ConfigError, TrialConfig, load_config
from study.io import write_atomic
from study.metrics import MetricsWriter, TrialResult, write_result

if TYPE_CHECKING:
    from study.cluster import Scaling

__all__ = ["main", "build_parser", "derive_name", "DEFAULT_ROOT"]

PROG = "python -m study.train"
DEFAULT_ROOT = Path("runs") / "train"
#: flags that only mean something for a run on Ray (``--workers`` or ``--batch``)
RAY_FLAGS = ("address", "gpus_per_worker", "cpus_per_worker", "max_failures", "sync_bn", "batch_per_worker", "stage_data", "verbose")


def derive_name(config: TrialConfig) -> str:
    """``<backbone>-<attention>-<source><res>-s<seed>-<hash8>``, e.g.
    ``resnet18-eca-synthetic32-s0-1a2b3c4d``; the attention part is the one kind shared by
    every stage, or the per-stage kinds joined by dots; the hash covers the whole config."""
    kinds = [s.kind for s in config.arch.stages]
    attention = kinds[0] if len(set(kinds)) == 1 else ".".join(kinds)
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.arch.backbone}-{attention}-{config.proxy.source}{config.proxy.resolution}-s{config.seed}-{digest}"


def _number(lo: float, *, integer: bool = False) -> Callable[[str], float | int]:
    """An argparse type: a finite number (a whole one with ``integer``) of at least ``lo``."""

    def parse(text: str) -> float | int:
        try:
            v = float(text)
        except ValueError:
            raise ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}") from None
        if integer and v.is_integer():
            v = int(v)
        if not math.isfinite(v) or v < lo or (integer and not isinstance(v, int)):
            raise ArgumentTypeError(f"must be {'an integer ' if integer else 'a number '}>= {lo:g}, got {text}")
        return v

    return parse


def build_parser() -> ArgumentParser:
    """The flags of ``python -m study.train``."""
    p = ArgumentParser(prog=PROG, description="Train TrialConfigs to the end, with per-epoch metrics and checkpoints: "
                                              "in one process, data-parallel on Ray Train, or every config of an export index.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="CONFIG.json", help="a TrialConfig JSON file")
    what.add_argument("--batch", metavar="INDEX.json", help="train every config of an export index (python -m analysis.export)")
    p.add_argument("--data", metavar="DIR",
                   help="a proxy cache folder made by `python -m study.data prepare` (sets proxy.source to 'cache')")
    p.add_argument("--epochs", type=int, metavar="N", help="override recipe.epochs")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default {DEFAULT_ROOT}/<name derived from the config>); "
                                                "with --batch the folder of the runs' folders (default: train/ beside the export folder)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out; with --batch, skip finished runs")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    g = p.add_argument_group("data-parallel on Ray Train")
    g.add_argument("--workers", type=_number(1, integer=True), metavar="N",
                   help="train on N Ray Train workers (DDP; default with --batch: 1)")
    g.add_argument("--gpus-per-worker", type=_number(0, integer=True), metavar="G",
                   help="GPUs per worker, 0 (gloo on CPUs) or 1 (NCCL) (default: 1 when the Ray cluster has GPUs and --device is not cpu)")
    g.add_argument("--cpus-per-worker", type=_number(0), metavar="C", help="CPUs per worker, also its torch threads (default 1)")
    g.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: a local Ray started for the run)")
    g.add_argument("--max-failures", type=_number(0, integer=True), metavar="K",
                   help="restarts of the workers from the last checkpoint after one died (default 1)")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm: batch statistics over the global batch (GPUs only)")
    g.add_argument("--batch-per-worker", type=_number(1, integer=True), metavar="B",
                   help="B images per worker and step: global batch N x B, peak lr scaled by N B / recipe.batch_size")
    g.add_argument("--stage-data", action="store_true", help="ship the proxy cache to every node's local disk through Ray's object store")
    g.add_argument("--verbose", action="store_true", help="also Ray's own lines: its start-up, its warnings, the workers' output")
    return p


def _usage(exc: BaseException) -> UsageError:
    """A library error about the input in this command's words (a config error's field as its flag)."""
    return as_usage_error(exc, build_parser())


def _set_in_file(path: str, section: str) -> set[str]:
    """The keys that the config file ``path`` itself sets in ``section`` (the others took
    their defaults); the file has been read as a TrialConfig already."""
    part = json.loads(Path(path).read_text()).get(section)
    return set(part) if isinstance(part, dict) else set()


def _on_cache(config: TrialConfig, data: str, *, keep_resolution: bool) -> TrialConfig:
    """``config`` reading the cache ``data`` (``--data``): its class count and, unless
    ``keep_resolution``, its resolution come from the cache (as with ``study.run --data``);
    an architecture for another class count is a contradiction."""
    from study.data import cache_proxy

    if not Path(data).is_dir():
        raise UsageError(f"--data: {data} is not a folder")
    try:
        proxy = cache_proxy(data, config.proxy, keep=("resolution",) if keep_resolution else ())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data: {' '.join(str(exc).split())}") from None
    if config.arch.num_classes != proxy.num_classes:
        raise UsageError(f"--data: the cache {data} holds {proxy.num_classes} classes, but the config's architecture "
                         f"has num_classes {config.arch.num_classes}")
    return config.replace(proxy=proxy)


def _effective(config: TrialConfig, args: Namespace, *, absolute: bool, keep_resolution: bool = True) -> TrialConfig:
    """The config after --data (``keep_resolution``: the config sets its own; an exported
    one always does), --epochs (and, on Ray, --batch-per-worker; a relative cache folder
    made absolute: the workers run elsewhere)."""
    if args.data is not None:
        config = _on_cache(config, args.data, keep_resolution=keep_resolution)
    if args.epochs is not None:
        try:
            config = config.replace(recipe=dataclasses.replace(config.recipe, epochs=args.epochs))
        except ConfigError as exc:
            raise UsageError(f"--epochs: {exc}") from None
    if absolute:
        config = absolute_data(config)
        if args.batch_per_worker is not None:
            try:
                config = config.replace(recipe=scale_recipe(config.recipe, args.workers or 1, args.batch_per_worker))
            except ValueError as exc:
                raise _usage(exc) from None
    return config


def _summary(result: TrialResult, epochs: int) -> str:
    best, final = result.best, result.final
    line = f"{result.outcome}: {result.epochs_run} of {epochs} epochs"
    if final is not None:
        line += f"; final top1 {final.top1:.2f} top5 {final.top5:.2f}"
    if best is not None:
        line += f"; best top1 {best.top1:.2f} at epoch {best.epoch}"
    if result.message:
        line += f" ({result.message})"
    return line


def _resume_point(out: Path, config: TrialConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint in ``out`` the run continues (None: none): :func:`study.trainer.resume_point`,
    in this command's words (one without ``--resume``, or of another config, is refused)."""
    from study.trainer import resume_point  # torch: only when a run starts

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    try:
        return resume_point(out if out.is_dir() else None, config, resume=resume, field="out")
    except ValueError as exc:
        raise _usage(exc) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_ray = args.workers is not None or args.batch is not None
    if not on_ray:
        say = flag_names(build_parser())
        given = [say(k) for k in RAY_FLAGS if getattr(args, k) not in (None, False)]
        if given:
            raise UsageError(f"{given[0]}: needs --workers (or --batch); without them the run is one process")
    if args.batch is not None:
        return _main_batch(args)
    config = _effective(load_config(args.config), args, absolute=on_ray, keep_resolution="resolution" in _set_in_file(args.config, "proxy"))
    if on_ray:
        return _main_ray(args, config)
    return _main_local(args, config)


def _main_local(args: Namespace, config: TrialConfig) -> int:
    """Train ``config`` in this process into ``--out`` (a checkpoint every epoch); the exit
    status."""
    from study.costs import resolve_device
    from study.trainer import checked_data, train

    try:
        resolve_device(args.device)
    except ValueError:  # the choices are cpu and cuda: only CUDA can be missing
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine") from None
    out = Path(args.out) if args.out else DEFAULT_ROOT / derive_name(config)
    state = _resume_point(out, config, args.resume)  # a checkpoint of another config is said before training
    if args.resume and state is None:
        print(f"no checkpoint in {out}; starting from epoch 1")

    from study.data import load_proxy

    data = load_proxy(config.proxy)  # bad data fails here, before anything is written
    try:  # as does a config the trainer refuses (its classes, its resolution, its architecture there)
        checked_data(config, data)
    except ValueError as exc:
        raise _usage(exc) from None
    out.mkdir(parents=True, exist_ok=True)
    if state is None:  # a resumed run keeps its config.json until train() has checked the config
        write_atomic(out / "config.json", config.to_json() + "\n")
    del state
    print(f"training {config.arch.backbone} ({', '.join(s.kind for s in config.arch.stages)}) "
          f"on {config.proxy.source} {config.proxy.resolution}px for {config.recipe.epochs} epochs -> {out}")
    result = train(config, MetricsWriter(out), device=args.device, data=data, checkpoint_dir=out, resume=args.resume, log=print)
    return _write_finished(out, result, config)


# ----------------------------------------------------------------------------- on Ray


def _scaling(args: Namespace) -> Scaling:
    """The run's :class:`study.cluster.Scaling`, after connecting (the default GPUs per
    worker depend on the cluster)."""
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1 if args.device != "cpu" and any(n.gpus >= 1 for n in cluster_nodes()) else 0
    if args.device == "cpu" and gpus:
        raise UsageError("--gpus-per-worker: --device cpu trains on CPUs; drop one of them")
    if args.device == "cuda" and not gpus:
        raise UsageError("--device cuda: the workers need GPUs: give --gpus-per-worker 1 (a node with a GPU)")
    try:
        return Scaling(workers=args.workers or 1, cpus_per_worker=1.0 if args.cpus_per_worker is None else args.cpus_per_worker,
                       gpus_per_worker=gpus, sync_bn=args.sync_bn,
                       max_failures=1 if args.max_failures is None else args.max_failures, stage_data=args.stage_data)
    except ValueError as exc:
        raise _usage(exc) from None


def _connect(args: Namespace) -> Scaling:
    try:
        init_ray(args.address, verbose=args.verbose)
    except ValueError as exc:
        raise _usage(exc) from None
    scaling = _scaling(args)
    try:
        check_resources(scaling)
    except ValueError as exc:
        raise _usage(exc) from None
    return scaling


def _resume_command(argv_hint: str) -> str:
    return f"{PROG} {argv_hint} --resume"


def _main_ray(args: Namespace, config: TrialConfig) -> int:
    out = (Path(args.out) if args.out else DEFAULT_ROOT / derive_name(config)).resolve()
    state = _resume_point(out, config, args.resume)
    if state is not None and state.get("outcome"):  # finished: its result, no workers needed
        from study.trainer import finished_result

        print(f"checkpoint in {out} is finished ({state['outcome']} after epoch {state['epoch']})")
        return _write_finished(out, finished_result(state, config), config)
    if args.resume and state is None:
        print(f"no checkpoint in {out}; starting from epoch 1")
    from study.trainer import per_worker_batch

    try:
        per_worker_batch(config.recipe.batch_size, args.workers)
    except ValueError as exc:
        raise _usage(exc) from None
    scaling = _connect(args)
    try:
        staged = prepare_data(config, scaling, log=print)
    except ValueError as exc:
        raise _usage(exc) from None
    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        write_atomic(out / "config.json", config.to_json() + "\n")
    print(f"training {config.arch.backbone} ({', '.join(s.kind for s in config.arch.stages)}) on {config.proxy.source} "
          f"{config.proxy.resolution}px for {config.recipe.epochs} epochs on {scaling.workers} Ray Train worker(s) "
          f"({scaling.cpus_per_worker:g} CPU" + (f" + {scaling.gpus_per_worker} GPU" if scaling.gpus_per_worker else "")
          + f" each) -> {out}", flush=True)
    try:
        result = train_distributed(config, out, scaling=scaling, resume=True, log=lambda line: print(line, flush=True),
                                   staged=staged, check=False)
    except TrainingFailed as exc:
        print(f"{PROG}: failed: {' '.join(str(exc).split())}", file=sys.stderr)
        print(f"the last checkpoint is in {out}; continue with: {_resume_command(_hint(args, out))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the last checkpoint is in {out}; continue with: {_resume_command(_hint(args, out))}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return _write_finished(out, result, config)


def _write_finished(out: Path, result: TrialResult, config: TrialConfig) -> int:
    """Write a finished run's ``result.json`` (and metrics) into ``out``, print its summary;
    the exit status: :data:`~study.cli.EXIT_FAILED` when it diverged (said on the last line), else 0."""
    write_result(out, result)
    print(_summary(result, config.recipe.epochs))
    print(f"written to {out}")
    if result.outcome == "diverged":
        sys.stdout.flush()
        print(f"{PROG}: the run diverged: {result.message or 'the loss became NaN or inf'} (exit status {EXIT_FAILED})",
              file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


def _hint(args: Namespace, out: Path | None) -> str:
    """The command line that continues this run (without --resume)."""
    parts = ["--batch", args.batch] if args.batch else ["--config", args.config]
    for flag, value in (("--data", args.data), ("--epochs", args.epochs), ("--workers", args.workers),
                        ("--gpus-per-worker", args.gpus_per_worker), ("--cpus-per-worker", args.cpus_per_worker),
                        ("--address", args.address), ("--max-failures", args.max_failures),
                        ("--batch-per-worker", args.batch_per_worker)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [f for f, on in (("--sync-bn", args.sync_bn), ("--stage-data", args.stage_data)) if on]
    if out is not None or args.out:
        parts += ["--out", str(args.out or out)]
    return shlex.join(parts)


# ----------------------------------------------------------------------------- --batch


def _main_batch(args: Namespace) -> int:
    if args.data is not None and not Path(args.data).is_dir():
        raise UsageError(f"--data: {args.data} is not a folder")
    try:
        entries = read_index(args.batch, out_root=args.out)
    except ValueError as exc:
        raise _usage(exc) from None
    from study.trainer import per_worker_batch

    resolved = []
    for e in entries:
        if e.config is not None:
            try:
                e = dataclasses.replace(e, config=_effective(e.config, args, absolute=True))
                per_worker_batch(e.config.recipe.batch_size, args.workers or 1)
            except (UsageError, ValueError) as exc:
                e = dataclasses.replace(e, config=None, error=str(_usage(exc)) if isinstance(exc, ValueError) else str(exc))
        resolved.append(e)
    entries = resolved
    if all(e.config is None for e in entries):
        raise UsageError(f"--batch: no config of {args.batch} can train: {entries[0].name}: {entries[0].error}")
    scaling = _connect(args)
    print(f"batch {args.batch}: {len(entries)} configs, {scaling.workers} Ray Train worker(s) each -> "
          f"{entries[0].out.parent}", flush=True)
    try:
        outcomes = train_batch(entries, scaling=scaling, resume=args.resume, log=lambda line: print(line, flush=True),
                               write=write_result)
    except ValueError as exc:
        raise _usage(exc) from None
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished runs are kept, the others keep their last checkpoint; continue with: "
              f"{_resume_command(_hint(args, None))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    say = flag_names(build_parser())
    for o in outcomes:  # a config error's field (data, not text) as this command's flag
        if o.error is not None:
            o.reason = " ".join(o.error.text(say).split())
    print()
    print(format_table(outcomes))
    statuses = [o.status for o in outcomes]
    print(", ".join(f"{statuses.count(s)} {s}" for s in ("complete", "skipped", "diverged", "stopped", "failed") if s in statuses))
    status, why = batch_status(outcomes)
    if why:
        sys.stdout.flush()
        print(f"{PROG}: {why} (exit status {status})", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    run_cli(main, prog=PROG)
