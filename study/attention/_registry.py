"""The attention registry: string keys resolved to module classes at the edge.

Every registered class derives from :class:`AttentionModule` and declares ``PARAMS``, a
mapping from each keyword parameter it accepts to that parameter's paper default. A class
validates its parameters in :meth:`AttentionModule.resolve` (a classmethod, so callers such
as :func:`study.models.describe_stages` can validate and resolve a stage without building
anything), and ``__init__`` calls the same method.

Parameters left at their default are completed per stage in ``resolve``: the reductions
(``r``, ``dim``, ``groups``) from the stage's channels, and the parameters that must fit the
stage's feature map (BAM's ``dilation``, Gather-Excite's global ``size``: a class's
``MAP_PARAMS``) from ``feature_map``, the (H, W) its attention sees, when the caller knows it
(:func:`study.models.describe_stages` given the input resolution). Explicit values are
never changed; with a known ``feature_map`` they are checked against it there and then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn

from study.registry import Registry

if TYPE_CHECKING:
    from study.config import AttentionSpec

__all__ = [
    "AttentionModule",
    "register_attention",
    "list_attention",
    "get_attention",
    "attention_params",
    "resolve_attention",
    "create_attention",
    "ATTENTION_PARAMS",
    "psi_kinds",
]


class AttentionModule(nn.Module):
    """Base of every attention module: maps (N, C, H, W) to the same shape.

    Subclasses set ``PARAMS`` (parameter name -> paper default) and override
    :meth:`_resolve` to validate and complete their parameters, and may override
    :meth:`expected_params` with the closed-form parameter count.
    """

    #: registry key, set by :func:`register_attention`
    kind: str = ""
    #: keyword parameters the kind takes, with the paper's defaults
    PARAMS: Mapping[str, Any] = MappingProxyType({})
    #: True for kinds whose ``k`` may come from psi(C) given ``gamma`` and ``b`` (ECA, ECA-NS)
    USES_PSI: bool = False
    #: parameters that must fit the feature map; left at their default they resolve from it
    MAP_PARAMS: tuple[str, ...] = ()

    def __init__(self, channels: int, /, *, feature_map: tuple[int, int] | None = None, **params: Any):
        super().__init__()
        self.channels = channels
        #: the validated, completed parameters (ECA: with its resolved ``k``)
        self.params: dict[str, Any] = type(self).resolve(channels, feature_map=feature_map, **params)

    @classmethod
    def resolve(cls, channels: int, /, *, feature_map: tuple[int, int] | None = None, **params: Any) -> dict[str, Any]:
        """Validate ``channels`` and ``params`` and return the completed parameter dict.

        ``feature_map``: the (H, W) the module will see, when known; parameters in
        :attr:`MAP_PARAMS` left at their default then resolve from it, and explicit ones are
        checked against it. Raises ``ValueError`` naming an unknown parameter (with the
        kind's valid ones) or a value out of its allowed range.
        """
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: must be an integer >= 1, got {channels!r}")
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            valid = ", ".join(cls.PARAMS) or "none"
            raise ValueError(f"attention {cls.kind!r}: unknown parameter {unknown[0]!r} (valid parameters: {valid})")
        return cls._resolve(channels, dict(params), _check_feature_map(feature_map))

    @classmethod
    def _resolve(cls, channels: int, params: dict[str, Any], feature_map: tuple[int, int] | None) -> dict[str, Any]:
        """The completed parameters: ``params`` as given, the rest at their defaults (those
        of :attr:`MAP_PARAMS` from ``feature_map`` when it is known)."""
        return {**cls.PARAMS, **params}

    @classmethod
    def expected_params(cls, channels: int, /, **params: Any) -> int:
        """The closed-form number of trainable parameters for ``channels`` and ``params``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"channels={self.channels}" + (f", {inner}" if inner else "")


def _check_feature_map(feature_map: Any) -> tuple[int, int] | None:
    if feature_map is None:
        return None
    ok = isinstance(feature_map, (tuple, list)) and len(feature_map) == 2
    if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in feature_map):
        raise ValueError(f"feature_map: expected (H, W), two integers >= 1, got {feature_map!r}")
    return int(feature_map[0]), int(feature_map[1])


_REGISTRY: Registry[type[AttentionModule]] = Registry("attention kind", plural="kinds")
_PARAMS: dict[str, Mapping[str, Any]] = {}

#: kind -> read-only mapping of its keyword parameters and their paper defaults
ATTENTION_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(_PARAMS)

T = TypeVar("T", bound=type)


def register_attention(name: str) -> Callable[[T], T]:
    """Class decorator registering an :class:`AttentionModule` subclass under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, AttentionModule)):
            raise TypeError(f"register_attention({name!r}): {cls!r} is not an AttentionModule subclass")
        if "feature_map" in cls.PARAMS or not set(cls.MAP_PARAMS) <= set(cls.PARAMS):
            raise TypeError(f"register_attention({name!r}): 'feature_map' cannot be a parameter, and MAP_PARAMS must name parameters")
        _REGISTRY.register(name, cls)
        cls.kind = name
        cls.PARAMS = MappingProxyType(dict(cls.PARAMS))
        _PARAMS[name] = cls.PARAMS
        return cls

    return decorator


def list_attention() -> list[str]:
    """The registered attention keys, sorted."""
    return _REGISTRY.names()


def get_attention(kind: str) -> type[AttentionModule]:
    """The class registered under ``kind``; a ValueError lists the valid keys."""
    return _REGISTRY.get(kind)


def psi_kinds() -> tuple[str, ...]:
    """The kinds whose kernel size k may come from the psi(C) mapping (ECA and ECA-NS)."""
    return tuple(n for n, cls in _REGISTRY.items() if cls.USES_PSI)


def attention_params(kind: str) -> dict[str, Any]:
    """The keyword parameters ``kind`` takes, with their paper defaults."""
    return dict(get_attention(kind).PARAMS)


def _split(kind_or_spec: str | AttentionSpec | Mapping[str, Any], params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(kind_or_spec, str):
        return kind_or_spec, dict(params)
    # study.config.AttentionSpec (duck-typed: .kind and .kwargs) or its dict form
    if hasattr(kind_or_spec, "kind") and hasattr(kind_or_spec, "kwargs"):
        return kind_or_spec.kind, {**kind_or_spec.kwargs, **params}
    if isinstance(kind_or_spec, Mapping):
        if "kind" not in kind_or_spec:
            raise ValueError(f"attention: missing key 'kind' in {dict(kind_or_spec)!r}")
        spec = dict(kind_or_spec)
        return spec.pop("kind"), {**spec, **params}
    raise ValueError(f"attention: expected a kind name, an AttentionSpec or a dict, got {kind_or_spec!r}")


def resolve_attention(kind_or_spec: str | AttentionSpec | Mapping[str, Any], channels: int, /, *,
                      feature_map: tuple[int, int] | None = None, **params: Any) -> tuple[str, dict[str, Any]]:
    """Validate an attention choice for ``channels`` (and, when given, the (H, W)
    ``feature_map`` it sees) without building it.

    Returns ``(kind, completed_params)``; for ECA the completed parameters hold the
    resolved ``k``, for BAM and Gather-Excite the ``dilation`` and ``size`` resolved from
    ``feature_map``.
    """
    kind, merged = _split(kind_or_spec, params)
    return kind, get_attention(kind).resolve(channels, feature_map=feature_map, **merged)


def create_attention(kind_or_spec: str | AttentionSpec | Mapping[str, Any], channels: int, /, *, feature_map: tuple[int, int] | None = None,
                     **params: Any) -> AttentionModule:
    """Build the attention module for ``channels`` channels.

    ``kind_or_spec`` is a registered key (``"eca"``), a :class:`study.config.AttentionSpec`
    or its dict form (``{"kind": "eca", "k": 3}``); keyword ``params`` override the spec's.
    Parameters not given take the paper's defaults; ``feature_map`` (H, W), when given,
    fits the defaults that depend on the map (``create_attention("ge_theta", 64,
    feature_map=(7, 7))`` gathers with a 7x7 kernel).
    """
    kind, merged = _split(kind_or_spec, params)
    return get_attention(kind)(channels, feature_map=feature_map, **merged)
