"""Named proxies: a source bundled with its knobs (resolution, images per class, ...); facts
without torch (:mod:`study.data`, which loads them, re-exports them).

The ``in100-*`` presets read a cache made once by ``python -m study.data prepare``; their
``data`` folder is ``$STUDY_CACHE_DIR/<preset>`` (``STUDY_CACHE_DIR`` defaults to
``caches``, relative to the working directory), read when :func:`proxy_preset` is called::

    python -m study.data prepare --source imagenet100 --root /data/imagenet --res 32 --out caches/in100-32
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from study.config import ProxySpec

__all__ = ["proxy_preset", "list_proxies", "PRESETS", "preset_command"]

#: name -> (ProxySpec fields, short description); ``data`` None for cache presets is filled in.
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "synthetic": ({"source": "synthetic", "resolution": 32, "num_classes": 100},
                  "built-in 100-class synthetic proxy at 32 px (no files; for running the machinery)"),
    "synthetic-small": ({"source": "synthetic", "resolution": 16, "num_classes": 10, "images_per_class": 20, "val_per_class": 10},
                        "10-class, 16 px synthetic proxy for smoke tests"),
    "in100-32": ({"source": "cache", "resolution": 32, "num_classes": 100, "augment": "crop_flip"},
                 "ImageNet-100 at 32 px (cache from the ImageNet tree or Downsampled ImageNet 32x32)"),
    "in100-64": ({"source": "cache", "resolution": 64, "num_classes": 100, "augment": "crop_flip"},
                 "ImageNet-100 at 64 px"),
    "in100-64-half": ({"source": "cache", "resolution": 64, "num_classes": 100, "augment": "crop_flip", "images_per_class": 0.5},
                      "ImageNet-100 at 64 px, half of every class's training images (seeded)"),
    "in100-128": ({"source": "cache", "resolution": 128, "num_classes": 100, "augment": "rrc_flip"},
                  "ImageNet-100 at 128 px with random-resized crops"),
    "in100-224": ({"source": "cache", "resolution": 224, "num_classes": 100, "augment": "rrc_flip"},
                  "ImageNet-100 at 224 px for full training of exported configs (python -m analysis.export)"),
}


def list_proxies() -> list[str]:
    """Names of the proxy presets, sorted."""
    return sorted(PRESETS)


def _cache_name(name: str) -> str:
    return name.split("-half")[0]


def preset_command(name: str) -> str | None:
    """The ``prepare`` command that makes a cache preset's folder (None for generated ones)."""
    fields, _ = PRESETS[name]
    if fields["source"] != "cache":
        return None
    spec = proxy_preset(name)
    return f"python -m study.data prepare --source imagenet100 --root IMAGENET --res {fields['resolution']} --out {spec.data}"


def proxy_preset(name: str, **overrides: Any) -> ProxySpec:
    """The :class:`~study.config.ProxySpec` of preset ``name``, with ``overrides`` applied.

    ``proxy_preset("in100-64", images_per_class=100)``; ValueError lists the valid names.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown proxy preset {name!r} (valid: {', '.join(list_proxies())})")
    fields = dict(PRESETS[name][0])
    if fields["source"] == "cache":
        fields["data"] = os.path.join(os.environ.get("STUDY_CACHE_DIR", "caches"), _cache_name(name))
    spec = ProxySpec(**fields)
    return dataclasses.replace(spec, **overrides) if overrides else spec
