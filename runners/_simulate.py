"""Simulated studies: the real study bookkeeping driven by a trainer with a planted truth.

The calibration of the k-vs-C analysis is measured, not assumed: :func:`simulate_study`
runs a study exactly as ``python -m study.run --runner local`` does - the same settings, the
same space, sampler, replicates and seeds, the same :class:`~runners.StudyBridge` recording
every trial into an Optuna storage - but each trial's ``study.trainer.train`` is replaced by
:meth:`Planted.train`, which reports the top-1 of a known model instead of training:

    top1 = base + width_gain * log2(width) + sum over stages with ECA of effect(C, k) + noise

with ``effect(C, k) = -effect * min(1, |k - k*(C)| / 4)``, ``k*(C) = psi(C; gamma, b)``: a
stage one odd step away from its best k loses half of ``effect`` points, two or more steps
the whole of it; ``effect = 0`` is the null (k does not matter). The noise is Gaussian with
``sigma`` points per trial, drawn from the trial's own seed, so replicates (other seeds)
differ and a fixed seed repeats itself, as real training does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runners._bridge import StudyBridge
from runners._settings import StudySettings
from study.record import is_finite

__all__ = ["Planted", "simulate_study"]


@dataclass(frozen=True, kw_only=True)
class Planted:
    """The planted truth of a simulated study (see the module doc)."""

    effect: float = 0.0
    gamma: float = 2.0
    b: float = 1.0
    sigma: float = 0.5
    base: float = 60.0
    width_gain: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("effect", "gamma", "b", "sigma", "base", "width_gain"):
            v = getattr(self, name)
            if not is_finite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
        if self.effect < 0 or self.sigma < 0 or self.gamma <= 0:
            raise ValueError("effect and sigma must be >= 0 and gamma > 0")

    def k_star(self, C: int) -> int:
        from study.attention import psi

        return psi(int(C), float(self.gamma), float(self.b))

    def stage_effect(self, C: int, k: int) -> float:
        """effect(C, k): 0 at k*(C), -effect/2 one odd step away, -effect further."""
        return -self.effect * min(1.0, abs(int(k) - self.k_star(C)) / 4)

    def mean_top1(self, width: float, stages: Any) -> float:
        """The noise-free top-1 of a network at ``width`` with the recorded ``stages``."""
        from study.attention import psi_kinds

        eca = psi_kinds()
        return self.base + self.width_gain * math.log2(width) + sum(
            self.stage_effect(s["channels"], s["k"]) for s in stages if s["kind"] in eca)

    def train(self, config: Any, reporter: Any, *, device: Any = None, data: Any = None, **_: Any) -> Any:
        """What :func:`study.trainer.train` does for the bookkeeping: report the costs, then
        one :class:`~study.metrics.EpochMetrics` per epoch (stopping when the reporter says
        so), and return a :class:`~study.metrics.TrialResult`."""
        from study.costs import Costs
        from study.metrics import EpochMetrics, TrialResult, as_reporter
        from study.models import describe_stages

        reporter = as_reporter(reporter)
        stages = [s.to_dict() for s in describe_stages(config.arch)]
        att = sum(int(s.get("k", 0)) * s["blocks"] for s in stages)
        res = config.proxy.resolution
        costs = Costs(params=int(11e6 * config.arch.width**2) + att, macs=int(5e8 * config.arch.width**2 * (res / 224) ** 2),
                      macs_224=int(5e8 * config.arch.width**2), latency_ms=None, resolution=res, attention_params=att)
        reporter.start(costs, stages)
        rng = np.random.default_rng([int(self.seed), int(config.seed)])
        final = self.mean_top1(config.arch.width, stages) + rng.normal(0.0, self.sigma)
        epochs = config.recipe.epochs
        history = []
        for e in range(1, epochs + 1):
            frac = (1 - 0.5**e) / (1 - 0.5**epochs)
            top1 = final * frac + (0.0 if e == epochs else rng.normal(0.0, self.sigma))
            m = EpochMetrics(epoch=e, top1=float(top1), top5=float(min(100.0, top1 + 20)), val_loss=float(5 - top1 / 25),
                             train_loss=float(5 - top1 / 24), lr=0.0, epoch_time_s=0.0, wall_time_s=0.0, images_per_s=0.0)
            history.append(m)
            if reporter.report(m):
                break
        return TrialResult(config=config, outcome="complete", history=tuple(history), costs=costs, stages=tuple(stages))


def simulate_study(settings: StudySettings, planted: Planted, *, space: Any = None) -> StudyBridge:
    """Run the study ``settings`` (runner "local") with :meth:`Planted.train` as the trainer,
    recording into ``settings.storage`` as a real study does. Returns the bridge."""
    from runners._local import run_local
    from runners._study import open_study
    from search_spaces import get_space

    if settings.runner != "local":
        raise ValueError(f"runner: a simulated study runs locally, got {settings.runner!r}")
    space = space or get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings)
    bridge.enqueue_references()
    run_local(bridge, train=planted.train, load_proxy=lambda proxy: None)
    return bridge
