"""Decoding one image file into a square uint8 array (runs on prepare's decoding threads;
imports only numpy and Pillow, whose decoding and resizing release the GIL).

Resize rule: the shorter side is scaled to the target resolution ``R`` and the centre
``R x R`` square is kept (the ImageNet evaluation "resize + centre crop" at ratio 1). It is
done in one Pillow call, ``resize((R, R), box=centre square of side min(w, h))``, with
bicubic antialiased filtering; JPEGs are first decoded at a reduced scale (``draft``) no
smaller than needed, which makes large ImageNet JPEGs several times faster to decode.
Palette, grey, CMYK and alpha images are converted to RGB (alpha dropped). EXIF
orientation is not applied (ImageNet's files carry none that matter).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "decode_chunk", "decode_image", "quiet_decoding"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@contextlib.contextmanager
def quiet_decoding() -> Iterator[None]:
    """Ignore the warnings Pillow (and this module) raise about single files while decoding.

    Enter it once, in the thread that starts the decoding threads, around all of them:
    :func:`warnings.catch_warnings` changes process-wide state, and entered per image on
    several threads at once its saves and restores interleave and scramble the filters
    (once the caller's own warnings were silenced that way). Only warnings attributed to
    Pillow's modules and this one are ignored; the rest of the process warns as before.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        warnings.filterwarnings("ignore", module=r"study\.data\._decode$")
        yield


def decode_image(path: str, resolution: int) -> np.ndarray:
    """``(R, R, 3)`` uint8 RGB of the file at ``path``; raises on an unreadable file.

    Pillow's warnings about a file (palette transparency, EXIF noise) are not silenced here,
    since this runs on several threads at once; the caller wraps the whole decoding in
    :func:`quiet_decoding`."""
    r = resolution
    with Image.open(path) as im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ValueError(f"empty image {w}x{h}")
        if im.format == "JPEG":
            s = min(w, h)
            im.draft("RGB", (math.ceil(r * w / s), math.ceil(r * h / s)))
        im = im.convert("RGB")  # forces a full decode: a truncated file raises here
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) / 2, (h - s) / 2
        out = im.resize((r, r), Image.Resampling.BICUBIC, box=(left, top, left + s, top + s), reducing_gap=3.0)
        arr = np.asarray(out, dtype=np.uint8)
    if arr.shape != (r, r, 3):
        raise ValueError(f"decoded to shape {arr.shape}")
    return arr


def decode_chunk(task: tuple[int, list[str], int]) -> tuple[int, np.ndarray, list[tuple[int, str]]]:
    """Decode a chunk of files: ``(chunk id, images, [(index in chunk, error), ...])``.

    An unreadable file leaves zeros in its slot and is reported, never raised.
    """
    chunk_id, paths, resolution = task
    out = np.zeros((len(paths), resolution, resolution, 3), dtype=np.uint8)
    errors: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_image(path, resolution)
        except Exception as exc:
            errors.append((i, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]))
    return chunk_id, out, errors
