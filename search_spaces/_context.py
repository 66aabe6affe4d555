"""What a space is given: the study's settings that shape a trial's config, typed and frozen.

A space is ``define(trial, ctx) -> TrialConfig``; ``ctx`` is a :class:`SpaceContext` (the
backbone, stem, width, proxy, recipe, seed, design and the space's own options), and
:meth:`SpaceContext.config` builds the TrialConfig from the stages it sampled. A space written
the old way, ``define(trial, *, backbone, width=None, **settings)`` with
:func:`make_config`, keeps working: :func:`adapt` hands it the context as keywords.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from study.config import ArchSpec, AttentionSpec, ProxySpec, Recipe, TrialConfig

__all__ = ["SpaceContext", "make_config", "adapt"]


@dataclass(frozen=True, kw_only=True)
class SpaceContext:
    """The study's settings a space builds a trial's config from (the runners make it from a
    study's settings: :meth:`runners.StudySettings.space_context`).

    ``width`` None: the space decides (it samples one, or takes its own default); ``seed`` is
    the trial's own (its seed mode's); ``design`` the study's design (a space supports the
    designs it registered); ``options`` the space's own settings (``--kinds``, ``--from``).
    """

    backbone: str
    stem: str
    width: float | None
    proxy: ProxySpec
    recipe: Recipe
    seed: int
    design: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def config(self, stages: Sequence[AttentionSpec | Mapping[str, Any]], *, width: float | None = None) -> TrialConfig:
        """The TrialConfig of a space's sampled per-stage attention: the study's backbone, stem,
        proxy (the classifier has ``proxy.num_classes`` outputs), recipe and seed; ``width``
        the study's, else the one the space chose."""
        w = self.width if self.width is not None else width
        arch = ArchSpec(backbone=self.backbone, stages=tuple(stages), stem=self.stem, width=w, num_classes=self.proxy.num_classes)
        return TrialConfig(arch=arch, recipe=self.recipe, proxy=self.proxy, seed=self.seed)

    def replace(self, **changes: Any) -> SpaceContext:
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        """The context as the keywords of a space written the old way."""
        return {f.name: dict(self.options) if f.name == "options" else getattr(self, f.name) for f in dataclasses.fields(self)}

    def __reduce__(self):  # pickles with its options as a dict (a mapping proxy does not pickle)
        return (_rebuild, (self.as_kwargs(),))


def _rebuild(kwargs: dict[str, Any]) -> SpaceContext:
    return SpaceContext(**kwargs)


def make_config(
    stages: Sequence[AttentionSpec | Mapping[str, Any]],
    *,
    backbone: str,
    stem: str,
    width: float,
    proxy: ProxySpec,
    recipe: Recipe,
    seed: int,
    design: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> TrialConfig:
    """The TrialConfig of a space written the old way (``define(trial, **settings)``): its
    sampled stages under the settings it was given (``design`` and ``options`` are accepted
    and not needed; any other keyword is an error, not dropped)."""
    ctx = SpaceContext(backbone=backbone, stem=stem, width=width, proxy=proxy, recipe=recipe, seed=seed, design=design or "search")
    return ctx.config(stages)


def _takes_context(fn: Callable[..., Any], before: int) -> bool:
    """Whether ``fn`` takes the context positionally after ``before`` positional arguments
    (the new way), rather than the settings as keywords (the old way)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature: the new way
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > before or any(p.kind == p.VAR_POSITIONAL for p in params)


def adapt(fn: Callable[..., Any], *, before: int) -> Callable[..., Any]:
    """``fn`` as a function of (``before`` positional arguments, the context): itself when
    written the new way, else the one adapter that hands it the context as keywords."""
    if _takes_context(fn, before):
        return fn

    def old_way(*args: Any) -> Any:
        *head, ctx = args
        return fn(*head, **ctx.as_kwargs())

    old_way.__wrapped__ = fn  # type: ignore[attr-defined]
    return old_way
