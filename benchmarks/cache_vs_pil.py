"""Benchmark (b): an epoch from the decode-once cache against per-image PIL decoding.

Writes an image folder with Pillow in a temporary directory (``--classes`` x
``--train-per-class`` JPEGs of ``--size`` pixels, plus a small val/), then times, in the
same run, one training epoch (batches of ``--batch-size`` at ``--res`` px, shuffled,
random crop with padding + horizontal flip, normalized float32 NCHW) by:

- baseline: a plain ``torch.utils.data.Dataset`` that opens, decodes, resizes (shorter
  side + centre crop), augments and converts every image with PIL/numpy in
  ``__getitem__``, behind ``torch.utils.data.DataLoader(num_workers=--workers)``;
- cached: ``python -m study.data prepare`` once (timed separately, it is a one-off), then
  :class:`study.data.DeviceLoader` over the memory-mapped cache.

Each path runs ``--epochs`` epochs; the figure is the ratio of the median epoch times
(baseline / cached). The prepare time and the epoch count after which the cache has paid
for itself are printed too.

    python benchmarks/cache_vs_pil.py                    # ~1 min on 2 cores
    python benchmarks/cache_vs_pil.py --size 400x350 --res 64 --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _images import write_folder  # benchmarks/ is sys.path[0] when a script here runs
from _results import write_result
from PIL import Image

from study.config import ProxySpec
from study.data import IMAGENET_MEAN, IMAGENET_STD, DeviceLoader, load_proxy, prepare


class PILFolder(torch.utils.data.Dataset):
    """The classic per-image path: decode + resize + augment + to-tensor in ``__getitem__``."""

    def __init__(self, root: Path, res: int):
        self.items = [(str(p), i) for i, d in enumerate(sorted((root / "train").iterdir())) for p in sorted(d.iterdir())]
        self.res, self.pad = res, max(1, res // 8)
        self.mean = np.array(IMAGENET_MEAN, dtype=np.float32)
        self.std = np.array(IMAGENET_STD, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        r, p = self.res, self.pad
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            im = im.resize((max(r, round(w * r / s)), max(r, round(h * r / s))), Image.Resampling.BICUBIC)
            w, h = im.size
            im = im.crop(((w - r) // 2, (h - r) // 2, (w - r) // 2 + r, (h - r) // 2 + r))
        a = np.asarray(im, dtype=np.float32) / 255.0
        a = np.pad(a, ((p, p), (p, p), (0, 0)), mode="reflect")
        oy, ox = np.random.randint(0, 2 * p + 1, 2)
        a = a[oy:oy + r, ox:ox + r]
        if np.random.rand() < 0.5:
            a = a[:, ::-1]
        a = (a - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), label


def _epoch(loader) -> float:
    t = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--size", default="320x240", help="WxH of the generated JPEGs")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers and prepare processes")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="cache_vs_pil_") as tmp:
        root = Path(tmp) / "folder"
        write_folder(root, classes=args.classes, train=args.train_per_class, val=max(1, args.train_per_class // 10), size=(w, h))
        ds = PILFolder(root, args.res)
        baseline = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                               num_workers=args.workers, persistent_workers=args.workers > 0)
        t = time.perf_counter()
        prepare("imagefolder", root, Path(tmp) / "cache", resolution=args.res, workers=args.workers, progress=False)
        prepare_s = time.perf_counter() - t
        data = load_proxy(ProxySpec(source="cache", data=str(Path(tmp) / "cache"), resolution=args.res, num_classes=args.classes))
        cached = DeviceLoader(data.train, batch_size=args.batch_size, device="cpu", train=True, seed=0)
        _epoch(cached)
        base_times, cache_times = [], []
        for _ in range(args.epochs):  # interleaved, so background load hits both
            base_times.append(_epoch(baseline))
            cache_times.append(_epoch(cached))
        del baseline

    base, cache = statistics.median(base_times), statistics.median(cache_times)
    ratio = base / cache
    saved = base - cache
    result = {"benchmark": "cache_vs_pil", "images": len(ds), "size": f"{w}x{h}", "res": args.res, "workers": args.workers,
              "batch_size": args.batch_size, "pil_epoch_s": round(base, 3), "cached_epoch_s": round(cache, 4),
              "ratio": round(ratio, 1), "prepare_s": round(prepare_s, 2),
              "break_even_epochs": round(prepare_s / saved, 2) if saved > 0 else None,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    print(f"{len(ds)} train JPEGs of {w}x{h} -> {args.res} px, batch {args.batch_size}, {args.workers} worker(s), "
          f"median of {args.epochs} epochs")
    print(f"PIL + DataLoader epoch:   {base:.3f} s")
    print(f"cache + DeviceLoader:     {cache:.4f} s")
    print(f"ratio:                    {ratio:.0f}x faster per epoch")
    print(f"one-off prepare:          {prepare_s:.2f} s (pays for itself after {result['break_even_epochs']} epoch(s))")
    if args.json:
        print(json.dumps(result))
    write_result("cache_vs_pil", goal="an epoch from the cache much faster than PIL decode + DataLoader",
                 headline={"cached epoch vs PIL": f"{ratio:.0f}x faster", "images": f"{len(ds)} JPEGs {w}x{h} -> {args.res} px",
                           "prepare pays off after (epochs)": result["break_even_epochs"]},
                 detail=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
