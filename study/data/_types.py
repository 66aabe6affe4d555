"""The in-memory form of a proxy: two :class:`Split` s, class names and the resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from study.validate import ConfigError

__all__ = ["Split", "ProxyData", "balanced_subset", "seeded_generator"]


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from a tuple of integers (mixed by numpy's
    ``SeedSequence``: torch's CPU generator keeps only 32 bits of a seed, so packing the
    integers into one number would collide)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) | (int(state[1]) << 32))


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 ``(N, H, W, 3)`` (NHWC) and ``labels`` int64 ``(N,)``.

    On CPU the images may be a memory-mapped view of a cache (read lazily, copy-on-write).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[-1] != 3:
            raise ConfigError("images", f"expected a uint8 NHWC tensor with 3 channels, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ConfigError("labels", f"expected a 1-D int64 tensor, got {self.labels.dtype} {tuple(self.labels.shape)}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise ConfigError("labels", f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: torch.Tensor) -> Split:
        """The images at ``index`` (a copy)."""
        return Split(self.images[index], self.labels[index])

    def class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class ProxyData:
    """A proxy data set ready for :class:`study.data.DeviceLoader`.

    ``classes[i]`` names label ``i``; ``source`` is the source that made the images
    (``"synthetic"``, or the source recorded in a cache's manifest); ``info`` carries
    provenance (the cache folder, its checksum, the subset that was taken).
    """

    train: Split
    val: Split
    classes: list[str]
    resolution: int
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"ProxyData(source={self.source!r}, classes={self.num_classes}, resolution={self.resolution}, "
            f"train={len(self.train)}, val={len(self.val)})"
        )


def balanced_subset(labels: torch.Tensor, per_class: float | int | None, *, num_classes: int, seed: int) -> torch.Tensor | None:
    """Indices of a class-balanced, seeded subset of ``labels`` (sorted), or None for all.

    ``per_class`` a float in (0, 1]: that fraction of every class (rounded, at least one
    image); an int: that many images of every class (a class with fewer keeps all of them);
    None, or a fraction of 1.0: everything. The choice within a class is a seeded random
    permutation, so the same seed picks the same images.
    """
    if per_class is None or (isinstance(per_class, float) and per_class >= 1.0):
        return None
    g = seeded_generator(int(seed), 0x5B5E7)
    # one random key per image, then order by (label, key): a per-class shuffle in one sort
    keys = torch.rand(labels.shape[0], generator=g, dtype=torch.float64)
    order = torch.argsort(labels.to(torch.float64) * 2.0 + keys, stable=True)
    sorted_labels = labels[order]
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.shape[0]) - starts[sorted_labels]
    if isinstance(per_class, float):
        take = torch.clamp(torch.round(counts.to(torch.float64) * per_class).to(torch.int64), min=1)
        take = torch.minimum(take, counts)
    else:
        take = torch.clamp(counts, max=int(per_class))
    keep = order[rank < take[sorted_labels]]
    return torch.sort(keep).values
