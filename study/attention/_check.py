"""Eager parameter validation shared by the attention modules."""

from __future__ import annotations

import math
from typing import Any


def check_int(kind: str, name: str, value: Any, *, lo: int = 1, odd: bool = False, hi: int | None = None, why: str = "") -> int:
    """An integer >= ``lo`` (<= ``hi`` when given, odd when asked); the error names the
    parameter and the range (``why`` says where ``hi`` comes from, e.g. "channels=8")."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (odd and value % 2 == 0) or (hi is not None and value > hi):
        if hi is not None:
            allowed = f"an integer in [{lo}, {hi}]" + (f" (at most {why})" if why else "")
        else:
            allowed = f"an odd integer >= {lo}" if odd else f"an integer >= {lo}"
        raise ValueError(f"attention {kind!r}: {name} must be {allowed}, got {value!r}")
    return value


def resolve_ratio(kind: str, channels: int, params: dict[str, Any], name: str, default: int) -> int:
    """A reduction ratio that cannot exceed C. Left at its ``default`` it resolves per stage
    to ``min(default, C)`` (a reduced width of at least 1); an explicit value must lie in
    [1, C]."""
    if name not in params:
        return min(default, channels)
    return check_int(kind, name, params[name], hi=channels, why=f"channels={channels}")


def check_bool(kind: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"attention {kind!r}: {name} must be true or false, got {value!r}")
    return value


def check_number(kind: str, name: str, value: Any, *, positive: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        allowed = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"attention {kind!r}: {name} must be {allowed}, got {value!r}")
    return value
