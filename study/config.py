"""One trial's full description, and its one JSON form.

A :class:`TrialConfig` (architecture + training recipe + proxy data + seed) is what a search
space produces, what a trial stores in the Optuna study, what analysis exports and what
``python -m study.train --config X.json`` consumes. There is no second config format.

Every config is a frozen dataclass. ``to_dict`` writes every field; ``from_dict`` accepts
the same form, fills fields that have defaults, and raises a :class:`ConfigError` naming
the key for an unknown key, a missing required key or a value of the wrong type.

The JSON form of an architecture::

    {"backbone": "resnet50", "stem": "imagenet", "width": 1.0, "num_classes": 1000,
     "stages": [{"kind": "eca", "k": 3}, {"kind": "eca", "gamma": 2, "b": 1},
                {"kind": "se", "r": 16}, {"kind": "none"}]}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from study.catalogue import STEMS, backbone_plan
from study.validate import ConfigError, as_number, check_choice, nested

__all__ = [
    "ConfigError",
    "AttentionSpec",
    "ArchSpec",
    "Recipe",
    "ProxySpec",
    "TrialConfig",
    "load_config",
]


# --------------------------------------------------------------------------------------
# helpers


def repr_non_default(obj: Any) -> str:
    """``Name(field=value, ...)`` listing only fields that differ from their defaults."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():  # type: ignore[misc]
            continue
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(where, f"unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(known))})")
    for f in fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data:  # type: ignore[misc]
            raise ConfigError(where, f"missing required key {f.name!r}")


def _scalar(value: Any, key: str) -> bool | int | float | str | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(key, f"expected a number, string, boolean or null, got {type(value).__name__}")


_Flat = TypeVar("_Flat", bound="_FlatConfig")


class _FlatConfig:
    """JSON form of a dataclass whose fields are all plain values: every field, by name."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Flat], data: Mapping[str, Any], where: str | None = None) -> _Flat:
        _check_keys(cls, data, where or cls.__name__.lower())
        if where is None:
            return cls(**data)
        with nested(where):  # its fields' errors name them under ``where`` ("recipe.lr")
            return cls(**data)

    def __repr__(self) -> str:
        return repr_non_default(self)


# --------------------------------------------------------------------------------------
# architecture


@dataclass(frozen=True)
class AttentionSpec:
    """The attention of one stage: a registered kind and its own keyword parameters.

    ``params`` is stored as a sorted tuple of ``(name, value)`` pairs so the spec is
    hashable; :attr:`kwargs` gives it back as a dict. Parameters a kind does not name take
    that kind's paper default (``AttentionSpec("eca")`` means gamma=2, b=1). Validation of
    the kind and its parameters happens in :func:`study.attention.create_attention`.
    """

    kind: str = "none"
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ConfigError(f"attention kind: expected a non-empty string, got {self.kind!r}")
        items = dict(self.params)
        if len(items) != len(self.params):
            raise ConfigError(f"attention {self.kind!r}: duplicate parameter names")
        normalized = tuple(sorted((str(k), _scalar(v, f"attention {self.kind!r} parameter {k!r}")) for k, v in items.items()))
        object.__setattr__(self, "params", normalized)

    @classmethod
    def of(cls, kind: str, **params: Any) -> AttentionSpec:
        """``AttentionSpec.of("eca", k=3)``."""
        return cls(kind, tuple(params.items()))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.kwargs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, where: str = "stage") -> AttentionSpec:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping):
            raise ConfigError(where, f"expected an object like {{'kind': 'eca', 'k': 3}}, got {data!r}")
        if "kind" not in data:
            raise ConfigError(where, "missing required key 'kind'")
        params = {k: v for k, v in data.items() if k != "kind"}
        return cls(data["kind"], tuple(params.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"AttentionSpec({self.kind!r}{', ' if inner else ''}{inner})"


#: Which channel count the ECA mapping psi(C) sees when a stage asks for (gamma, b):
#: "channels" - the channels the attention acts on (a bottleneck's output, planes x 4);
#: "planes"   - the block's ``planes`` (its inner width), which reproduces several of the
#:              ECA authors' released per-stage k settings.
PSI_INPUTS = ("channels", "planes")


@dataclass(frozen=True)
class ArchSpec:
    """A backbone with one :class:`AttentionSpec` per stage.

    ``stages`` must hold exactly one entry per stage of the backbone (its plan in
    :mod:`study.catalogue` knows the count; checked here). Use :meth:`uniform` for "the same
    attention in every stage".
    """

    backbone: str
    stages: tuple[AttentionSpec, ...]
    stem: str = "imagenet"
    width: float = 1.0
    num_classes: int = 1000
    psi_input: str = "channels"

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ConfigError("backbone", f"expected a non-empty string, got {self.backbone!r}")
        try:
            plan = backbone_plan(self.backbone)
        except ValueError as exc:
            raise ConfigError("backbone", str(exc)) from None
        check_choice(self.stem, "stem", STEMS)
        stages = tuple(s if isinstance(s, AttentionSpec) else AttentionSpec.from_dict(s, f"stages[{i}]") for i, s in enumerate(self.stages))
        if len(stages) != plan.num_stages:
            raise ConfigError("stages", f"backbone {self.backbone!r} has {plan.num_stages} stages, so stages needs "
                              f"{plan.num_stages} entries, got {len(stages)}")
        object.__setattr__(self, "stages", stages)
        width = as_number(self.width, "width")
        if not 0.25 <= width <= 2.0:
            raise ConfigError("width", f"must be in [0.25, 2.0], got {width!r}")
        object.__setattr__(self, "width", float(width))
        num_classes = as_number(self.num_classes, "num_classes", integer=True)
        if num_classes < 1:
            raise ConfigError("num_classes", f"must be >= 1, got {num_classes!r}")
        object.__setattr__(self, "num_classes", num_classes)
        if self.psi_input not in PSI_INPUTS:
            raise ConfigError("psi_input", f"must be one of {', '.join(PSI_INPUTS)}, got {self.psi_input!r}")

    @classmethod
    def uniform(cls, backbone: str, attention: AttentionSpec | Mapping[str, Any] | str = "none", **kwargs: Any) -> ArchSpec:
        """The same attention in every stage of ``backbone``."""
        try:
            n = backbone_plan(backbone).num_stages
        except ValueError as exc:
            raise ConfigError("backbone", str(exc)) from None
        spec = attention if isinstance(attention, AttentionSpec) else AttentionSpec.from_dict(attention, "attention")
        return cls(backbone=backbone, stages=(spec,) * n, **kwargs)

    def with_stages(self, stages: Iterable[AttentionSpec | Mapping[str, Any]]) -> ArchSpec:
        return dataclasses.replace(self, stages=tuple(stages))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "stem": self.stem,
            "width": self.width,
            "num_classes": self.num_classes,
            "psi_input": self.psi_input,
            "stages": [s.to_dict() for s in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | None = None) -> ArchSpec:
        """``where`` (e.g. "arch" inside a TrialConfig) prefixes the fields' paths in errors."""
        at = where or "arch"
        _check_keys(cls, data, at)
        if not isinstance(data["stages"], (list, tuple)):
            raise ConfigError(f"{at}.stages", "expected a list with one entry per stage")
        stages = tuple(AttentionSpec.from_dict(s, f"{at}.stages[{i}]") for i, s in enumerate(data["stages"]))
        if where is None:
            return cls(**{**data, "stages": stages})
        with nested(where):
            return cls(**{**data, "stages": stages})

    __repr__ = repr_non_default


# --------------------------------------------------------------------------------------
# training recipe

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True, repr=False)
class Recipe(_FlatConfig):
    """How one trial trains.

    SGD with Nesterov momentum; ``lr`` is the peak learning rate for ``batch_size``;
    ``warmup_epochs`` of linear warm-up, then ``schedule``: "cosine" decay to zero, or
    "step" decay by ``step_factor`` every ``step_every`` epochs (the ECA paper's ImageNet
    schedule: lr 0.1 for batch 256, x0.1 every 30 epochs, 100 epochs, weight decay 1e-4).
    Weight decay is not applied to BN and bias parameters. ``amp`` (bf16 autocast) and
    ``channels_last``: null (the default) on CUDA only, true on any device (bf16 autocast
    and channels-last on the CPU too), false never (:func:`study.trainer.numerics`);
    ``compile`` wraps the model in ``torch.compile``.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    step_every: int = 30
    step_factor: float = 0.1
    label_smoothing: float = 0.1
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("epochs", 1), ("batch_size", 1), ("step_every", 1)):
            value = as_number(getattr(self, name), name, integer=True)
            if value < lo:
                raise ConfigError(name, f"must be >= {lo}, got {value!r}")
            object.__setattr__(self, name, value)
        for name, lo, hi in (
            ("lr", 0.0, math.inf),
            ("momentum", 0.0, 1.0),
            ("weight_decay", 0.0, 1.0),
            ("warmup_epochs", 0.0, math.inf),
            ("step_factor", 0.0, 1.0),
            ("label_smoothing", 0.0, 1.0),
        ):
            value = as_number(getattr(self, name), name)
            if not lo <= value <= hi or (name == "lr" and value == 0):
                raise ConfigError(name, f"must be in {'(' if name == 'lr' else '['}{lo}, {hi}], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.warmup_epochs > self.epochs:
            raise ConfigError("warmup_epochs", f"must not exceed epochs ({self.epochs}), got {self.warmup_epochs!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("nesterov", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"expected true or false, got {getattr(self, name)!r}")
        for name in ("amp", "channels_last"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"expected true, false or null (on CUDA only), got {getattr(self, name)!r}")


# --------------------------------------------------------------------------------------
# proxy data


@dataclass(frozen=True, repr=False)
class ProxySpec(_FlatConfig):
    """Which images a trial trains and validates on.

    ``source`` is a registered proxy source (``synthetic`` needs no files) or ``cache``, a
    folder written by ``python -m study.data prepare`` (``data``). ``resolution`` is the
    training resolution in pixels. ``images_per_class`` subsamples the training split,
    class-balanced and seeded by ``subset_seed``: a float in (0, 1] is a fraction, an
    integer a count, null keeps everything. ``num_classes`` and ``val_per_class`` size the
    synthetic proxy. ``augment`` names the on-device training augmentation. ``val_part``
    ``"i/n"`` validates on the i-th of n disjoint, class-balanced parts of the validation
    images (with ``val_per_class`` images a class in each where the data hold them): two
    studies that must not share validation images (an exploration and the confirmation of
    what it chose) take parts 1/2 and 2/2.
    """

    source: str = "synthetic"
    data: str | None = None
    resolution: int = 32
    num_classes: int = 100
    images_per_class: float | int | None = None
    val_per_class: int | None = None
    subset_seed: int = 0
    augment: str = "crop_flip"
    val_part: str | None = None

    def __post_init__(self) -> None:
        if self.val_part is not None:
            self.part()
        res = as_number(self.resolution, "resolution", integer=True)
        if not 8 <= res <= 1024:
            raise ConfigError("resolution", f"must be in [8, 1024], got {res!r}")
        object.__setattr__(self, "resolution", res)
        nc = as_number(self.num_classes, "num_classes", integer=True)
        if nc < 2:
            raise ConfigError("num_classes", f"must be >= 2, got {nc!r}")
        object.__setattr__(self, "num_classes", nc)
        ipc = self.images_per_class
        if ipc is not None:
            ipc = as_number(ipc, "images_per_class")
            if isinstance(ipc, float) and not ipc.is_integer():
                if not 0 < ipc <= 1:
                    raise ConfigError("images_per_class", f"a fraction must be in (0, 1], got {ipc!r}")
            elif ipc < 1:
                raise ConfigError("images_per_class", f"a count must be >= 1, got {ipc!r}")
            elif isinstance(ipc, float) and ipc != 1.0:
                ipc = int(ipc)
            object.__setattr__(self, "images_per_class", ipc)
        if self.val_per_class is not None:
            vpc = as_number(self.val_per_class, "val_per_class", integer=True)
            if vpc < 1:
                raise ConfigError("val_per_class", f"must be >= 1, got {vpc!r}")
            object.__setattr__(self, "val_per_class", vpc)
        object.__setattr__(self, "subset_seed", as_number(self.subset_seed, "subset_seed", integer=True))
        if self.data is not None and not isinstance(self.data, str):
            object.__setattr__(self, "data", str(self.data))

    def part(self) -> tuple[int, int] | None:
        """``val_part`` as (i, n), or None for every validation image."""
        if self.val_part is None:
            return None
        try:
            i, n = (int(x) for x in str(self.val_part).split("/"))
        except ValueError:
            raise ConfigError("val_part", f"expected i/n (the i-th of n parts of the validation images), got {self.val_part!r}") from None
        if not 1 <= i <= n <= 10:
            raise ConfigError("val_part", f"expected i/n with 1 <= i <= n <= 10, got {self.val_part!r}")
        return i, n


# --------------------------------------------------------------------------------------
# the trial


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: architecture, recipe, proxy and seed. ``seed`` sets the
    model's initialisation and the data's order and augmentation; ``init_seed``, when given,
    the initialisation alone (so two runs can share their data and not their backbone: what a
    paired comparison without common random numbers is)."""

    arch: ArchSpec
    recipe: Recipe = field(default_factory=Recipe)
    proxy: ProxySpec = field(default_factory=ProxySpec)
    seed: int = 0
    init_seed: int | None = None

    def __post_init__(self) -> None:
        for name, cls in (("arch", ArchSpec), ("recipe", Recipe), ("proxy", ProxySpec)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value, name))
            elif not isinstance(value, cls):
                raise ConfigError(name, f"expected {cls.__name__}, got {type(value).__name__}")
        object.__setattr__(self, "seed", as_number(self.seed, "seed", integer=True))
        if self.init_seed is not None:
            object.__setattr__(self, "init_seed", as_number(self.init_seed, "init_seed", integer=True))

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {"arch": self.arch.to_dict(), "recipe": self.recipe.to_dict(), "proxy": self.proxy.to_dict(), "seed": self.seed}
        return out if self.init_seed is None else {**out, "init_seed": self.init_seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        _check_keys(cls, data, "config")
        return cls(
            arch=ArchSpec.from_dict(data["arch"], "arch"),
            recipe=Recipe.from_dict(data.get("recipe", {}), "recipe"),
            proxy=ProxySpec.from_dict(data.get("proxy", {}), "proxy"),
            seed=data.get("seed", 0),
            init_seed=data.get("init_seed"),
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> TrialConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    __repr__ = repr_non_default


def load_config(path: str | Path) -> TrialConfig:
    """Read a TrialConfig JSON file; a :class:`ConfigError` names the file and the problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    try:
        return TrialConfig.from_json(text)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
