"""A cache's manifest and its files: the names, the format versions this version reads, and
the refusal of a cache that cannot be read (:class:`CacheError`, with the command that
remakes it). Shared by the cache's reader (:mod:`study.data._cache`), its check
(:mod:`study.data._check`) and ``prepare``."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from study.validate import ConfigError

__all__ = ["MANIFEST", "CACHE_FORMAT", "CACHE_VERSION", "READABLE_VERSIONS", "SPLITS", "CacheError", "array_files", "partial_path",
           "read_manifest", "remake_command", "sha256_file"]

#: the flags of ``python -m study.data prepare`` that a manifest's ``options`` were given with
_OPTION_FLAGS = {"classes": "--classes", "label_map": "--label-map", "val_split": "--val-split", "seed": "--seed"}
MANIFEST = "manifest.json"
CACHE_FORMAT = "study.data cache"
#: the format ``prepare`` writes
CACHE_VERSION = 1
#: the formats this version reads; any other is refused whole, never half-read
READABLE_VERSIONS = (1,)
SPLITS = ("train", "val")


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def array_files(split: str) -> tuple[str, str]:
    return f"{split}_images.npy", f"{split}_labels.npy"


def sha256_file(path: Path, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the cache at ``path``; a clear error if it is not a complete cache."""
    d = Path(path)
    if not d.exists():
        partial = partial_path(d)
        if partial.exists():
            raise ValueError(f"{d}: not a complete cache: an interrupted prepare left {partial}; run the same "
                             f"`python -m study.data prepare ... --out {d}` again to finish it")
        raise FileNotFoundError(f"{d}: no such cache folder (make one with `python -m study.data prepare ... --out {d}`)")
    if not d.is_dir():
        raise ValueError(f"{d}: not a cache folder")
    m = d / MANIFEST
    if not m.exists():
        raise ValueError(f"{d}: not a complete cache (no {MANIFEST})")
    try:
        manifest = json.loads(m.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{m}: not valid JSON ({exc})") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"{m}: not a study.data cache manifest")
    version = manifest.get("version")
    if version not in READABLE_VERSIONS:
        by = f"study {manifest['study_version']}" if manifest.get("study_version") else "another version"
        reads = ", ".join(map(str, READABLE_VERSIONS))
        if isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_VERSIONS):
            raise CacheError(f"{m}: cache format {version} (written by {by}) is newer than this version reads ({reads})",
                             remake_command(d, manifest), advice="upgrade channel-attention-study, or remake the cache")
        raise CacheError(f"{m}: cache format {version!r} (written by {by}) is one this version no longer reads ({reads})",
                         remake_command(d, manifest))
    return manifest


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
