"""The one validation mechanism of the project's config objects.

Every config object (:class:`study.config.TrialConfig` and its parts, a study's settings, a
sampler's or pruner's options, a training's scaling, an attention module's parameters)
validates eagerly in its constructor with the checks below (one family: the value first,
then the field's name), and every failure is a :class:`ConfigError` that
carries the **field path as data** (``"recipe.lr"``, ``"pruner_options.warmup"``) beside the
reason. Library callers read it as one line (``"recipe.lr: must be in (0.0, inf], got 0"``);
a command line says the path as the flag that sets it (:func:`study.cli.flag_error`), by a
rule over its parser plus a short table of exceptions, never by reading the message.

A reason may name other fields as ``{field}`` placeholders listed in ``refs``; they read as
```field``` in the library's words and as their flags on a command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["ConfigError", "check_int", "check_number", "as_number", "check_choice", "check_bool", "check_str", "nested"]


class ConfigError(ValueError):
    """A configuration value or key is invalid.

    ``field`` is the dotted path of the offending field (None: the object as a whole),
    ``reason`` what is wrong with it, ``refs`` the other fields the reason names as
    ``{name}`` placeholders, ``about`` the value the reason is about where the line names it
    after the field ("root /data: no train/ folder").
    """

    def __init__(self, field: str | None, reason: str | None = None, *, refs: Collection[str] = (), about: str | None = None):
        if reason is None:  # ConfigError("a whole message"): no field to point at
            field, reason = None, str(field)
        self.field = field
        self.reason = reason
        self.refs = tuple(refs)
        self.about = about
        super().__init__(self.text())

    def text(self, name: Callable[[str], str] | None = None) -> str:
        """The error in one line; ``name`` says a field path in the caller's words (e.g. as
        its flag), by default as the path itself (in backticks inside the reason)."""
        say = name or (lambda path: f"`{path}`")
        reason = self.reason
        for ref in self.refs:  # plain replacement: a value quoted in the reason may hold braces
            reason = reason.replace("{" + ref + "}", say(ref))
        if self.field is None:
            return reason
        lead = (name or str)(self.field)
        return f"{lead} {self.about}: {reason}" if self.about is not None else f"{lead}: {reason}"

    def within(self, prefix: str) -> ConfigError:
        """The same error one level down: its field (and refs) under ``prefix``."""
        field = prefix if self.field is None else f"{prefix}.{self.field}"
        reason = self.reason
        for ref in self.refs:
            reason = reason.replace("{" + ref + "}", "{" + f"{prefix}.{ref}" + "}")
        return ConfigError(field, reason, refs=[f"{prefix}.{r}" for r in self.refs], about=self.about)

    def __reduce__(self):  # pickles (Ray ships errors between processes) with its data
        return (_rebuild, (self.field, self.reason, self.refs, self.about))


def _rebuild(field: str | None, reason: str, refs: tuple[str, ...], about: str | None) -> ConfigError:
    return ConfigError(field, reason, refs=refs, about=about)


@contextmanager
def nested(prefix: str) -> Iterator[None]:
    """Errors raised inside name their fields under ``prefix`` (``proxy`` + ``resolution``)."""
    try:
        yield
    except ConfigError as exc:
        raise exc.within(prefix) from None


def check_int(value: Any, field: str, lo: int, hi: int | None = None, *, odd: bool = False, why: str = "",
              whole: bool = False) -> int:
    """``value`` when it is an integer in ``[lo, hi]`` (``hi`` None: no upper bound; odd
    with ``odd``); ``why`` says where ``hi`` comes from ("channels=8"); ``whole`` accepts a
    float with an integer value (a JSON ``3.0``) as that integer."""
    if whole and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi) or (odd and value % 2 == 0):
        if hi is not None:
            allowed = f"an integer in [{lo}, {hi}]" + (f" (at most {why})" if why else "")
        else:
            allowed = f"an odd integer >= {lo}" if odd else f"an integer >= {lo}"
        raise ConfigError(field, f"must be {allowed}, got {value!r}")
    return value


def check_number(value: Any, field: str, lo: float = -math.inf, hi: float = math.inf, *, what: str | None = None,
                 positive: bool = False) -> float:
    """``value`` when it is a finite real number (not a bool) in ``[lo, hi]`` (and > 0 with
    ``positive``); ``what`` words the requirement in the error (default: "a number in [lo,
    hi]", "a finite number" when unbounded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi or (
            positive and value <= 0):
        default = "a finite number" + (" > 0" if positive else "") if (lo, hi) == (-math.inf, math.inf) else f"a number in [{lo:g}, {hi:g}]"
        raise ConfigError(field, f"must be {what or default}, got {value!r}")
    return value


def as_number(value: Any, field: str, *, integer: bool = False) -> float | int:
    """``value`` as a number before its range is checked: a finite real number (not a bool),
    or with ``integer`` an integer (a float with an integer value is taken as that integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"expected a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(field, f"expected an integer, got {value!r}")
        return int(value)
    if not math.isfinite(value):
        raise ConfigError(field, f"expected a finite number, got {value!r}")
    return value


def check_choice(value: Any, field: str, choices: Collection[str] | Mapping[str, Any]) -> Any:
    """``value`` when it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_bool(value: Any, field: str) -> bool:
    """``value`` when it is true or false."""
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be true or false, got {value!r}")
    return value


def check_str(value: Any, field: str) -> str:
    """``value`` when it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"expected a non-empty string, got {value!r}")
    return value
