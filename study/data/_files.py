"""File sources: ``imagefolder`` (any ``ROOT/{train,val}/<class>/*`` tree) and
``imagenet100`` (an ImageNet-1K tree filtered to the ImageNet-100 classes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from study.data._classes import read_class_file
from study.data._decode import IMAGE_EXTENSIONS
from study.data._listing import FileListing
from study.data._registry import ProxySource, register_source
from study.validate import ConfigError

__all__ = ["ImageFolderSource", "ImageNet100Source", "scan_tree"]


def _images_in(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_fraction(val_split: float | None) -> None:
    if val_split is not None and (isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 < val_split < 1):
        raise ConfigError("val_split", f"a fraction in (0, 1), got {val_split!r}")


def scan_tree(root: str | Path, *, classes: list[str] | None = None, val_split: float | None = None, seed: int = 0,
              source: str = "imagefolder") -> FileListing:
    """List ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``.

    ``classes`` None takes every class folder of ``train/`` (sorted); a list keeps only
    those folders, with label ``i`` = ``classes[i]`` (classes without a folder keep their
    label and get no images; the manifest names them). ``val_split`` holds out that
    fraction of every class's train images (seeded by ``seed``; at least one image of a
    class with two or more) as the validation split, for trees without ``val/``.
    """
    _check_fraction(val_split)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("root", about=str(root), reason="no such folder")
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise ConfigError("root", about=str(root), reason="no train/ folder (expected ROOT/train/<class>/*, ROOT/val/<class>/*)")
    if val_split is None and not val_dir.is_dir():
        raise ConfigError("root", about=str(root), reason="no val/ folder (expected ROOT/val/<class>/*); "
                         "pass {val_split} FRACTION to hold out a seeded fraction of train/ instead", refs=["val_split"])
    if val_split is not None and val_dir.is_dir():
        raise ConfigError("val_split", f"{root} has a val/ folder; {{val_split}} only applies to trees without one", refs=["val_split"])
    found = _class_dirs(train_dir)
    explicit = classes is not None
    if classes is None:
        classes = found
        if not classes:
            raise ConfigError("root", about=str(root), reason="train/ has no class folders")
    wanted = set(classes)
    label_of = {c: i for i, c in enumerate(classes)}
    notes: dict[str, Any] = {}
    missing = [c for c in classes if c not in found]
    if missing:
        notes["classes_without_train_images"] = missing
    if explicit:
        notes["ignored_train_folders"] = len([c for c in found if c not in wanted])

    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    rng = np.random.default_rng(seed)
    for c in classes:
        if c not in found:
            continue
        files = _images_in(train_dir / c)
        if val_split is not None and len(files) >= 2:
            k = min(len(files) - 1, max(1, round(val_split * len(files))))
            held = set(rng.permutation(len(files))[:k].tolist())
            val.extend((f, label_of[c]) for i, f in enumerate(files) if i in held)
            files = [f for i, f in enumerate(files) if i not in held]
        train.extend((f, label_of[c]) for f in files)
    if val_split is None:
        val_found = _class_dirs(val_dir)
        if source == "imagefolder":
            extra = [c for c in val_found if c not in wanted]
            if extra:
                raise ConfigError("root", about=str(root), reason=f"val/ has class folder {extra[0]!r} that train/ lacks")
        elif not val_found and any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(val_dir)):
            raise ConfigError("root", about=str(root), reason="val/ holds images directly; sort them into val/<wnid>/ folders first")
        for c in classes:
            if c in val_found:
                val.extend((f, label_of[c]) for f in _images_in(val_dir / c))
        missing_val = [c for c in classes if c not in val_found]
        if missing_val and len(missing_val) < len(classes):
            notes["classes_without_val_images"] = missing_val
    else:
        notes["val_split"] = {"fraction": val_split, "seed": seed, "from": "train"}
    if not train:
        raise ConfigError("root", about=str(root), reason="no images (.jpg/.jpeg/.png/.webp/.bmp) under train/ for the selected classes")
    if not val:
        raise ConfigError("root", about=str(root), reason="no validation images for the selected classes")
    return FileListing(classes=list(classes), splits={"train": train, "val": val}, notes=notes)


@register_source("imagefolder")
class ImageFolderSource(ProxySource):
    description = "ROOT/train/<class>/* and ROOT/val/<class>/* (JPEG/PNG/WebP/BMP); classes = sorted folder names"
    options = ("val_split", "seed")

    def scan(self, root: Path, *, val_split: float | None = None, seed: int = 0, **_: Any) -> FileListing:  # type: ignore[override]
        return scan_tree(root, val_split=val_split, seed=seed, source=self.name)


@register_source("imagenet100")
class ImageNet100Source(ProxySource):
    description = "ImageNet-1K tree (train/ and val/ with wnid folders) filtered to the 100 CMC classes; label i = i-th sorted wnid"
    options = ("classes", "val_split", "seed")

    def scan(self, root: Path, *, classes: str | None = None, val_split: float | None = None, seed: int = 0, **_: Any) -> FileListing:  # type: ignore[override]
        wnids = read_class_file(classes)
        listing = scan_tree(root, classes=wnids, val_split=val_split, seed=seed, source=self.name)
        listing.notes["class_list"] = str(classes) if classes else "shipped imagenet100.txt (Tian et al. 2019)"
        return listing
