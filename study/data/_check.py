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
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from study.data._cache import MANIFEST, SPLITS, array_files, read_manifest, sha256_file
from study.validate import ConfigError

__all__ = ["CacheError", "check_cache", "verify_cache", "remake_command", "expected_arrays"]

#: the flags of ``python -m study.data prepare`` that a manifest's ``options`` were given with
_OPTION_FLAGS = {"classes": "--classes", "label_map": "--label-map", "val_split": "--val-split", "seed": "--seed"}
#: what a manifest must hold for the check (a manifest without them was written by an
#: older version, or by hand)
_REQUIRED = ("counts", "resolution", "checksums", "classes")


class CacheError(ConfigError):
    """A cache is damaged, incomplete or of a format this version does not read: ``what`` names
    the file and what is wrong with it, ``command`` remakes the cache; the message says both
    (``... remake the cache: python -m study.data prepare ...``). An input error (a
    :class:`~study.validate.ConfigError` of no field): one line and exit status 2 on any
    command line."""

    def __init__(self, what: str, command: str, *, advice: str = "remake the cache"):
        self.what = what
        self.command = command
        self.advice = advice
        super().__init__(None, f"{what}; {advice}: {command}")

    def __reduce__(self):  # pickles (a Ray task's error) with its parts
        return (CacheError, (self.what, self.command), {"advice": self.advice})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.advice = state["advice"]


def remake_command(path: str | Path, manifest: dict[str, Any] | None = None) -> str:
    """The ``python -m study.data prepare`` command that makes the cache at ``path`` again
    from its manifest's inputs (source, root, resolution, options), with ``--force``;
    ``...`` stands for the inputs a manifest does not say."""
    m = manifest or {}
    source, root, res = m.get("source"), m.get("root"), m.get("resolution")
    if not (source and root and res):
        return f"python -m study.data prepare ... --out {shlex.quote(str(path))} --force"
    words = ["python -m study.data prepare", "--source", str(source), "--root", str(root), "--res", str(res)]
    for key, value in (m.get("options") or {}).items():
        if key in _OPTION_FLAGS and value is not None:
            words += [_OPTION_FLAGS[key], str(value)]
    words += ["--out", str(path), "--force"]
    return " ".join(words[:1] + [shlex.quote(w) for w in words[1:]])


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
