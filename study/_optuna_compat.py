"""The core's one use of Optuna beyond its documented API: a journal file read without writing.

Optuna's public journal backend (``JournalFileBackend``) always takes a lock to append and
creates the file when it is absent; analysis must neither write to a study's storage nor
create one. :class:`ReadOnlyJournal` relies on how that class is built (its constructor
creates only a missing file, and ``read_logs`` takes no lock), which no public contract
promises: hence this module. :func:`study.storage.open_storage` (``readonly=True``) is its
only user; the runners' own uses of Optuna's private API live in ``runners/_optuna_compat.py``.

``tests/study/test_storage_url.py`` pins this behaviour against the installed Optuna.
"""

from __future__ import annotations

from typing import Any

from optuna.storages.journal import JournalFileBackend

__all__ = ["ReadOnlyJournal"]


class ReadOnlyJournal(JournalFileBackend):
    """Optuna's journal file, read without taking its lock; a write is refused.

    The file must exist before this is built (the base class would create a missing one)."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Refuse every write (a PermissionError naming the journal)."""
        raise PermissionError(f"analysis never writes to a study's storage (journal {self.path})")
