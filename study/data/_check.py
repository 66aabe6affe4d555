"""Is a cache whole? The check every reader runs before it trusts a cache's arrays.

:func:`check_cache` compares every array file of a cache with its manifest without reading
the images: the file is there, it is a NumPy ``.npy`` file whose header can be read, its dtype
(uint8 images, int64 labels), shape (the manifest's image count per split, its resolution, 3
channels) and byte size (header plus the array, nothing more and nothing less) are those
the manifest promises. That is a few ``stat`` calls and a few hundred bytes read per file:
milliseconds whatever the cache's size (``benchmarks/cache_check.py`` measures it against
the sha256 pass), so ``--data``, ``study.train`` and ``python -m study.data info`` run it
every time. A cache copied half-way, cut short by a full disk or with a file swapped for
another fails it in one line that names the file and the ``python -m study.data prepare``
command that remakes it (:func:`remake_command`, built from the manifest's own inputs).

:func:`verify_cache` (``python -m study.data verify``) runs this check and then recomputes
every array's sha256 against the manifest: it reads every byte, seconds per GB.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from study.data._manifest import MANIFEST, SPLITS, CacheError, array_files, read_manifest, remake_command, sha256_file

__all__ = ["CacheError", "check_cache", "verify_cache", "remake_command", "expected_arrays"]

#: what a manifest must hold for the check (a manifest without them was written by an
#: older version, or by hand)
_REQUIRED = ("counts", "resolution", "checksums", "classes")


def expected_arrays(manifest: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """File name -> (dtype, shape) of every array the manifest promises."""
    res = int(manifest["resolution"])
    out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    for split in SPLITS:
        n = int(manifest["counts"][split]["images"])
        images, labels = array_files(split)
        out[images] = (np.dtype(np.uint8), (n, res, res, 3))
        out[labels] = (np.dtype(np.int64), (n,))
    return out


def _array_problem(file: Path, dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
    """What is wrong with the ``.npy`` file ``file`` against ``dtype`` and ``shape`` (None: nothing)."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    try:
        with open(file, "rb") as f:
            version = npy.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got_dtype = npy.read_array_header_1_0(f)
            else:
                got_shape, fortran, got_dtype = npy.read_array_header_2_0(f)
            offset = f.tell()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # numpy's words: "EOF: reading array header, expected 118 bytes got 90", bad magic
        text = " ".join(str(exc).split())
        if size < 16 or "EOF" in text:
            return f"is cut short in its header ({size} bytes)"
        return f"is not a NumPy array file ({text})"
    if got_dtype != dtype:
        return f"holds {got_dtype} values, the cache stores {dtype}"
    if fortran:
        return "is stored in Fortran order, the cache stores C order"
    if tuple(got_shape) != shape:
        return f"has shape {tuple(got_shape)}, the manifest says {shape}"
    want = offset + math.prod(shape) * dtype.itemsize
    if size < want:
        return f"is cut short: {size} of its {want} bytes"
    if size > want:
        return f"has {size - want} bytes more than its header's {shape} {dtype} array"
    return None


def check_cache(path: str | Path) -> dict[str, Any]:
    """The manifest of the cache at ``path`` when every array file matches it (header, dtype,
    shape, byte size; not the checksums, see :func:`verify_cache`); :class:`CacheError` naming
    the first file that does not, and the command that remakes the cache. A folder that is
    no complete cache, or a cache of another version, fails as in
    :func:`~study.data.read_manifest`."""
    d = Path(path)
    manifest = read_manifest(d)
    missing = [key for key in _REQUIRED if key not in manifest]
    try:
        expected = None if missing else expected_arrays(manifest)
    except (KeyError, TypeError, ValueError):
        expected = None
    if expected is None or set(manifest["checksums"]) != set(expected):
        what = f"lacks {', '.join(missing)}" if missing else "does not describe the train and val arrays"
        raise CacheError(f"{d / MANIFEST}: the manifest {what}", remake_command(d, manifest))
    for name, (dtype, shape) in expected.items():
        problem = _array_problem(d / name, dtype, shape)
        if problem is not None:
            raise CacheError(f"{d / name} {problem}: the cache is damaged or incomplete", remake_command(d, manifest))
    return manifest


def verify_cache(path: str | Path) -> list[str]:
    """:func:`check_cache` (raises :class:`CacheError` for a damaged cache), then the names of
    the array files whose sha256 differs from the manifest's (empty: the cache is intact).
    Reads every byte."""
    d = Path(path)
    manifest = check_cache(d)
    return [name for name, digest in manifest["checksums"].items() if sha256_file(d / name) != digest]
