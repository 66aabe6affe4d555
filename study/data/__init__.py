"""Proxy data: sources, the decode-once cache, and the on-device loader.

- :func:`load_proxy` turns a :class:`~study.config.ProxySpec` into :class:`ProxyData`
  (two :class:`Split` s of uint8 NHWC images and int64 labels, class names, resolution).
- :class:`DeviceLoader` serves ``(x, y)`` batches from a split held on the device (or
  streamed from host memory through pinned buffers), augmented on the device, optionally
  one rank's shard of a data-parallel group; no per-image Python.
- Sources are a registry (:func:`register_source`, :func:`list_sources`): ``synthetic``
  (generated, no files), and the file sources ``imagefolder``, ``imagenet100`` and
  ``imagenet-downsampled`` that ``python -m study.data prepare`` decodes once into a cache
  (:func:`prepare`), read back with ``ProxySpec(source="cache", data=DIR)``; every reader
  first checks the cache's arrays against its manifest (:func:`check_cache`, milliseconds),
  :func:`verify_cache` their checksums too.
- Presets (:func:`proxy_preset`, :func:`list_proxies`): ``synthetic``, ``in100-32``, ...

ImageNet-100 labels: label ``i`` is the ``i``-th wnid of the class list in *sorted* order
(:func:`imagenet100_classes`), whatever the source (third-party loaders disagree).
"""

from study.data import _downsampled, _files  # noqa: F401  (register the file sources)
from study.data._cache import load_cache, read_manifest
from study.data._check import CacheError, check_cache, remake_command, verify_cache
from study.data._classes import imagenet100_classes, read_class_file, read_label_map
from study.data._decode import decode_chunk
from study.data._loader import AUGMENTS, IMAGENET_MEAN, IMAGENET_STD, PLACEMENTS, DeviceLoader, choose_placement, list_augments
from study.data._prepare import Decoder, PrepareWarning, decode_parallel, prepare
from study.data._proxy import cache_proxy, load_proxy
from study.data._registry import CACHE, ProxySource, get_source, list_sources, register_source
from study.data._synthetic import DEFAULT_TRAIN_PER_CLASS, DEFAULT_VAL_PER_CLASS, SyntheticSource, make_synthetic
from study.data._types import ProxyData, Split, balanced_subset
from study.proxies import list_proxies, proxy_preset

__all__ = [
    "decode_chunk",
    "decode_parallel",
    "Decoder",
    "load_proxy",
    "SyntheticSource",
    "cache_proxy",
    "ProxyData",
    "Split",
    "DeviceLoader",
    "PLACEMENTS",
    "choose_placement",
    "AUGMENTS",
    "list_augments",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "proxy_preset",
    "list_proxies",
    "register_source",
    "list_sources",
    "get_source",
    "ProxySource",
    "CACHE",
    "make_synthetic",
    "DEFAULT_TRAIN_PER_CLASS",
    "DEFAULT_VAL_PER_CLASS",
    "load_cache",
    "read_manifest",
    "check_cache",
    "verify_cache",
    "CacheError",
    "remake_command",
    "balanced_subset",
    "prepare",
    "PrepareWarning",
    "imagenet100_classes",
    "read_class_file",
    "read_label_map",
]
