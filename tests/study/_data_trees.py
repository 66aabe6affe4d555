"""Tiny real image trees and batch files for the study.data tests (written with Pillow/numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 30, 30), (30, 200, 40), (20, 40, 210), (230, 220, 20), (200, 30, 200), (30, 210, 210)]


def solid(path: Path, colour, size=(40, 28), fmt=None) -> None:
    """An image whose centre square is ``colour`` and whose left/right margins are black, so a
    correct shorter-side resize + centre crop gives a solid colour."""
    w, h = size
    a = np.zeros((h, w, 3), dtype=np.uint8)
    m = (w - h) // 2 if w > h else 0
    a[:, m:w - m] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format=fmt)


def image_tree(root: Path, classes: list[str], *, train: int = 4, val: int = 2, with_val: bool = True) -> Path:
    """ROOT/train/<class>/*.{jpg,png} (and val/); class ``i`` has colour ``COLOURS[i % 6]``."""
    for i, c in enumerate(classes):
        colour = COLOURS[i % len(COLOURS)]
        for split, n in (("train", train), ("val", val)):
            if split == "val" and not with_val:
                continue
            for j in range(n):
                ext = "png" if j % 2 else "JPEG"
                solid(root / split / c / f"{c}_{j}.{ext}", colour, size=(40 + 4 * j, 28))
    return root


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return path
