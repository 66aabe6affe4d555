"""What a file source hands to ``prepare``: a list of files, or arrays it reads itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FileListing", "ArrayListing"]


@dataclass
class FileListing:
    """Image files to decode: ``splits[name] = [(path, label), ...]`` in a fixed order.

    ``notes`` goes into the manifest (e.g. classes with no images, a held-out val split).
    """

    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    notes: dict[str, Any] = field(default_factory=dict)

    def signature(self) -> dict[str, Any]:
        return {"classes": self.classes, "splits": self.splits}


@dataclass
class ArrayListing:
    """Images that already are pixel arrays (Downsampled ImageNet): ``load(split)`` gives
    ``(uint8 NHWC images, int64 labels)`` at ``resolution``; ``files`` describe what is
    read (names, sizes, modification times) so an interrupted prepare can tell whether the
    inputs changed."""

    classes: list[str]
    resolution: int
    load: Callable[[str], tuple[np.ndarray, np.ndarray]]
    files: dict[str, list[tuple[str, int, float]]]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.files)

    def signature(self) -> dict[str, Any]:
        return {"classes": self.classes, "files": self.files, "resolution": self.resolution}
