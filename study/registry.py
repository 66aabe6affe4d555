"""One small registry, shared by every extensible concept of the project: attention kinds,
proxy sources, backbones and search spaces.

A :class:`Registry` maps names to entries. Registering a name twice with the same entry is
a no-op (a module imported twice registers again); registering it with another entry is a
``ValueError``. Looking up an unknown name is a ``ValueError`` that lists the valid names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one kind.

    ``what`` names the kind in messages ("attention kind", "backbone", ...); ``plural`` its
    plural in "(valid ...: a, b)" (default: ``what`` + "s"; "" gives "(valid: a, b)"); ``hint`` is appended to the list of
    valid names when a lookup fails (e.g. ", or path/to/file.py:function").
    """

    def __init__(self, what: str, *, plural: str | None = None, hint: str = "",
                 same: Callable[[T, T], bool] | None = None):
        self.what = what
        self.plural = f"{what}s" if plural is None else plural
        self.hint = hint
        self._same = same or (lambda a, b: a is b)
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; the same entry again is a no-op, another one an error."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.what} name: expected a non-empty string, got {name!r}")
        old = self._entries.get(name)
        if old is not None and not self._same(old, entry):
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a ValueError lists the valid names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = f"valid {self.plural}:" if self.plural else "valid:"
            raise ValueError(f"unknown {self.what} {name!r} ({valid} {', '.join(self.names())}{self.hint})") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell-style ``pattern``, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def pop(self, name: str, default: T | None = None) -> T | None:
        """Remove ``name`` (tests that register a temporary entry undo it this way)."""
        return self._entries.pop(name, default)

    def copy(self) -> Registry[T]:
        """A registry with the same settings and entries (to swap in for a test)."""
        other: Registry[T] = Registry(self.what, plural=self.plural, hint=self.hint, same=self._same)
        other._entries = dict(self._entries)
        return other

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.names()})"
