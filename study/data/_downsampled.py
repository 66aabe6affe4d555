"""``imagenet-downsampled``: the Downsampled ImageNet batch files of Chrabaszcz, Loshchilov
& Hutter, "A Downsampled Variant of ImageNet as an Alternative to the CIFAR datasets"
(2017), filtered to the ImageNet-100 classes.

``ROOT`` holds ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data``, each
either the original pickle or ``.npz``, with ``data`` (uint8, one row per image, stored
plane by plane: all R values, then all G, then all B, each row-major) and ``labels``
(1-based). The labels follow the ILSVRC devkit's ``map_clsloc.txt`` order
(``n02119789 1 kit_fox`` ...), not sorted wnids, so ``--label-map FILE`` is required.
Kept images are relabelled to the index of their wnid in the *sorted* class list.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from study.data._classes import read_class_file, read_label_map
from study.data._listing import ArrayListing
from study.data._registry import ProxySource, register_source
from study.validate import ConfigError

__all__ = ["DownsampledImageNetSource", "read_batch_file"]

_TRAIN = re.compile(r"^train_data_batch_(\d+)(\.npz|\.pkl|\.pickle)?$")
_VAL = re.compile(r"^val_data(\.npz|\.pkl|\.pickle)?$")


def read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(data (n, 3*s*s) uint8, labels (n,) int64, 1-based)`` of one batch file.

    Pickles are read with :mod:`pickle`: only open files you trust (the dataset's own)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data, labels = z["data"], z["labels"]
        else:
            with open(path, "rb") as f:
                obj = pickle.load(f, encoding="latin1")
            obj = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
            data, labels = obj["data"], obj["labels"]
    except KeyError as exc:
        raise ValueError(f"{path}: no {exc} array (expected 'data' and 'labels')") from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable batch file ({type(exc).__name__}: {exc})") from None
    data = np.asarray(data)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: data of shape {data.shape} for {labels.shape[0]} labels")
    return data.astype(np.uint8, copy=False), labels


def _side(path: Path, cols: int) -> int:
    s = math.isqrt(cols // 3)
    if 3 * s * s != cols:
        raise ValueError(f"{path}: rows of {cols} values are not 3 planes of s x s pixels")
    return s


def _stat(p: Path) -> tuple[str, int, float]:
    st = p.stat()
    return (str(p), st.st_size, st.st_mtime)


@register_source("imagenet-downsampled")
class DownsampledImageNetSource(ProxySource):
    description = "Downsampled ImageNet 32x32/64x64 batch files (Chrabaszcz et al. 2017), npz or pickle; needs --label-map"
    options = ("label_map", "classes")

    def scan(self, root: Path, *, label_map: str | None = None, classes: str | None = None, **_: Any) -> ArrayListing:  # type: ignore[override]
        root = Path(root)
        if not root.is_dir():
            raise ConfigError("root", about=str(root), reason="no such folder")
        if label_map is None:
            raise ConfigError("label_map", "source imagenet-downsampled needs the ILSVRC devkit's map_clsloc.txt "
                             "(lines like 'n02119789 1 kit_fox'): its 1-based labels follow that file's order")
        mapping = read_label_map(label_map)
        wnids = read_class_file(classes)
        unknown = [w for w in wnids if w not in set(mapping.values())]
        if len(unknown) == len(wnids):
            raise ConfigError("label_map", about=str(label_map), reason=f"none of the {len(wnids)} classes appear in it")
        train = sorted(((int(m.group(1)), p) for p in root.iterdir() if (m := _TRAIN.match(p.name))), key=lambda t: t[0])
        val = sorted(p for p in root.iterdir() if _VAL.match(p.name))
        if not train:
            raise FileNotFoundError(f"root {root}: no train_data_batch_N files (.npz or pickle)")
        if not val:
            raise FileNotFoundError(f"root {root}: no val_data file (.npz or pickle)")
        files = {"train": [p for _, p in train], "val": val[:1]}
        label_to_class = np.full(max(mapping) + 1, -1, dtype=np.int64)
        index = {w: i for i, w in enumerate(wnids)}
        for lab, w in mapping.items():
            if w in index:
                label_to_class[lab] = index[w]
        side = _side(files["val"][0], read_batch_file(files["val"][0])[0].shape[1])

        def load(split: str) -> tuple[np.ndarray, np.ndarray]:
            images, labels = [], []
            for path in files[split]:
                data, lab = read_batch_file(path)
                if _side(path, data.shape[1]) != side:
                    raise ValueError(f"{path}: {_side(path, data.shape[1])} px images, but val_data has {side} px")
                unmapped = (lab < 1) | (lab >= label_to_class.shape[0])
                unmapped[~unmapped] = ~np.isin(lab[~unmapped], list(mapping))
                if unmapped.any():
                    raise ValueError(f"{path}: label {int(lab[unmapped][0])} is not in `label_map` {label_map} (labels are 1-based)")
                cls = label_to_class[lab]
                keep = np.nonzero(cls >= 0)[0]
                # plane by plane (R..., G..., B...) -> NHWC
                images.append(data[keep].reshape(-1, 3, side, side).transpose(0, 2, 3, 1))
                labels.append(cls[keep])
            return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)

        notes: dict[str, Any] = {"label_map": str(label_map), "native_resolution": side,
                                 "class_list": str(classes) if classes else "shipped imagenet100.txt (Tian et al. 2019)"}
        if unknown:
            notes["classes_not_in_label_map"] = unknown
        return ArrayListing(classes=wnids, resolution=side, load=load,
                            files={k: [_stat(p) for p in v] for k, v in files.items()}, notes=notes)
