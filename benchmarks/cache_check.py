"""Benchmark: the check every reader runs on a cache against the full sha256 verification.

Writes an image folder with Pillow in a temporary directory (``--classes`` x
``--train-per-class`` JPEGs of ``--size`` pixels, plus a small val/), prepares it once with
``study.data.prepare`` at ``--res`` px, then times, in interleaved rounds on the same cache:

- the check (:func:`study.data.check_cache`: the manifest, and every array's header, dtype,
  shape and byte size; what ``--data``, ``study.train`` and ``study.data info`` run each time);
- the baseline, the sha256 of every array (:func:`study.data.verify_cache`, what
  ``python -m study.data verify`` adds: it reads every byte).

The figures are the median times of ``--rounds`` rounds and their ratio. The check reads a
few hundred bytes per file whatever the cache's size; the sha256 grows with it.

    python benchmarks/cache_check.py                 # ~1 min on 2 cores
    python benchmarks/cache_check.py --train-per-class 1000 --res 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _images import write_folder  # benchmarks/ is sys.path[0] when a script here runs
from _results import write_result

from study.data import check_cache, prepare, verify_cache


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--size", default="160x120", help="JPEG size WxH")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        n = write_folder(root, classes=args.classes, train=args.train_per_class, val=args.val_per_class, size=(w, h))
        cache = Path(tmp) / "cache"
        prepare("imagefolder", root, cache, resolution=args.res, progress=False)
        size_mb = sum(p.stat().st_size for p in cache.glob("*.npy")) / 2**20
        check_ms, verify_ms = [], []
        for _ in range(args.rounds):  # interleaved: a drifting machine load hits both
            t = time.perf_counter()
            check_cache(cache)
            check_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            assert verify_cache(cache) == []
            verify_ms.append((time.perf_counter() - t) * 1000)
    check, verify = statistics.median(check_ms), statistics.median(verify_ms)
    print(f"cache: {n} images at {args.res} px, {size_mb:.1f} MB of arrays")
    print(f"check (header, dtype, shape, size): median {check:.2f} ms over {args.rounds} rounds (min {min(check_ms):.2f})")
    print(f"sha256 of every array:              median {verify:.1f} ms (min {min(verify_ms):.1f})")
    print(f"the check is {verify / check:.0f}x faster than the sha256")
    write_result("cache_check", goal="every reader checks a cache in milliseconds (header, dtype, shape, size), "
                 "far below the sha256 of its arrays",
                 headline={"check (ms)": round(check, 2), "sha256 verify (ms)": round(verify, 1),
                           "ratio": f"{verify / check:.0f}x", "cache": f"{n} images at {args.res} px, {size_mb:.1f} MB"},
                 detail={"check_ms": [round(x, 3) for x in check_ms], "verify_ms": [round(x, 2) for x in verify_ms],
                         "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
