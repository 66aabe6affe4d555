"""load_proxy: a :class:`~study.config.ProxySpec` -> :class:`ProxyData` in memory;
cache_proxy: the ProxySpec that reads a prepared cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import torch

from study.config import ProxySpec
from study.data._cache import load_cache
from study.data._check import check_cache
from study.data._registry import CACHE, get_source
from study.data._types import ProxyData, Split
from study.validate import ConfigError

__all__ = ["load_proxy", "cache_proxy"]


def load_proxy(proxy: ProxySpec) -> ProxyData:
    """The train and val splits ``proxy`` describes.

    - ``source="synthetic"`` (or another generated source): made in memory from
      ``subset_seed``, sized by ``num_classes``, ``resolution``, ``images_per_class``
      and ``val_per_class``.
    - ``source="cache"``, ``data=DIR``: a cache written by ``python -m study.data prepare``,
      memory-mapped; see :func:`study.data.load_cache` for how ``resolution``,
      ``num_classes``, ``images_per_class`` and ``val_per_class`` select from it.
    - a file source (``imagefolder``, ...): ValueError saying how to prepare a cache.
    """
    if not isinstance(proxy, ProxySpec):
        raise TypeError(f"proxy: expected a ProxySpec, got {type(proxy).__name__}")
    part = proxy.part()
    if part is not None:
        i, n = part
        whole = dataclasses.replace(proxy, val_part=None, val_per_class=proxy.val_per_class * n if proxy.val_per_class else None)
        return validation_part(load_proxy(whole), i, n, proxy.val_per_class)
    if proxy.source == CACHE:
        if not proxy.data:
            raise ConfigError("proxy.data", "source 'cache' needs data=DIR, a folder written by `python -m study.data prepare`")
        return load_cache(proxy.data, resolution=proxy.resolution, num_classes=proxy.num_classes,
                          images_per_class=proxy.images_per_class, val_per_class=proxy.val_per_class,
                          subset_seed=proxy.subset_seed)
    return get_source(proxy.source).load(proxy)


def validation_part(data: ProxyData, i: int, n: int, per_class: int | None = None) -> ProxyData:
    """``data`` validating on the i-th of n disjoint parts of its validation images: of each
    class's images (in their order), every n-th from the i-th on, at most ``per_class``."""
    labels = data.val.labels
    keep = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()[i - 1::n]
        keep.append(idx[:per_class] if per_class else idx)
    idx = torch.sort(torch.cat(keep)).values
    val = Split(data.val.images[idx], labels[idx])
    return dataclasses.replace(data, val=val, info={**data.info, "val_part": f"{i}/{n}", "val_images": int(idx.numel())})


#: the fields a cache's manifest decides unless the caller keeps its own
CACHE_FIELDS = ("resolution", "num_classes")


def cache_proxy(data: str | Path, base: ProxySpec | None = None, *, keep: Iterable[str] = ()) -> ProxySpec:
    """The proxy that reads the prepared cache ``data`` (``--data DIR`` of ``study.run`` and
    ``study.train``): ``base``'s fields (a preset's, a config's; default ``ProxySpec()``)
    with ``source="cache"``, ``data`` as given, and the cache's own resolution and class
    count, except the fields named in ``keep`` (``"resolution"``, ``"num_classes"``), which
    stay ``base``'s. A folder that is not a complete cache, or whose arrays do not match its
    manifest, raises (:func:`~study.data.check_cache`: :class:`~study.data.CacheError`)."""
    keep = set(keep)
    unknown = keep - set(CACHE_FIELDS)
    if unknown:
        raise ConfigError("keep", f"only {', '.join(CACHE_FIELDS)} come from a cache, got {', '.join(sorted(unknown))}")
    manifest = check_cache(data)
    fields = {**(base or ProxySpec()).to_dict(), "source": CACHE, "data": str(data)}
    fields.update({name: int(manifest[name]) for name in CACHE_FIELDS if name not in keep})
    return ProxySpec.from_dict(fields)
