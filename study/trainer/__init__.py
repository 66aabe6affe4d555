"""The trial trainer: :func:`train` runs one :class:`study.config.TrialConfig`, in one
process (the null context :class:`SingleProcess`) or as one rank of a data-parallel group
(:class:`Distributed`).

Public API: :func:`train`, the model it builds (:func:`trial_model`) and the numerics it
trains it with (:func:`numerics`: bf16 autocast and channels-last), the lr schedule
:class:`LRSchedule`, the optimizer helpers :func:`param_groups` / :func:`build_optimizer`,
checkpoint access :func:`read_checkpoint` / :data:`CHECKPOINT_NAME`, the one decision of where a
run starts (:func:`resume_point`), and the stores a checkpoint goes to (:class:`CheckpointStore`,
:class:`FolderStore`), the rank-aware pieces
:class:`Distributed` (and its one-process counterpart :class:`SingleProcess`),
:func:`per_worker_batch` and :func:`state_digest`.
"""

from study.trainer._checkpoint import (
    CHECKPOINT_NAME,
    CheckpointExists,
    CheckpointStore,
    FolderStore,
    check_same_config,
    checkpoint_bytes,
    checkpoint_path,
    finished_result,
    parse_checkpoint,
    read_checkpoint,
    resume_point,
    write_checkpoint_bytes,
)
from study.trainer._distributed import Distributed, SingleProcess, per_worker_batch, state_digest
from study.trainer._optim import build_optimizer, param_groups
from study.trainer._schedule import LRSchedule
from study.trainer._setup import checked_data, numerics, trial_model
from study.trainer._train import DIVERGENCE_CHECK_EVERY, format_metrics, train

__all__ = [
    "check_same_config",
    "checked_data",
    "resume_point",
    "CheckpointExists",
    "train",
    "trial_model",
    "finished_result",
    "format_metrics",
    "numerics",
    "LRSchedule",
    "param_groups",
    "build_optimizer",
    "read_checkpoint",
    "checkpoint_path",
    "checkpoint_bytes",
    "parse_checkpoint",
    "write_checkpoint_bytes",
    "CheckpointStore",
    "FolderStore",
    "CHECKPOINT_NAME",
    "DIVERGENCE_CHECK_EVERY",
    "Distributed",
    "SingleProcess",
    "per_worker_batch",
    "state_digest",
]
