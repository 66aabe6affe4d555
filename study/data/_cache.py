"""The on-disk cache: memory-mappable uint8 arrays plus a manifest.

A cache folder ``DIR`` holds, per split (``train``, ``val``)::

    DIR/train_images.npy   uint8 (N, R, R, 3), NHWC, RGB
    DIR/train_labels.npy   int64 (N,)
    DIR/val_images.npy, DIR/val_labels.npy
    DIR/manifest.json      source, root, classes, counts per split, resolution, skipped
                           files, sha256 of every array file, creation time, versions

``prepare`` writes into ``DIR.partial`` and renames it to ``DIR`` only when everything,
manifest last, is on disk: a folder named ``DIR`` is always complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from study.data._check import check_cache
from study.data._manifest import (
    CACHE_FORMAT,
    CACHE_VERSION,
    MANIFEST,
    READABLE_VERSIONS,
    SPLITS,
    array_files,
    partial_path,
    read_manifest,
    sha256_file,
)
from study.data._types import ProxyData, Split, balanced_subset
from study.validate import ConfigError

__all__ = ["load_cache", "read_manifest", "MANIFEST", "CACHE_FORMAT", "CACHE_VERSION", "READABLE_VERSIONS", "SPLITS",
           "partial_path", "array_files", "sha256_file"]

def _resize(images: torch.Tensor, resolution: int, *, chunk: int = 4096) -> torch.Tensor:
    out = torch.empty((images.shape[0], resolution, resolution, 3), dtype=torch.uint8)
    for lo in range(0, images.shape[0], chunk):
        x = torch.as_tensor(np.asarray(images[lo:lo + chunk])).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        out[lo:lo + chunk] = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


def load_cache(path: str | Path, *, resolution: int | None = None, num_classes: int | None = None,
               images_per_class: float | int | None = None, val_per_class: int | None = None,
               subset_seed: int = 0) -> ProxyData:
    """Read a prepared cache (memory-mapped, copy-on-write) as :class:`ProxyData`.

    - ``resolution``: None or the cache's own keeps the images as stored; a *lower* one
      resizes on load (bilinear with antialiasing, in torch), so a 64 px cache also serves
      32 px trials; a higher one is an error (prepare the cache at that resolution).
    - ``num_classes``: None or the cache's class count keeps all classes; a smaller ``n``
      keeps the first ``n`` classes (labels ``0..n-1``); a larger one is an error.
    - ``images_per_class`` (train) and ``val_per_class`` (val): a class-balanced subset
      seeded by ``subset_seed`` (see :func:`study.data.balanced_subset`).
    """
    d = Path(path)
    manifest = check_cache(d)  # every array whole before any is read
    classes = list(manifest["classes"])
    res = int(manifest["resolution"])
    if resolution is not None and resolution > res:
        raise ConfigError("resolution", f"{resolution} px asked, but the cache {d} holds {res} px images "
                         f"(prepare one at {resolution} px, or ask for {res} px or less)")
    if num_classes is not None and num_classes > len(classes):
        raise ConfigError("num_classes", f"{num_classes} asked, but the cache {d} holds {len(classes)} classes")
    keep_classes = len(classes) if num_classes is None else num_classes
    splits = {}
    for split in SPLITS:
        img_name, lab_name = array_files(split)
        images = np.load(d / img_name, mmap_mode="c")
        labels = torch.from_numpy(np.load(d / lab_name).astype(np.int64, copy=False))
        if images.ndim != 4 or images.shape[1:] != (res, res, 3) or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{d / img_name}: shape {images.shape} does not match the manifest ({res} px, {labels.shape[0]} labels)")
        index = None
        if keep_classes < len(classes):
            index = torch.nonzero(labels < keep_classes).flatten()
        per_class = images_per_class if split == "train" else val_per_class
        if per_class is not None:
            sub_labels = labels if index is None else labels[index]
            sub = balanced_subset(sub_labels, per_class, num_classes=keep_classes, seed=subset_seed + (0 if split == "train" else 1))
            if sub is not None:
                index = sub if index is None else index[sub]
        if index is not None:
            idx = index.numpy()
            # gather in sorted order from the memory map: sequential reads
            tensor = torch.from_numpy(np.ascontiguousarray(images[idx]))
            labels = labels[index]
        else:
            tensor = torch.from_numpy(images)
        if resolution is not None and resolution < res:
            tensor = _resize(tensor, resolution)
        splits[split] = Split(tensor, labels)
    info = {"cache": str(d), "manifest_source": manifest.get("source"), "checksums": manifest.get("checksums"),
            "cache_resolution": res, "images_per_class": images_per_class, "val_per_class": val_per_class,
            "subset_seed": subset_seed}
    return ProxyData(train=splits["train"], val=splits["val"], classes=classes[:keep_classes],
                     resolution=resolution or res, source=str(manifest.get("source")), info=info)
