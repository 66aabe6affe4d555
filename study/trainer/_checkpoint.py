"""A trial's checkpoint: one file, rewritten atomically after every epoch, and the one decision
of where a run starts from it (:func:`resume_point`).

The file holds everything needed to continue a run so that it reproduces the uninterrupted
run exactly: model, optimizer (momentum buffers), the step counter of the lr schedule, the
RNG states, the per-epoch history, the costs, the elapsed wall time and the config that
produced it (a resume with a different config is refused).

Where the file goes is a :class:`CheckpointStore`: :class:`FolderStore` writes
``<folder>/checkpoint.pt`` itself (one process); a data-parallel run on Ray hands rank 0's
bytes to the process that owns the output folder (``study.cluster``), which writes the same
file the same way. One format either way: a run checkpointed by N workers resumes in one
process and the other way round.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from study.config import TrialConfig
from study.io import atomic_file
from study.metrics import TrialResult
from study.validate import ConfigError

__all__ = ["CHECKPOINT_NAME", "CheckpointStore", "FolderStore", "as_store", "checkpoint_path", "save_checkpoint",
           "read_checkpoint", "checkpoint_bytes", "parse_checkpoint", "write_checkpoint_bytes", "CheckpointExists",
           "resume_point", "check_same_config", "finished_result", "get_rng_state", "set_rng_state"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a run's checkpoint lives: ``load()`` the last one (or None), ``save(state)`` a
    new one (atomically: a reader sees the old checkpoint or the new one, never half)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


def checkpoint_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / CHECKPOINT_NAME


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """The checkpoint file's content for ``state``."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return buf.getvalue()


def parse_checkpoint(data: bytes, where: Any, *, map_location: Any = "cpu") -> dict[str, Any]:
    """The state in a checkpoint file's ``data``; ValueError (naming ``where``) when it is
    not a checkpoint of this format."""
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{where}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{where}: not a study.trainer checkpoint (format {FORMAT})")
    return state


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt``: a temporary file, then a rename, so
    an interruption never leaves a half-written checkpoint."""
    return write_checkpoint_bytes(directory, checkpoint_bytes(state))


def write_checkpoint_bytes(directory: str | os.PathLike, data: bytes) -> Path:
    """Write a checkpoint file's ``data`` to ``directory/checkpoint.pt`` atomically (fsync'd)."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", fsync=True) as f:
        f.write(data)
    return path


def read_checkpoint(directory: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The checkpoint in ``directory``, or None when there is none.

    Raises ``ValueError`` for a file that is not a checkpoint of this format.
    """
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    return parse_checkpoint(path.read_bytes(), path, map_location=map_location)


class FolderStore:
    """The checkpoint ``<directory>/checkpoint.pt``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def load(self) -> dict[str, Any] | None:
        return read_checkpoint(self.directory)

    def save(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.directory, state)

    def __str__(self) -> str:
        return str(self.directory)


def as_store(where: str | os.PathLike | CheckpointStore | None) -> CheckpointStore | None:
    """A folder as a :class:`FolderStore`; a store as itself; None as None."""
    if where is None or isinstance(where, CheckpointStore):
        return where
    if isinstance(where, (str, os.PathLike)):
        return FolderStore(where)
    raise TypeError(f"checkpoint_dir: expected a folder or a CheckpointStore, got {type(where).__name__}")


class CheckpointExists(ConfigError, FileExistsError):
    """A run's folder holds a checkpoint and the caller did not ask to resume it (a
    :class:`~study.validate.ConfigError` naming the folder's field, and a FileExistsError)."""


def resume_point(where: str | os.PathLike | CheckpointStore | None, config: TrialConfig, *, resume: bool,
                 field: str = "checkpoint_dir", of: str | None = None) -> dict[str, Any] | None:
    """The one decision of every way a training starts (one process, a data-parallel run, a
    batch of them): the checkpoint in ``where`` it continues, finished or not (None: there is
    none, or no store). One that is there without ``resume`` is refused
    (:class:`CheckpointExists`, naming ``field``: the folder's setting, and ``resume``), one
    made by another config too (:func:`check_same_config`); ``of`` names the run in the words."""
    store = as_store(where)
    state = store.load() if store is not None else None
    if state is None:
        return None
    if not resume:
        run = f" of {of}" if of else ""
        raise CheckpointExists(field, f"{store} already holds a checkpoint{run} (epoch {state['epoch']} of "
                               f"{state['config']['recipe']['epochs']}); pass {{resume}} to continue it or choose another {{{field}}}",
                               refs=["resume", field])
    check_same_config(state["config"], config, store)
    return state


def finished_result(state: Mapping[str, Any], config: TrialConfig) -> TrialResult:
    """The result a finished checkpoint (its ``outcome`` set) stands for."""
    return TrialResult.from_dict({**state, "stages": state["stages"]}, config=config)


def check_same_config(saved: Mapping[str, Any], config: TrialConfig, where: Any) -> None:
    """Raise ValueError naming the fields that differ when a checkpoint's ``saved`` config is
    not ``config`` (a resume must continue the run it was written by); ``where`` names it."""
    current = config.to_dict()
    if saved == current:
        return
    diffs = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(section)
    raise ConfigError("resume", f"the checkpoint in {where} was made by a different config (differs in {', '.join(diffs)})")


def get_rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

