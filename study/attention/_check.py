"""Eager parameter validation shared by the attention modules."""

from __future__ import annotations

import math
from typing import Any


def check_int(kind: str, name: str, value: Any, *, lo: int = 1, odd: bool = False) -> int:
    """An integer >= ``lo`` (and odd when asked); the error names the parameter and range."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (odd and value % 2 == 0):
        allowed = f"an odd integer >= {lo}" if odd else f"an integer >= {lo}"
        raise ValueError(f"attention {kind!r}: {name} must be {allowed}, got {value!r}")
    return value


def check_bool(kind: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"attention {kind!r}: {name} must be true or false, got {value!r}")
    return value


def check_number(kind: str, name: str, value: Any, *, positive: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        allowed = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"attention {kind!r}: {name} must be {allowed}, got {value!r}")
    return value
