"""What an attention kind is, declared once in its module and read here without torch.

A kind's module (``study/attention/<file>.py``) declares the kind at its top level as an
:class:`AttentionKind`: its keyword parameters with their paper defaults, the stage-dependent
limit a parameter must keep (``at_most``: at most the stage's channels, half of them, or the
feature map's side minus one), what a search samples for each (``choices`` or a float
``span``, and alternative groups of them, ``modes``), whether its kernel size k may come from
psi(C) (``psi``), the parameters that resolve from the feature map (``map_params``) and
whether a search of the kinds chooses it by default (``searched``). The module's class is
registered with the declaration (:func:`study.attention.register_attention`), reads its
defaults and limits from it, and checks the rest itself.

The module imports torch; the declaration does not need it. This catalogue reads the
declarations from the modules' source (each ``NAME = AttentionKind(...)`` at a module's top
level, evaluated with nothing but literals and :data:`VOCABULARY`), so that configs, spaces,
runners and analysis know the kinds without importing torch, and :mod:`study.attention`
imports exactly the modules that declare kinds: a new kind is its module (and its test).
Kinds registered at run time (a user's module) join through :func:`declare`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from study.catalogue._psi import B_RANGE, GAMMA_RANGE, K_CHOICES

__all__ = [
    "Param", "AttentionKind", "VOCABULARY", "REDUCTIONS", "LIMITS", "PSI_PARAMS", "PSI_MODES",
    "kind_names", "get_kind", "psi_kinds", "searched_kinds", "kind_modules", "declare", "ATTENTION_PARAMS",
]

#: the reduction ratios a search tries (SE's ablation, Hu et al., CVPR 2018, Table 10)
REDUCTIONS = (2, 4, 8, 16, 32)

#: the stage-dependent limits a parameter may declare (``at_most``), from the stage's channels
#: C and the side of its feature map
LIMITS = {
    "channels": lambda channels, side: channels,
    "channels // 2": lambda channels, side: channels // 2,
    "side - 1": lambda channels, side: None if side is None else side - 1,
}


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a kind: its paper ``default`` (None: resolved per stage, as
    the kind documents), the limit ``at_most`` (a key of :data:`LIMITS`) it must keep, and
    what a search samples for it: ``choices`` (categorical) or a float ``span`` (lo, hi);
    neither: not searched (the default is used)."""

    default: Any = None
    choices: tuple[Any, ...] = ()
    span: tuple[float, float] | None = None
    at_most: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.choices and self.span is not None:
            raise ValueError("a parameter is searched over choices or over a span, not both")
        if self.span is not None and not (len(self.span) == 2 and self.span[0] < self.span[1]):
            raise ValueError(f"span: expected (lo, hi) with lo < hi, got {self.span!r}")
        if self.at_most is not None and self.at_most not in LIMITS:
            raise ValueError(f"at_most: must be one of {', '.join(LIMITS)}, got {self.at_most!r}")

    @property
    def searched(self) -> bool:
        return bool(self.choices) or self.span is not None

    def limit(self, channels: int, side: int | None = None) -> int | None:
        """The largest value the parameter may take on a stage of ``channels`` and a map of
        ``side`` (None: no limit, or the side is not known)."""
        return None if self.at_most is None else LIMITS[self.at_most](channels, side)

    def fitting(self, channels: int, side: int | None = None) -> tuple[Any, ...]:
        """The ``choices`` within the limit on that stage; the limit itself (at least 1) when
        none is."""
        limit = self.limit(channels, side)
        if limit is None:
            return self.choices
        return tuple(c for c in self.choices if c <= limit) or (max(1, limit),)


@dataclass(frozen=True)
class AttentionKind:
    """An attention kind's declaration (module doc). ``params`` maps each keyword parameter
    to its :class:`Param`, in the order a search samples them; ``modes`` (optional) splits the
    searched parameters into alternatives a search picks among first (ECA: a fixed ``k`` or
    psi's ``gamma`` and ``b``); ``min_side`` is the smallest feature-map side the kind runs on
    (BAM's dilated convolutions need more than 1x1); ``paper`` cites where it comes from."""

    name: str
    params: Mapping[str, Param] = field(default_factory=dict)
    psi: bool = False
    map_params: tuple[str, ...] = ()
    modes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    min_side: int = 1
    searched: bool = True
    paper: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip() or "," in self.name:
            raise ValueError(f"attention kind name: expected a non-empty name without spaces or commas, got {self.name!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "modes", MappingProxyType({m: tuple(ps) for m, ps in dict(self.modes).items()}))
        object.__setattr__(self, "map_params", tuple(self.map_params))
        for name, param in self.params.items():
            if not isinstance(param, Param) or not name.isidentifier() or name == "feature_map":
                raise ValueError(f"attention kind {self.name!r}: parameter {name!r} must be an identifier other than "
                                 f"'feature_map' declared as a Param")
        if not set(self.map_params) <= set(self.params):
            raise ValueError(f"attention kind {self.name!r}: map_params must name parameters, got {self.map_params!r}")
        for mode, names in self.modes.items():
            if not names or not all(n in self.params and self.params[n].searched for n in names):
                raise ValueError(f"attention kind {self.name!r}: mode {mode!r} must name searched parameters, got {names!r}")

    @property
    def defaults(self) -> dict[str, Any]:
        """The parameters with their paper defaults."""
        return {name: p.default for name, p in self.params.items()}

    def __reduce__(self):  # pickles with its mappings as dicts (a mapping proxy does not pickle)
        return (_rebuild, (self.name, dict(self.params), self.psi, self.map_params, dict(self.modes), self.min_side,
                           self.searched, self.paper))


def _rebuild(*args: Any) -> AttentionKind:
    return AttentionKind(*args)


#: the parameters of a kind whose kernel size k may come from psi(C) (ECA and its variants): a
#: fixed odd ``k``, or psi's ``gamma``, ``b`` and ``rule`` (:func:`study.catalogue.psi`)
PSI_PARAMS = {"k": Param(None, choices=K_CHOICES), "gamma": Param(2, span=GAMMA_RANGE), "b": Param(1, span=B_RANGE),
              "rule": Param("paper")}
#: what a search of such a kind samples: a fixed k, or psi's (gamma, b)
PSI_MODES = {"fixed": ("k",), "psi": ("gamma", "b")}

#: the names a declaration may use besides literals
VOCABULARY: dict[str, Any] = {"AttentionKind": AttentionKind, "Param": Param, "REDUCTIONS": REDUCTIONS, "PSI_PARAMS": PSI_PARAMS,
                              "PSI_MODES": PSI_MODES}

#: where the project's kinds are declared
_FOLDER = Path(__file__).resolve().parents[1] / "attention"
_PACKAGE = "study.attention"


def _read(path: Path) -> Iterator[AttentionKind]:
    """The declarations at the top level of the module ``path``."""
    text = path.read_text()
    if "AttentionKind(" not in text:
        return
    for node in ast.parse(text, str(path)).body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "AttentionKind"):
            continue
        try:
            kind = eval(compile(ast.Expression(value), str(path), "eval"), {"__builtins__": {}}, dict(VOCABULARY))
        except NameError as exc:
            raise ImportError(f"{path}:{node.lineno}: an attention kind's declaration may use literals and "
                              f"{', '.join(VOCABULARY)} only ({exc})") from None
        yield kind


class _Catalogue:
    """The declared kinds: read from the modules once, on first use; and those declared at
    run time."""

    def __init__(self) -> None:
        self._static: dict[str, tuple[AttentionKind, str]] | None = None
        self.runtime: dict[str, tuple[AttentionKind, str]] = {}

    @property
    def static(self) -> dict[str, tuple[AttentionKind, str]]:
        if self._static is None:
            found: dict[str, tuple[AttentionKind, str]] = {}
            for path in sorted(_FOLDER.glob("*.py")):
                for kind in _read(path):
                    if kind.name in found:
                        raise ImportError(f"attention kind {kind.name!r} is declared twice ({found[kind.name][1]}, {path.stem})")
                    found[kind.name] = (kind, f"{_PACKAGE}.{path.stem}")
            self._static = found
        return self._static

    def all(self) -> dict[str, tuple[AttentionKind, str]]:
        return {**self.static, **self.runtime}


_CATALOGUE = _Catalogue()


def declare(kind: AttentionKind, module: str) -> AttentionKind:
    """Add a kind declared at run time (by :func:`study.attention.register_attention`); a
    project kind must equal its declaration as read from the source, another kind's name is
    taken once."""
    if not isinstance(kind, AttentionKind):
        raise TypeError(f"expected an AttentionKind, got {type(kind).__name__}")
    known = _CATALOGUE.all().get(kind.name)
    if known is not None:
        if known[0] != kind:
            raise ValueError(f"attention kind {kind.name!r} is already registered" + (
                "" if known[1] != module else f" (its declaration in {module} differs from the one read from the source)"))
        return kind
    _CATALOGUE.runtime[kind.name] = (kind, module)
    return kind


def kind_names() -> list[str]:
    """Every declared kind's name, sorted."""
    return sorted(_CATALOGUE.all())


def get_kind(name: str) -> AttentionKind:
    """The declaration of kind ``name``; a ValueError lists the valid kinds."""
    found = _CATALOGUE.all().get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown attention kind {name!r} (valid kinds: {', '.join(kind_names())})")
    return found[0]


def psi_kinds() -> tuple[str, ...]:
    """The kinds whose kernel size k may come from the psi(C) mapping (ECA and its variants)."""
    return tuple(n for n in kind_names() if get_kind(n).psi)


def searched_kinds() -> tuple[str, ...]:
    """The kinds a search chooses among by default (:attr:`AttentionKind.searched`)."""
    return tuple(n for n in kind_names() if get_kind(n).searched)


def kind_modules() -> list[str]:
    """The project's modules that declare kinds (importing them registers their classes)."""
    return sorted({module for _, module in _CATALOGUE.static.values()})


class _Params(Mapping[str, Mapping[str, Any]]):
    """kind -> its keyword parameters and their paper defaults (read-only, always current)."""

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        if name not in _CATALOGUE.all():
            raise KeyError(name)
        return MappingProxyType(get_kind(name).defaults)

    def __iter__(self) -> Iterator[str]:
        return iter(kind_names())

    def __len__(self) -> int:
        return len(_CATALOGUE.all())

    def __repr__(self) -> str:
        return repr(dict(self))


#: kind -> read-only mapping of its keyword parameters and their paper defaults
ATTENTION_PARAMS: Mapping[str, Mapping[str, Any]] = _Params()
