"""The per-step learning-rate schedule: linear warm-up, then cosine or step decay.

Linear warm-up over the first steps (Goyal et al., "Accurate, Large Minibatch SGD: Training
ImageNet in 1 Hour", 2017), then either cosine decay to zero without restarts (Loshchilov &
Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017) or step decay by
``step_factor`` every ``step_every`` epochs (the ECA paper's ImageNet schedule: x0.1 every 30
epochs; Wang et al., "ECA-Net", CVPR 2020, Sec. 4.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from study.config import SCHEDULES, Recipe
from study.validate import ConfigError

__all__ = ["LRSchedule"]


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate multiplier (of the peak lr) at every optimizer step.

    ``multiplier(step)`` is the factor applied by optimizer step ``step`` (counting from 0):

    * warm-up, ``step < warmup_steps``: ``(step + 1) / warmup_steps`` (so the first step is
      small but not zero, and the last warm-up step reaches the peak);
    * ``"cosine"``: ``0.5 * (1 + cos(pi * t))`` with ``t = (step - warmup_steps) /
      (total_steps - warmup_steps)``, from 1 right after warm-up towards 0 at the end;
    * ``"step"``: ``step_factor ** (epoch // step_every)`` where ``epoch`` is the (0-based)
      epoch the step belongs to.

    An instance is a plain callable, usable as ``LambdaLR``'s ``lr_lambda``.
    """

    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    schedule: str = "cosine"
    step_every: int = 30
    step_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise ConfigError("steps_per_epoch", f"must be >= 1, got {self.steps_per_epoch!r}")
        if self.total_steps < 1:
            raise ConfigError("total_steps", f"must be >= 1, got {self.total_steps!r}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError("warmup_steps", f"must be in [0, total_steps={self.total_steps}], got {self.warmup_steps!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.step_every < 1:
            raise ConfigError("step_every", f"must be >= 1, got {self.step_every!r}")
        if not 0.0 <= self.step_factor <= 1.0:
            raise ConfigError("step_factor", f"must be in [0, 1], got {self.step_factor!r}")

    @classmethod
    def from_recipe(cls, recipe: Recipe, steps_per_epoch: int) -> LRSchedule:
        """The schedule of ``recipe`` with ``steps_per_epoch`` optimizer steps per epoch."""
        total = recipe.epochs * steps_per_epoch
        return cls(
            total_steps=total,
            steps_per_epoch=steps_per_epoch,
            warmup_steps=min(total, round(recipe.warmup_epochs * steps_per_epoch)),
            schedule=recipe.schedule,
            step_every=recipe.step_every,
            step_factor=recipe.step_factor,
        )

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "step":
            return self.step_factor ** ((step // self.steps_per_epoch) // self.step_every)
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:
            return 1.0
        t = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * t))

    __call__ = multiplier
