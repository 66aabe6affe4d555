"""How a study setting is declared: the :class:`Setting` a settings field carries (its help,
its flag, its part: the study's definition or one run's options) and the parsers of the
flags' texts. The fields themselves are :class:`runners.StudySettings`'s."""

from __future__ import annotations

import dataclasses
import math
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runners._defaults import DESIGNS

__all__ = ["Setting", "setting", "setting_of", "number_at_least", "comma_list", "by_design", "designs_help",
           "DEFINITION", "RUN", "WHAT", "DESIGN", "WHERE", "OPTUNA", "RESOURCES"]

DEFINITION, RUN = "definition", "run"


@dataclass(frozen=True, kw_only=True)
class Setting:
    """What the harness knows of one study setting besides its type and default.

    ``part``: :data:`DEFINITION` or :data:`RUN`. ``help`` says what it is; ``default_text``
    what the help says of its default (None: the field's default; a callable is asked when
    the help is made). ``flag``: the study CLI's flag (None: none of its own; ``said_as`` is
    then how an error about it names the flags that set it). ``parse``: the flag's text to a
    value (an argparse type); ``choices`` its valid values; ``metavar``; ``switch``: a flag
    without a value (true when given). ``group`` orders the help. ``runner_specific``: a
    resumed run on another runner starts it afresh.
    """

    part: str
    help: str
    group: str
    flag: str | None = None
    said_as: str | None = None
    default_text: str | Callable[[], str] | None = None
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    switch: bool = False
    runner_specific: bool = False

    @property
    def words(self) -> str | None:
        """How the command line says this setting: its flag, else ``said_as``."""
        return self.flag or self.said_as


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, **declared: Any) -> Any:
    """A settings field: its default (or ``factory``) and its :class:`Setting`."""
    meta = {"setting": Setting(**declared)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def setting_of(f: dataclasses.Field) -> Setting:
    return f.metadata["setting"]


# ---------------------------------------------------------------------------- flags' texts


def number_at_least(lo: float, *, integer: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite number (an integer with ``integer``) of at least ``lo``."""

    what = "an integer" if integer else "a number"

    def parse(text: str) -> Any:
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or v < lo:
            raise ArgumentTypeError(f"must be >= {lo:g}, got {text}" if integer else f"expected a number >= {lo:g}, got {text!r}")
        return v

    return parse


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def by_design(name: str, default: Any) -> str:
    """"X; inference Y, confirm Z": a field's default and the designs that set another."""
    other = [f"{d.name} {getattr(d, name)}" for d in DESIGNS.values() if getattr(d, name) not in (None, default)]
    return f"{default}" + (f"; {', '.join(other)}" if other else "")


def designs_help() -> str:
    return "; ".join(f"{d.name}: {d.description}" for d in DESIGNS.values())


#: the groups of the study CLI's help
WHAT, DESIGN, WHERE, OPTUNA, RESOURCES = "what", "design and budget", "where", "Optuna", "resources"
