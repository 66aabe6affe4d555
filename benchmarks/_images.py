"""Image folders for the data benchmarks (``cache_vs_pil``, ``prepare_throughput``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_folder", "write_class_folder"]


def _class_dirs(root: Path, classes: int, train: int, val: int) -> Iterator[tuple[Path, int, int]]:
    """Each ``root/{train,val}/class_NNN/`` made, with its class and how many images it gets."""
    for split, per in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"class_{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            yield d, c, per


def write_folder(root: Path, *, classes: int, train: int, val: int, size: tuple[int, int], seed: int = 0) -> int:
    """Smooth random JPEGs (a low-resolution noise field upsampled, so they compress like
    photos) in ``root/{train,val}/class_NNN/``; returns how many were written."""
    rng = np.random.default_rng(seed)
    w, h = size
    n = 0
    for d, _, per in _class_dirs(root, classes, train, val):
        for i in range(per):
            small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
            Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(d / f"{i:05d}.JPEG", quality=90)
            n += 1
    return n


def write_class_folder(root: Path, *, classes: int, train: int, val: int, size: int, seed: int = 0) -> int:
    """JPEGs whose class can be learned: each class a smooth random prototype (colour and
    layout), each image that prototype shifted, rescaled in brightness and overlaid with its own
    smooth noise, in ``root/{train,val}/class_NNN/``; returns how many were written."""
    rng = np.random.default_rng(seed)
    protos = [np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((2 * size, 2 * size),
                                                                                                   Image.Resampling.BICUBIC), float)
              for _ in range(classes)]
    n = 0
    for d, c, per in _class_dirs(root, classes, train, val):
        for i in range(per):
            x, y = rng.integers(0, size, 2)
            crop = protos[c][y:y + size, x:x + size] * rng.uniform(0.6, 1.2)
            noise = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size)), float)
            img = np.clip(0.6 * crop + 0.4 * noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:05d}.JPEG", quality=90)
            n += 1
    return n
