"""Every GPU path of the harness in one command, a line per path with its figure; ``--cpu``
rehearses the same code paths on the CPU.

    python benchmarks/gpu_check.py                  # a CUDA machine: every GPU path, under 5 minutes
    python benchmarks/gpu_check.py --cpu            # the same code paths on the CPU, under 5 minutes
    python benchmarks/gpu_check.py --cpu --quick    # the smallest sizes, seconds (what the tests run)
    python benchmarks/gpu_check.py --only trainer,loader

The paths (``--only`` takes their names) reuse the harness's pieces and the benchmarks that
measure them:

- ``trainer``: ``study.trainer.train`` against the bare loop of ``trainer_overhead.py`` (the
  same batches, model and optimizer, run in lockstep), training images/s with bf16 autocast and
  channels_last (``recipe.amp = recipe.channels_last = true``), ResNet-18 and ResNet-50 at 64
  and 224 px; epochs timed with CUDA events on a GPU. CPU: width 0.25 at 32 and 64 px (bf16
  autocast on the CPU, channels_last).
- ``attention``: training step times (forward, backward, SGD step) of none, SE and ECA in
  every stage (``attention_overhead.py``'s interleaved rounds), bf16 autocast and
  channels_last, eager and - on a GPU - under ``torch.compile`` (goal: ECA <= 5 % over none).
- ``loader``: ``study.data.DeviceLoader`` with the split on the device and streamed from host
  memory (two staging buffers, pinned on CUDA, copies on a side stream), its batches/s
  against the model's (``loader_throughput.py``); the host-streamed batches are checked
  identical to the device-resident ones.
- ``compile``: ``recipe.compile`` (``torch.compile`` of the trainer's model): images/s
  compiled over eager, after the first epoch (which compiles).
- ``ray``: ``study.cluster.train_distributed`` on Ray Train (a local Ray, or ``--address``):
  one worker with one GPU (NCCL); on the CPU two workers on gloo, their final weights checked
  identical (DistributedDataParallel).

Every path prints ``ok    NAME  figures`` or ``FAIL  NAME: error`` and the next path runs;
the exit status is 1 when a path failed, 2 for bad input (no CUDA without ``--cpu``).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling benchmarks (and attention_overhead's _attention_bench)
    sys.path.append(str(HERE))

import attention_overhead
import loader_throughput
import trainer_overhead
from _results import write_result

from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.data import DeviceLoader, load_proxy
from study.trainer import train

PATHS = ("trainer", "attention", "loader", "compile", "ray")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each path runs: on a GPU, in the CPU rehearsal, and ``--quick``."""

    width: float
    trainer: tuple[tuple[str, int], ...]  # (backbone, resolution)
    classes: int
    per_class: dict[int, int]  # resolution -> training images per class
    batch: dict[int, int]  # resolution -> batch size
    epochs: int  # per trainer run; the first is warm-up (compiling with recipe.compile)
    attention: tuple[tuple[str, int], ...]
    attention_batch: dict[int, int]
    repeats: int
    loader_res: int
    rounds: int
    compile_res: int
    compile_epochs: int
    ray_res: int
    ray_epochs: int


GPU = Sizes(width=1.0, trainer=(("resnet18", 64), ("resnet18", 224), ("resnet50", 64), ("resnet50", 224)),
            classes=20, per_class={64: 200, 224: 64}, batch={64: 256, 224: 128}, epochs=5,
            attention=(("resnet18", 64), ("resnet50", 224)), attention_batch={64: 256, 224: 64}, repeats=10,
            loader_res=224, rounds=5, compile_res=64, compile_epochs=4, ray_res=64, ray_epochs=3)
CPU = Sizes(width=0.25, trainer=(("resnet18", 32), ("resnet18", 64), ("resnet50", 32), ("resnet50", 64)),
            classes=8, per_class={32: 16, 64: 4}, batch={32: 32, 64: 16}, epochs=3,
            attention=(("resnet18", 32), ("resnet50", 32)), attention_batch={32: 8}, repeats=5,
            loader_res=64, rounds=3, compile_res=32, compile_epochs=2, ray_res=32, ray_epochs=2)
QUICK = Sizes(width=0.25, trainer=(("resnet18", 16), ("resnet50", 16)),
              classes=4, per_class={16: 8}, batch={16: 16}, epochs=2,
              attention=(("resnet18", 16),), attention_batch={16: 8}, repeats=2,
              loader_res=16, rounds=2, compile_res=16, compile_epochs=2, ray_res=16, ray_epochs=1)


def stem_for(res: int) -> str:
    """The harness's stems: ``lowres`` for the 32-64 px proxies, ``imagenet`` from 128 px."""
    return "lowres" if res < 128 else "imagenet"


class Check:
    """The run's settings and its shared pieces: data per resolution, loaded once."""

    def __init__(self, device: torch.device, sizes: Sizes, address: str | None):
        self.device, self.sizes, self.address = device, sizes, address
        self._data: dict[int, object] = {}

    def data(self, res: int):
        if res not in self._data:
            s = self.sizes
            self._data[res] = load_proxy(ProxySpec(num_classes=s.classes, resolution=res, images_per_class=s.per_class.get(res, 8),
                                                   val_per_class=2))
        return self._data[res]

    def config(self, backbone: str, res: int, *, epochs: int | None = None, **recipe) -> TrialConfig:
        s = self.sizes
        return TrialConfig(
            arch=ArchSpec.uniform(backbone, "eca", stem=stem_for(res), width=s.width, num_classes=s.classes),
            recipe=Recipe(epochs=epochs or s.epochs, batch_size=s.batch.get(res, 16), lr=0.1, warmup_epochs=0.0,
                          amp=True, channels_last=True, **recipe),
            proxy=ProxySpec(num_classes=s.classes, resolution=res, images_per_class=s.per_class.get(res, 8), val_per_class=2),
        )

    # ---- the paths: each gives its lines as (name, a function measuring its figures) ----------

    def trainer(self) -> list[tuple[str, Callable[[], str]]]:
        return [(f"trainer {b} {r}px", partial(self._trainer_vs_bare, b, r)) for b, r in self.sizes.trainer]

    def _trainer_vs_bare(self, backbone: str, res: int) -> str:
        config, data = self.config(backbone, res), self.data(res)
        paired = trainer_overhead.Paired(trainer_overhead.bare_epochs(config, data, self.device))
        result = train(config, paired, device=self.device, data=data)
        _complete(result)
        pairs = paired.pairs[1:] or paired.pairs  # the first epoch is warm-up for both
        t, b = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[0] / p[1] for p in pairs)
        return (f"trainer {t:,.0f} img/s, bare loop {b:,.0f} img/s, ratio {ratio:.3f} (target >= 0.97; bf16 autocast, channels_last, "
                f"{stem_for(res)} stem, width {self.sizes.width:g}, batch {config.recipe.batch_size}, median of {len(pairs)} epochs)")

    def attention(self) -> list[tuple[str, Callable[[], str]]]:
        return [(f"attention {b} {r}px", partial(self._attention_steps, b, r)) for b, r in self.sizes.attention]

    def _attention_steps(self, backbone: str, res: int) -> str:
        batch = self.sizes.attention_batch[res]
        compiled = self.device.type == "cuda"  # the configuration a GPU user runs: compiled too (the CPU rehearsal stays eager)
        args = argparse.Namespace(device=str(self.device), kinds=["se", "eca"], lean="auto", clock="wall", backbones=[backbone],
                                  res=[res], batch=batch, batch_large=batch, stem=stem_for(res), width=self.sizes.width,
                                  num_classes=1000, channels_last=True, isolate=False, amp=True, warmup=2,
                                  repeats=self.sizes.repeats, optimizer=True, compile="both" if compiled else "off")
        measured = attention_overhead.run(args)
        parts = []
        for form in ((False, True) if compiled else (False,)):
            rows = {r["kind"]: r for r in measured if r["compiled"] == form}
            if set(rows) != {"none", "se", "eca"}:
                raise RuntimeError(f"measured {', '.join(rows) or 'nothing'}, expected none, se and eca")
            what = "compiled: " if form else ("eager: " if compiled else "")
            parts.append(what + ", ".join([f"none {rows['none']['ms']:.2f} ms"]
                                         + [f"{k} {rows[k]['ms']:.2f} ms (x{rows[k]['time_ratio']:.3f})" for k in ("se", "eca")]))
        return ("; ".join(parts) + f" per training step (forward, backward, SGD step; batch {batch}, bf16 autocast, channels_last, "
                f"median of {self.sizes.repeats} interleaved rounds; goal: eca <= x1.05)")

    def loader(self) -> list[tuple[str, Callable[[], str]]]:
        res = self.sizes.loader_res
        return [(f"loader {p} {res}px", partial(self._loader, p, res)) for p in ("device", "host")]

    def _loader(self, placement: str, res: int) -> str:
        data, batch = self.data(res), self.sizes.batch.get(res, 16)
        argv = ["--device", str(self.device), "--placement", placement, "--batch-size", str(batch), "--rounds", str(self.sizes.rounds),
                "--backbone", "resnet50" if self.device.type == "cuda" else "resnet18", "--width", f"{self.sizes.width:g}",
                "--stem", stem_for(res)]
        r = loader_throughput.measure(loader_throughput.parser().parse_args(argv), data)
        if r["placement"] != placement:
            raise RuntimeError(f"the loader chose placement {r['placement']!r}, not {placement!r}")
        line = (f"loader {r['loader_batches_per_s']:,.1f} batches/s ({r['loader_batches_per_s'] * batch:,.0f} img/s), "
                f"model ({r['model']}) {r['model_batches_per_s']:,.2f} batches/s: ratio {r['ratio']:.1f}x (target >= {r['target']:g}x)")
        if placement == "host":
            n = _same_batches(data, self.device, batch)
            pinned = "pinned " if self.device.type == "cuda" else ""
            line += f"; streamed through 2 {pinned}staging buffers, {n} batches identical to the device placement's"
        return line

    def compile(self) -> list[tuple[str, Callable[[], str]]]:
        res = self.sizes.compile_res
        return [(f"compile resnet18 {res}px", partial(self._compile, res))]

    def _compile(self, res: int) -> str:
        config, data = self.config("resnet18", res, epochs=self.sizes.compile_epochs), self.data(res)
        eager = _complete(train(config, device=self.device, data=data))
        compiled = _complete(train(config.replace(recipe=dataclasses.replace(config.recipe, compile=True)), device=self.device, data=data))
        e, c = _rate(eager), _rate(compiled)
        first = compiled.history[0].epoch_time_s
        return (f"eager {e:,.0f} img/s, compiled {c:,.0f} img/s: speed-up {c / e:.2f}x after the first epoch "
                f"(which compiles: {first:.1f} s; bf16 autocast, channels_last, batch {config.recipe.batch_size})")

    def ray(self) -> list[tuple[str, Callable[[], str]]]:
        return [("ray-train 1 GPU nccl" if self.device.type == "cuda" else "ray-train 2 workers gloo", self._ray)]

    def _ray(self) -> str:
        from study.cluster import Scaling, init_ray, train_distributed

        cuda = self.device.type == "cuda"
        init_ray(self.address)
        scaling = (Scaling(workers=1, cpus_per_worker=4, gpus_per_worker=1, max_failures=0) if cuda
                   else Scaling(workers=2, cpus_per_worker=1, gpus_per_worker=0, max_failures=0))
        config = self.config("resnet18", self.sizes.ray_res, epochs=self.sizes.ray_epochs)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            result = _complete(train_distributed(config, Path(tmp) / "run", scaling=scaling, log=None))
        wall = time.monotonic() - started
        digests = result.extra["distributed"]["rank_digests"]
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks ended with different weights: {', '.join(digests)}")
        ranks = f"{len(digests)} ranks, identical weights" if len(digests) > 1 else "1 rank"
        return (f"{_rate(result):,.0f} img/s ({ranks}; DistributedDataParallel on {'NCCL' if cuda else 'gloo'}, bf16 autocast, "
                f"channels_last, {len(result.history)} epochs; the run took {wall:.1f} s with Ray Train's start-up)")


def _complete(result):
    if result.outcome != "complete":
        raise RuntimeError(f"the run ended {result.outcome}: {result.message}")
    return result


def _rate(result) -> float:
    """Median training images/s over the epochs after the first (all of them if only one)."""
    epochs = result.history[1:] or result.history
    return statistics.median(m.images_per_s for m in epochs)


def _same_batches(data, device: torch.device, batch: int) -> int:
    """One training epoch of the split streamed from host memory against the same split on
    the device, channels-last as the trainer asks: the count of batches, all identical."""
    common = {"batch_size": batch, "device": device, "train": True, "seed": 0, "augment": "crop_flip", "memory_format": torch.channels_last}
    resident = DeviceLoader(data.train, placement="device", **common)
    streamed = DeviceLoader(data.train, placement="host", **common)
    n = 0
    for (xa, ya), (xb, yb) in zip(resident, streamed, strict=True):
        if not (torch.equal(xa, xb) and torch.equal(ya, yb)):
            raise RuntimeError(f"batch {n} streamed from host memory differs from the device placement's")
        n += 1
    return n


def run(device: torch.device, sizes: Sizes, paths: tuple[str, ...], *, address: str | None = None,
        say: Callable[[str], None] = print) -> list[tuple[str, str | None, str]]:
    """Run ``paths`` in order; per line ``(name, None, figures)`` or ``(name, error, "")``.
    A failing path's error is printed and the next path runs."""
    check = Check(device, sizes, address)
    out = []
    for path in paths:
        for name, measure in getattr(check, path)():
            t0 = time.perf_counter()
            try:
                figures = measure()
            except Exception as exc:
                error = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
                say(f"FAIL  {name}: {error}")
                out.append((name, error, ""))
            else:
                say(f"ok    {name}  {figures}  [{time.perf_counter() - t0:.1f} s]")
                out.append((name, None, figures))
            sys.stdout.flush()
    return out


def _paths(text: str | None) -> tuple[str, ...]:
    if not text:
        return PATHS
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in PATHS]
    if unknown or not names:
        raise ValueError(f"--only: unknown path {unknown[0] if unknown else text!r} (valid: {', '.join(PATHS)})")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"paths: {', '.join(PATHS)}")
    p.add_argument("--cpu", action="store_true", help="rehearse the paths on the CPU (bf16 autocast, channels_last, torch.compile, "
                                                       "the host-streaming loader, DDP on gloo)")
    p.add_argument("--quick", action="store_true", help="the smallest sizes (seconds a path); for tests")
    p.add_argument("--only", metavar="PATH[,PATH]", help=f"run only these paths, in this order (default: {','.join(PATHS)})")
    p.add_argument("--address", help="the Ray cluster for the ray path (default: a local Ray started for it)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default with --cpu: 1 - on a shared machine two OpenMP threads "
                                               "waiting for a busy core made the rehearsal 3-10x slower; else torch's choice)")
    args = p.parse_args(argv)
    try:
        paths = _paths(args.only)
    except ValueError as exc:
        p.error(str(exc))
    if not args.cpu and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU machine, or with --cpu to rehearse the same paths on the CPU")
    threads = 1 if args.threads is None and args.cpu else args.threads
    if threads is not None:
        if threads < 1:
            p.error(f"--threads: must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    device = torch.device("cpu" if args.cpu else "cuda")
    sizes = QUICK if args.quick else (CPU if args.cpu else GPU)
    if device.type == "cuda":
        bf16 = "supported" if torch.cuda.is_bf16_supported() else "NOT supported"
        name = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, bf16 {bf16}"
    else:
        name = (f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} thread(s), "
                f"{torch.backends.cpu.get_cpu_capability()}")
    what = "quick" if args.quick else ("CPU" if args.cpu else "GPU")
    note = "; a rehearsal: CPU figures show that the paths run, not what a GPU does" if args.cpu else ""
    print(f"gpu_check on {name}; torch {torch.__version__}; {what} sizes; paths {', '.join(paths)}{note}", flush=True)
    started = time.perf_counter()
    results = run(device, sizes, paths, address=args.address)
    failed = [n for n, e, _ in results if e is not None]
    print(f"gpu_check: {len(results)} lines, {len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}; "
          f"{time.perf_counter() - started:.0f} s in all")
    if not args.quick:  # a full run is a result (--quick is what the tests run)
        write_result("gpu_check_cpu" if args.cpu else "gpu_check",
                     goal="every GPU path runs (" + ("rehearsed on the CPU" if args.cpu else name) + "), a line each with its figure",
                     headline={"paths": f"{len(results) - len(failed)} of {len(results)} ok"
                                        + (f" (failed: {', '.join(failed)})" if failed else ""),
                               "seconds": round(time.perf_counter() - started)},
                     detail={"device": name, "lines": [{"path": n, "error": e, "figures": f} for n, e, f in results]})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
