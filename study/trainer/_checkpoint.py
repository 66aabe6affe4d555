"""A trial's checkpoint: one file, rewritten atomically after every epoch.

The file holds everything needed to continue a run so that it reproduces the uninterrupted
run exactly: model, optimizer (momentum buffers), the step counter of the lr schedule, the
RNG states, the per-epoch history, the costs, the elapsed wall time and the config that
produced it (a resume with a different config is refused).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from study._io import atomic_file

__all__ = ["CHECKPOINT_NAME", "checkpoint_path", "save_checkpoint", "read_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


def checkpoint_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt``: a temporary file, then a rename, so
    an interruption never leaves a half-written checkpoint."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, **state}, f)
    return path


def read_checkpoint(directory: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The checkpoint in ``directory``, or None when there is none.

    Raises ``ValueError`` for a file that is not a checkpoint of this format.
    """
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means "not a checkpoint"
        raise ValueError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a study.trainer checkpoint (format {FORMAT})")
    return state
