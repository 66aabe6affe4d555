"""Class lists: the shipped ImageNet-100 list and the ILSVRC devkit's ``map_clsloc.txt``."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from study.validate import ConfigError

__all__ = ["imagenet100_classes", "read_class_file", "read_label_map", "IMAGENET100_FILE", "IMAGENET100_SHA256"]

#: The ImageNet-100 class list of Tian, Krishnan & Isola, "Contrastive Multiview Coding"
#: (2019), as shipped in this package, one wnid per line in the authors' order.
IMAGENET100_FILE = "imagenet100.txt"
IMAGENET100_SHA256 = "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"

_WNID = re.compile(r"^n\d{8}$")


def _parse(text: str, where: str, *, wnids: bool) -> list[str]:
    names: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]
        if wnids and not _WNID.match(name):
            raise ValueError(f"{where}:{lineno}: {name!r} is not a WordNet id like n01440764")
        names.append(name)
    if not names:
        raise ValueError(f"{where}: no class names")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{where}: duplicate class {dupes[0]!r}")
    return names


def read_class_file(path: str | Path | None = None, *, wnids: bool = True) -> list[str]:
    """Class names from a file, one per line (first token; ``#`` comments and blank lines
    ignored), **sorted**: label ``i`` is the ``i``-th name in sorted order. ``path`` None
    reads the shipped ImageNet-100 list."""
    if path is None:
        text = resources.files("study.data").joinpath(IMAGENET100_FILE).read_text()
        return sorted(_parse(text, IMAGENET100_FILE, wnids=wnids))
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"classes {p}: cannot read ({exc.strerror or exc})") from None
    return sorted(_parse(text, str(p), wnids=wnids))


def imagenet100_classes() -> list[str]:
    """The 100 ImageNet-100 wnids in sorted order: label ``i`` is ``imagenet100_classes()[i]``."""
    return read_class_file(None)


def read_label_map(path: str | Path) -> dict[int, str]:
    """``{label: wnid}`` from the ILSVRC devkit's ``map_clsloc.txt`` (lines
    ``n02119789 1 kit_fox``; labels are 1-based, in that file's order, *not* sorted wnids)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"label_map {p}: cannot read ({exc.strerror or exc})") from None
    mapping: dict[int, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not _WNID.match(parts[0]) or not parts[1].isdigit():
            raise ConfigError("label_map", f"{p}:{lineno}: expected 'WNID LABEL NAME' like 'n02119789 1 kit_fox', got {line.strip()!r}")
        label = int(parts[1])
        if label in mapping:
            raise ConfigError("label_map", f"{p}:{lineno}: label {label} appears twice")
        mapping[label] = parts[0]
    if not mapping:
        raise ConfigError("label_map", about=str(p), reason="empty")
    if len(set(mapping.values())) != len(mapping):
        raise ConfigError("label_map", about=str(p), reason="a wnid appears twice")
    return mapping
