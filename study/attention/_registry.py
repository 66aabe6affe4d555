"""The attention registry: string keys resolved to module classes at the edge.

Every kind is an :class:`AttentionModule` subclass registered with its declaration
(:class:`study.catalogue.AttentionKind`, in the same module) by :func:`register_attention`;
the declaration gives the class its parameters and their paper defaults (``PARAMS``), the
parameters that fit the feature map (``MAP_PARAMS``) and whether psi(C) may set its ``k``
(``USES_PSI``). A class validates its parameters in :meth:`AttentionModule.resolve` (a
classmethod, so callers such as :func:`study.models.describe_stages` can validate and
resolve a stage without building anything), and ``__init__`` calls the same method.

Parameters left at their default are completed per stage in ``resolve``: the reductions
(``r``, ``dim``, ``groups``) from the stage's channels, and the parameters that must fit the
stage's feature map (BAM's ``dilation``, Gather-Excite's global ``size``) from
``feature_map``, the (H, W) its attention sees, when the caller knows it
(:func:`study.models.describe_stages` given the input resolution). Explicit values are
never changed; with a known ``feature_map`` they are checked against it there and then.

A channel attention whose output is ``x * gate(mean_hw(x))`` derives from :class:`PooledGate`
and writes only ``gate``; its ``forward`` is those plain operations, and the backbones run it
through the measured fused path (:func:`study.attention.bn_attention`) without further code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from study.catalogue import ATTENTION_PARAMS, AttentionKind, Param, declare, psi_kinds
from study.registry import Registry
from study.validate import ConfigError, check_int

if TYPE_CHECKING:
    from study.config import AttentionSpec

__all__ = [
    "AttentionModule",
    "PooledGate",
    "register_attention",
    "list_attention",
    "get_attention",
    "attention_params",
    "resolve_attention",
    "create_attention",
    "ATTENTION_PARAMS",
    "psi_kinds",
    "limited",
]


@contextmanager
def _said_as(kind: str) -> Iterator[None]:
    """A parameter check's :class:`~study.validate.ConfigError` (field ``r``: "must be ...")
    in an attention module's words: "attention 'se': r must be ..."."""
    try:
        yield
    except ConfigError as exc:
        if exc.field is None:
            raise
        raise ConfigError(None, f"attention {kind!r}: {exc.field} {exc.reason}") from None


class AttentionModule(nn.Module):
    """Base of every attention module: maps (N, C, H, W) to the same shape.

    A subclass is registered with its declaration (:func:`register_attention`), may override
    :meth:`_resolve` to validate and complete its parameters, and :meth:`expected_params`
    with the closed-form parameter count. ``forward`` is plain PyTorch.
    """

    #: registry key and declaration, set by :func:`register_attention`
    kind: str = ""
    declaration: AttentionKind | None = None
    #: keyword parameters the kind takes, with the paper's defaults (from the declaration)
    PARAMS: Mapping[str, Any] = MappingProxyType({})
    #: True for kinds whose ``k`` may come from psi(C) given ``gamma`` and ``b``
    USES_PSI: bool = False
    #: parameters that must fit the feature map; left at their default they resolve from it
    MAP_PARAMS: tuple[str, ...] = ()
    #: True where the output is ``x * gate(mean_hw(x))`` (:class:`PooledGate`): the fused path applies
    pooled_gate: bool = False

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
        feature_map = _check_feature_map(feature_map)
        with _said_as(cls.kind):
            return cls._resolve(channels, dict(params), feature_map)

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


class PooledGate(AttentionModule):
    """A channel attention ``y = x * gate(mean_hw(x))``: the pooled (N, C) vector's channel
    weights (N, C) scale the map. A subclass writes :meth:`gate`; :meth:`forward` is the plain
    operations. The backbones run it through the fused (and, after batch norm, memory-lean)
    path of :func:`study.attention.bn_attention`, which calls :meth:`fused_gate`: the same
    function, or a faster form of it a subclass provides (ECA's channel convolution)."""

    pooled_gate = True

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        """The channel weights (N, C) for the pooled vector ``y`` (N, C)."""
        raise NotImplementedError

    def fused_gate(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`gate` as the fused path computes it (by default: :meth:`gate` itself)."""
        return self.gate(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


def limited(kind: type[AttentionModule], name: str, channels: int, params: Mapping[str, Any],
            feature_map: tuple[int, int] | None = None, *, why: str = "") -> int:
    """An integer parameter with a declared limit (``at_most``: the channels, half of them, the
    map's side minus one). Left at its default it resolves per stage to ``min(default,
    limit)`` (at least 1); an explicit value must lie in [1, limit] (``why`` says why)."""
    param = kind.declaration.params[name]
    side = None if feature_map is None else max(feature_map)
    limit = param.limit(channels, side)
    if name not in params:
        return param.default if limit is None else max(1, min(param.default, limit))
    if limit is None:
        return check_int(params[name], name, 1, whole=True)
    reason = why or (f"channels={channels}" if param.at_most == "channels" else "")
    return check_int(params[name], name, 1, limit, why=reason, whole=True)


def _check_feature_map(feature_map: Any) -> tuple[int, int] | None:
    if feature_map is None:
        return None
    ok = isinstance(feature_map, (tuple, list)) and len(feature_map) == 2
    if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in feature_map):
        raise ValueError(f"feature_map: expected (H, W), two integers >= 1, got {feature_map!r}")
    return int(feature_map[0]), int(feature_map[1])


_REGISTRY: Registry[type[AttentionModule]] = Registry("attention kind", plural="kinds")

T = TypeVar("T", bound=type)


def _declared(name: str, cls: type[AttentionModule]) -> AttentionKind:
    """The declaration of a class registered by name only: its ``PARAMS`` (not searched)."""
    return AttentionKind(name, params={k: Param(v) for k, v in dict(cls.PARAMS).items()}, psi=cls.USES_PSI,
                         map_params=cls.MAP_PARAMS, searched=False)


def register_attention(kind: AttentionKind | str) -> Callable[[T], T]:
    """Class decorator registering an :class:`AttentionModule` subclass as ``kind``: its
    declaration (:class:`study.catalogue.AttentionKind`), or a name for a class that states
    its ``PARAMS`` (and ``MAP_PARAMS``, ``USES_PSI``) itself and is chosen only where named."""
    if isinstance(kind, str):
        if not kind:
            raise ValueError(f"name: expected a non-empty string, got {kind!r}")
    elif not isinstance(kind, AttentionKind):
        raise ValueError(f"kind: expected an AttentionKind or a name, got {kind!r}")

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, AttentionModule)):
            raise TypeError(f"register_attention({getattr(kind, 'name', kind)!r}): {cls!r} is not an AttentionModule subclass")
        declaration = _declared(kind, cls) if isinstance(kind, str) else kind
        _REGISTRY.register(declaration.name, cls)
        try:
            declare(declaration, cls.__module__)
        except ValueError:
            _REGISTRY.pop(declaration.name)
            raise
        cls.kind = declaration.name
        cls.declaration = declaration
        cls.PARAMS = MappingProxyType(declaration.defaults)
        cls.MAP_PARAMS = declaration.map_params
        cls.USES_PSI = declaration.psi
        return cls

    return decorator


def list_attention() -> list[str]:
    """The registered attention keys, sorted."""
    return _REGISTRY.names()


def get_attention(kind: str) -> type[AttentionModule]:
    """The class registered under ``kind``; a ValueError lists the valid keys."""
    return _REGISTRY.get(kind)


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
