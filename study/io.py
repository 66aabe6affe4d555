"""Atomic file writes: the one way every part of the project writes a file that a reader (or
a resumed run) may open while, or after, the writer is interrupted.

The data goes to a hidden temporary file beside the target, then ``os.replace`` renames it
over the target: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from study.validate import ConfigError

__all__ = ["atomic_file", "write_atomic", "write_json"]


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success rename it to ``path``.

    ``mode`` is "w" (text) or "wb"; ``fsync`` flushes the data to disk before the rename (for
    checkpoints that must survive a power cut). On an exception the temporary file is
    removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ConfigError("mode", f"must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    tmp = _temporary(target)
    try:
        with open(tmp, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns the path."""
    target = Path(path)
    tmp = _temporary(target)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent) + "\n")
