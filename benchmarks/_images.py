"""Image folders for the data benchmarks (``cache_vs_pil``, ``prepare_throughput``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_folder"]


def write_folder(root: Path, *, classes: int, train: int, val: int, size: tuple[int, int], seed: int = 0) -> int:
    """Smooth random JPEGs (a low-resolution noise field upsampled, so they compress like
    photos) in ``root/{train,val}/class_NNN/``; returns how many were written."""
    rng = np.random.default_rng(seed)
    w, h = size
    n = 0
    for split, per in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"class_{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
                Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(d / f"{i:05d}.JPEG", quality=90)
                n += 1
    return n
