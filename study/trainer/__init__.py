"""The trial trainer: :func:`train` runs one :class:`study.config.TrialConfig`.

Public API: :func:`train`, the lr schedule :class:`LRSchedule`, the optimizer helpers
:func:`param_groups` / :func:`build_optimizer`, and checkpoint access
:func:`read_checkpoint` / :data:`CHECKPOINT_NAME`.
"""

from study.trainer._checkpoint import CHECKPOINT_NAME, checkpoint_path, read_checkpoint
from study.trainer._optim import build_optimizer, param_groups
from study.trainer._schedule import LRSchedule
from study.trainer._train import DIVERGENCE_CHECK_EVERY, format_metrics, train

__all__ = [
    "train",
    "format_metrics",
    "LRSchedule",
    "param_groups",
    "build_optimizer",
    "read_checkpoint",
    "checkpoint_path",
    "CHECKPOINT_NAME",
    "DIVERGENCE_CHECK_EVERY",
]
