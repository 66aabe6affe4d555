"""The registry of proxy sources: a name -> :class:`ProxySource` subclass dict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from study.registry import Registry

if TYPE_CHECKING:
    from study.config import ProxySpec
    from study.data._listing import ArrayListing, FileListing
    from study.data._types import ProxyData

__all__ = ["ProxySource", "register_source", "list_sources", "get_source", "CACHE"]

#: ``ProxySpec.source`` value that reads a folder written by ``python -m study.data prepare``.
CACHE = "cache"

_SOURCES: Registry[type[ProxySource]] = Registry("proxy source", plural="", hint=f", or {CACHE!r} for a prepared cache")

S = TypeVar("S", bound=type)


class ProxySource:
    """A source of labelled train/val images.

    Two kinds:

    - *generated* sources (``generated = True``, e.g. ``synthetic``) make their images in
      memory: :meth:`load` turns a :class:`~study.config.ProxySpec` into a
      :class:`~study.data.ProxyData`.
    - *file* sources (``imagefolder``, ``imagenet100``, ``imagenet-downsampled``) read
      images from disk; they are decoded once by ``python -m study.data prepare`` into a
      cache (:meth:`scan` lists what to decode), and trials read the cache
      (``ProxySpec(source="cache", data=DIR)``).

    ``options`` names the keyword options :meth:`scan` accepts (the CLI flags
    ``--classes``, ``--label-map``, ``--val-split``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    generated: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    def load(self, proxy: ProxySpec) -> ProxyData:
        raise ValueError(
            f"source {self.name!r} reads image files: decode them once with "
            f"`python -m study.data prepare --source {self.name} --root ROOT --res {proxy.resolution} --out DIR`, "
            f"then use source='cache', data=DIR"
        )

    def scan(self, root: Path, **options: Any) -> FileListing | ArrayListing:
        """What to decode under ``root``: a :class:`study.data._prepare.FileListing` or
        :class:`study.data._prepare.ArrayListing`."""
        raise ValueError(f"source {self.name!r} generates its images and has nothing to prepare")


def register_source(name: str) -> Callable[[S], S]:
    """Class decorator: register a :class:`ProxySource` subclass under ``name``."""
    if not isinstance(name, str) or not name or name == CACHE:
        raise ValueError(f"source name: expected a non-empty string other than {CACHE!r}, got {name!r}")

    def deco(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, ProxySource)):
            raise TypeError(f"register_source({name!r}): expected a ProxySource subclass, got {cls!r}")
        _SOURCES.register(name, cls)
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return deco


def list_sources(*, generated: bool | None = None) -> list[str]:
    """Registered source names, sorted; ``generated=False`` lists only file sources
    (the ones ``prepare`` takes), ``generated=True`` only generated ones."""
    return [n for n, c in _SOURCES.items() if generated is None or c.generated == generated]


def get_source(name: str) -> ProxySource:
    """An instance of the source registered as ``name``; ValueError lists the valid names."""
    return _SOURCES.get(name)()
