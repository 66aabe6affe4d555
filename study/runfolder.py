"""Names inside a run folder that more than one part of the project derives.

Ray (Ray Tune for a study, Ray Train for a data-parallel full training) keeps its own result
files under the run folder's ``ray/``: one ``run-<k>`` folder per invocation, ``k`` counting
from 1, so that a resumed run never writes into the folder of an earlier one. Ray's folders
are a by-product (the Optuna storage, or the run folder's own files, are the record).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["next_run_name"]


def next_run_name(ray_dir: str | os.PathLike) -> str:
    """The name of the first ``run-<k>`` (k = 1, 2, ...) that does not exist yet under
    ``ray_dir`` (creates nothing)."""
    folder = Path(ray_dir)
    k = 1
    while (folder / f"run-{k}").exists():
        k += 1
    return f"run-{k}"
