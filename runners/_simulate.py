"""Simulated studies: the real study bookkeeping driven by a trainer with a planted truth.

The calibration of the k-vs-C analysis is measured, not assumed: :func:`simulate_study`
runs a study exactly as ``python -m study.run --runner local`` does - the same settings, the
same space, sampler, replicates and seeds, the same :class:`~runners.StudyBridge` recording
every trial into an Optuna storage - but each trial's ``study.trainer.train`` is replaced by
:meth:`Planted.train`, which reports the top-1 of a known model instead of training:

    top1 = base + width_gain * log2(width) + sum over stages with ECA of effect(s, C, k)
           + interaction + shared(configuration) + noise(run)

with ``effect(s, C, k) = -effect * min(1, |k - k*| / 4)``, ``k* = psi(C; gamma, b)`` (or
``stage_k[s]`` when the best k depends on the stage instead of C; ``effect_stages`` limits
the effect to some stages): a stage one odd step away from its best k loses half of
``effect`` points, two or more steps the whole of it; ``effect = 0`` is the null (k does not
matter). ``interaction`` adds a pure interaction between two stages' k (``+interaction``
where they are equal, ``-interaction / 4`` where not: no main effect of either k under
uniform sampling of five k).

The noise of a run has three parts: ``shared``, a component that the replicates of one
configuration share (what paired seeds or a shared data order can produce), drawn from the
configuration; ``seed_shared``, a component that every network trained from one seed shares
whatever its attention (what common random numbers leave to the arms of one paired seed:
the backbone's initialisation, the data order and the augmentation), drawn from the seed; and
a per-run component of ``sigma * width ** -width_power`` points (noise that grows at small
width), drawn from the configuration and the trial's own seed, so replicates (other seeds)
differ and a fixed seed repeats itself, as real training does. A paired difference of two
arms trained from one seed then has the variance of two per-run parts, a single run that of
a per-run part and ``seed_shared``.
``tails`` > 2 makes the per-run part Student-t with that many degrees of freedom (same
standard deviation); ``collapse`` is the probability that a run collapses to
``collapse_top1`` (a run that learned nothing). Every run with kernel size ``diverge_k`` in a
stage of at most ``diverge_C`` channels diverges (the trainer's outcome "diverged").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runners._bridge import StudyBridge
from runners._local import run_local
from runners._settings import StudySettings
from runners._study import open_study
from search_spaces import get_space
from study.metrics import EpochMetrics, TrialResult, as_reporter
from study.record import is_finite
from study.validate import ConfigError

if TYPE_CHECKING:
    import torch

    from search_spaces import Space
    from study.config import TrialConfig
    from study.metrics import EpochMetrics, Reporter, TrialResult

__all__ = ["Planted", "simulate_study"]


@dataclass(frozen=True, kw_only=True)
class Planted:
    """The planted truth of a simulated study (see the module doc)."""

    effect: float = 0.0
    gamma: float = 2.0
    b: float = 1.0
    sigma: float = 0.5
    shared: float = 0.0
    seed_shared: float = 0.0
    width_power: float = 0.0
    tails: float = 0.0
    collapse: float = 0.0
    collapse_top1: float = 10.0
    stage_k: tuple[int, ...] | None = None
    effect_stages: tuple[int, ...] | None = None
    interaction: float = 0.0
    interaction_stages: tuple[int, int] = (0, 1)
    diverge_k: int = 0
    diverge_C: int = 0
    base: float = 60.0
    width_gain: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("effect", "gamma", "b", "sigma", "shared", "seed_shared", "width_power", "tails", "collapse", "collapse_top1",
                     "interaction", "base", "width_gain"):
            v = getattr(self, name)
            if not is_finite(v):
                raise ConfigError(name, f"expected a finite number, got {v!r}")
        for name in ("effect", "sigma", "shared", "seed_shared"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)!r}")
        if self.gamma <= 0:
            raise ConfigError("gamma", f"must be > 0, got {self.gamma!r}")
        if self.tails and self.tails <= 2:
            raise ConfigError("tails", f"the degrees of freedom of the t noise must be > 2 (finite variance), got {self.tails!r}")
        if not 0 <= self.collapse <= 1:
            raise ConfigError("collapse", f"must be a probability in [0, 1], got {self.collapse!r}")

    def k_star(self, C: int, stage: int | None = None) -> int:
        """The best k of a stage: ``stage_k[stage]`` when set, else psi(C; gamma, b)."""
        if self.stage_k is not None and stage is not None:
            return int(self.stage_k[stage])
        from study.attention import psi

        return psi(int(C), float(self.gamma), float(self.b))

    def stage_effect(self, C: int, k: int, stage: int | None = None) -> float:
        """effect(s, C, k): 0 at the best k, -effect/2 one odd step away, -effect further
        (0 in a stage outside ``effect_stages``)."""
        if self.effect_stages is not None and stage is not None and stage not in self.effect_stages:
            return 0.0
        return -self.effect * min(1.0, abs(int(k) - self.k_star(C, stage)) / 4)

    def mean_top1(self, width: float, stages: Sequence[Mapping[str, Any]]) -> float:
        """The noise-free top-1 of a network at ``width`` with the recorded ``stages``."""
        from study.attention import psi_kinds

        eca = psi_kinds()
        top1 = self.base + self.width_gain * math.log2(width) + sum(
            self.stage_effect(s["channels"], s["k"], s["stage"]) for s in stages if s["kind"] in eca)
        if self.interaction:
            i, j = self.interaction_stages
            a, b = stages[i], stages[j]
            if a["kind"] in eca and b["kind"] in eca:
                top1 += self.interaction if int(a["k"]) == int(b["k"]) else -self.interaction / 4
        return top1

    def diverges(self, stages: Sequence[Mapping[str, Any]]) -> bool:
        from study.attention import psi_kinds

        eca = psi_kinds()
        return bool(self.diverge_k) and any(s["kind"] in eca and int(s["k"]) == self.diverge_k and s["channels"] <= self.diverge_C
                                            for s in stages)

    def _noise(self, rng: np.random.Generator, sd: float) -> float:
        if self.tails:
            return float(rng.standard_t(self.tails) * sd * math.sqrt((self.tails - 2) / self.tails))
        return float(rng.normal(0.0, sd))

    def train(self, config: TrialConfig, reporter: Reporter | Callable[[EpochMetrics], bool | None] | None, *,
              device: str | torch.device | None = None, data: Any = None, **_: Any) -> TrialResult:
        """What :func:`study.trainer.train` does for the bookkeeping: report the costs, then
        one :class:`~study.metrics.EpochMetrics` per epoch (stopping when the reporter says
        so), and return a :class:`~study.metrics.TrialResult`."""
        from study.costs import Costs
        from study.models import describe_stages

        reporter = as_reporter(reporter)
        stages = [s.to_dict() for s in describe_stages(config.arch, config.proxy.resolution)]
        att = sum(int(s.get("k", 0)) * s["blocks"] for s in stages)
        res = config.proxy.resolution
        costs = Costs(params=int(11e6 * config.arch.width**2) + att, macs=int(5e8 * config.arch.width**2 * (res / 224) ** 2),
                      macs_224=int(5e8 * config.arch.width**2), latency_ms=None, resolution=res, attention_params=att)
        reporter.start(costs, stages)
        if self.diverges(stages):
            return TrialResult(config=config, outcome="diverged", history=(), costs=costs, stages=tuple(stages),
                               message="the loss became NaN (planted)")
        digest = int.from_bytes(hashlib.sha256(json.dumps(config.arch.to_dict(), sort_keys=True).encode()).digest()[:8], "little")
        shared = np.random.default_rng([int(self.seed), digest]).normal(0.0, self.shared) if self.shared else 0.0
        if self.seed_shared:
            shared += np.random.default_rng([int(self.seed), 0x5EED, int(config.seed)]).normal(0.0, self.seed_shared)
        rng = np.random.default_rng([int(self.seed), digest, int(config.seed)])
        sd = self.sigma * config.arch.width ** -self.width_power
        final = self.mean_top1(config.arch.width, stages) + shared + self._noise(rng, sd)
        if self.collapse and rng.random() < self.collapse:
            final = self.collapse_top1 + float(rng.normal(0.0, 0.1))
        epochs = config.recipe.epochs
        history = []
        for e in range(1, epochs + 1):
            frac = (1 - 0.5**e) / (1 - 0.5**epochs)
            top1 = final * frac + (0.0 if e == epochs else rng.normal(0.0, sd))
            m = EpochMetrics(epoch=e, top1=float(top1), top5=float(min(100.0, top1 + 20)), val_loss=float(5 - top1 / 25),
                             train_loss=float(5 - top1 / 24), lr=0.0, epoch_time_s=0.0, wall_time_s=0.0, images_per_s=0.0)
            history.append(m)
            if reporter.report(m):
                break
        return TrialResult(config=config, outcome="complete", history=tuple(history), costs=costs, stages=tuple(stages))


def simulate_study(settings: StudySettings, planted: Planted, *, space: Space | None = None) -> StudyBridge:
    """Run the study ``settings`` (runner "local") with :meth:`Planted.train` as the trainer,
    recording into ``settings.storage`` as a real study does. Returns the bridge."""

    if settings.runner != "local":
        raise ConfigError("runner", f"a simulated study runs locally, got {settings.runner!r}")
    space = space or get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings)
    bridge.enqueue_references()
    run_local(bridge, train=planted.train, load_proxy=lambda proxy: None)
    return bridge
