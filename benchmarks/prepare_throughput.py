"""Benchmark: ``study.data.prepare``'s decoding throughput on threads against process pools.

Writes an image folder with Pillow in a temporary directory (``--classes`` x
``--train-per-class`` JPEGs of ``--size`` pixels, plus a val/ a tenth that size), then
runs the whole ``prepare`` (scan, decode, resize, write, checksums, manifest) into a fresh
cache at ``--res`` px with ``--workers`` decoding workers, once per variant per round:

- ``fork pool``: prepare's decoding as it was before, a ``multiprocessing`` fork-context
  pool (``imap_unordered`` over the chunks, SIGINT ignored in the workers); the baseline;
- ``spawn pool`` and ``forkserver pool``: the same pool with the safe start methods;
- ``threads``: prepare as it is, decoding on a thread pool in this process (Pillow
  releases the GIL while it decodes and resizes).

The process-pool variants are handed to ``prepare`` as its ``decode`` (the default is
``study.data.decode_parallel``, threads); everything else is the same code. Variants are
interleaved in each of ``--rounds`` rounds, so background load hits all of them; the figure is
each variant's median images/s as a ratio of the fork pool's.

    python benchmarks/prepare_throughput.py                   # ~3 min on 2 cores
    python benchmarks/prepare_throughput.py --res 64 --size 500x375 --workers 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _images import write_folder  # benchmarks/ is sys.path[0] when a script here runs
from _results import write_result

from study.data import decode_chunk, decode_parallel, prepare


def _ignore_sigint() -> None:
    """The old pool's initializer: Ctrl-C interrupts the parent, not every worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_pool(method: str):
    """prepare's decoding seam as a process pool of start method ``method`` (the code it had)."""

    def decode(tasks, workers):
        with mp.get_context(method).Pool(workers, initializer=_ignore_sigint) as pool:
            yield from pool.imap_unordered(decode_chunk, tasks)

    return decode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--size", default="500x375", help="WxH of the generated JPEGs (ImageNet's typical size)")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding threads or processes")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size: expected WxH, got {args.size!r}")
    if args.workers < 2:
        p.error("--workers: must be at least 2 (with 1, prepare decodes in the calling thread, no pool)")
    if args.rounds < 1 or args.classes < 1 or args.train_per_class < 1:
        p.error("--rounds, --classes and --train-per-class must be >= 1")

    threads = decode_parallel
    variants = {"fork pool": _process_pool("fork"), "spawn pool": _process_pool("spawn"),
                "forkserver pool": _process_pool("forkserver"), "threads": threads}
    variants = {k: v for k, v in variants.items() if k == "threads" or k.split()[0] in mp.get_all_start_methods()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory(prefix="prepare_throughput_") as tmp:
        root = Path(tmp) / "folder"
        n = write_folder(root, classes=args.classes, train=args.train_per_class, val=max(1, args.train_per_class // 10), size=(w, h))
        out = Path(tmp) / "cache"
        sums = set()
        for r in range(args.rounds + 1):  # round 0 warms the page cache and the imports; not counted
            for name, decode in variants.items():
                t = time.perf_counter()
                m = prepare("imagefolder", root, out, resolution=args.res, workers=args.workers,
                            chunk_size=args.chunk_size, progress=False, decode=decode)
                elapsed = time.perf_counter() - t
                shutil.rmtree(out)
                sums.add(m["sha256"])
                if r:
                    times[name].append(elapsed)
    if len(sums) != 1:
        print("the variants wrote different caches", file=sys.stderr)
        return 1

    rate = {k: n / statistics.median(v) for k, v in times.items()}
    base = rate["fork pool"]
    result = {"benchmark": "prepare_throughput", "images": n, "size": f"{w}x{h}", "res": args.res, "workers": args.workers,
              "chunk_size": args.chunk_size, "rounds": args.rounds,
              "images_per_s": {k: round(v, 1) for k, v in rate.items()},
              "ratio_to_fork_pool": {k: round(v / base, 3) for k, v in rate.items()},
              "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    print(f"prepare of {n} JPEGs of {w}x{h} -> {args.res} px, {args.workers} workers, chunks of {args.chunk_size}, "
          f"median of {args.rounds} interleaved rounds")
    for k, v in rate.items():
        spread = ", ".join(f"{t:.2f}" for t in times[k])
        print(f"{k + ':':17s} {v:7.0f} images/s  {v / base:5.3f}x the fork pool  (s: {spread})")
    if args.json:
        print(json.dumps(result))
    write_result("prepare_throughput", goal="prepare on threads at least the images/s of the fork-context process pool it replaced",
                 headline={f"{k} / fork pool": f"{rate[k] / base:.2f}x"
                           for k in sorted(rate, key=lambda k: k != "threads") if k != "fork pool"}
                 | {"threads (images/s)": round(rate["threads"]), "images": f"{n} JPEGs {w}x{h} -> {args.res} px"},
                 detail=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
