"""load_proxy: a :class:`~study.config.ProxySpec` -> :class:`ProxyData` in memory."""

from __future__ import annotations

from study.config import ProxySpec
from study.data._registry import CACHE, get_source
from study.data._types import ProxyData

__all__ = ["load_proxy"]


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
    if proxy.source == CACHE:
        from study.data._cache import load_cache

        if not proxy.data:
            raise ValueError("proxy.data: source 'cache' needs data=DIR, a folder written by `python -m study.data prepare`")
        return load_cache(proxy.data, resolution=proxy.resolution, num_classes=proxy.num_classes,
                          images_per_class=proxy.images_per_class, val_per_class=proxy.val_per_class,
                          subset_seed=proxy.subset_seed)
    return get_source(proxy.source).load(proxy)
