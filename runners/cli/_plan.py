"""``python -m study.run ... --plan``: what a k-vs-C study needs before compute is spent.

For the study's own design (its space, design, widths, replicates and reference points,
drawn by the real space in memory), a planted effect (``--effect`` points: a stage two or
more odd steps away from k* = psi(C; 2, 1) loses it, one step half of it; see
:class:`runners.Planted`) and a noise level (``--sigma``, or measured by a short pilot that
runs the space's reference points three times each with the study's own proxy and recipe),
it prints the configurations, trials and trial-epochs the F-test of "k matters" needs for
power 0.8 at alpha 0.05 (:func:`analysis.kmap.design_power`), and the effect the requested budget can
detect. Nothing of the study is created; the pilot runs in a temporary folder.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from runners._progress import Progress
from runners._run import run_study
from runners._settings import StudySettings
from runners._simulate import Planted
from study.catalogue import psi_kinds
from study.validate import ConfigError

if TYPE_CHECKING:  # annotations only
    from search_spaces import Space


__all__ = ["PILOT_REPLICATES", "Plan", "budget_warning", "pilot_sigma", "plan_study", "smallest_budget"]

#: runs of each reference point in the pilot that measures the noise
PILOT_REPLICATES = 3
#: designs drawn per size (the power is their mean)
DRAWS = 4
#: the most configurations a plan considers
MAX_CONFIGS = 4096


class _Pool:
    """Configurations of the study's design drawn by its real space, in memory (reference
    points first, then random draws), grown on demand."""

    def __init__(self, settings: StudySettings, space: Space, seed: int):
        self.settings, self.space, self.kinds = settings, space, psi_kinds()
        self.ctx = settings.space_context()
        self.study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        for _, params in space.reference_points(self.ctx):
            self.study.enqueue_trial(params)
        self.rows: list[dict[str, Any]] = []
        self.num_stages = 0

    def grow(self, n: int) -> None:
        while len(self.rows) < n:
            trial = self.study.ask()
            config = self.space.suggest(trial, self.ctx)
            stages = trial.user_attrs["stages"]
            row: dict[str, Any] = {"key": str(len(self.rows)), "backbone": config.arch.backbone, "width": config.arch.width,
                                   "stratum": f"{config.arch.backbone}@{config.arch.width:g}", "n": self.settings.replicates, "y": 0.0}
            for i, st in enumerate(stages):
                row[f"kind{i}"] = st["kind"]
                row[f"C{i}"] = float(st["channels"])
                row[f"k{i}"] = float(st["k"]) if st["kind"] in self.kinds and st.get("k") is not None else math.nan
            self.rows.append(row)
            self.num_stages = len(stages)
            self.study.tell(trial, 0.0)

    def data(self, n: int) -> Any:
        """The first ``n`` configurations as :class:`analysis.KData` (no responses)."""
        import pandas as pd

        from analysis.kmap import KData

        self.grow(n)
        configs = pd.DataFrame(self.rows[:n])
        if configs[[f"k{i}" for i in range(self.num_stages)]].isna().all().all():
            raise ConfigError("space", f"{self.space.name!r} samples no stage with an attention kind that has a kernel size k "
                             f"({', '.join(self.kinds)}); a k-vs-C plan needs one")
        return KData(configs=configs, trials=pd.DataFrame(columns=["number", "key", "y", "state"]), num_stages=self.num_stages,
                     kind="eca", by="C", epoch=self.settings.recipe.epochs, budget_epochs=self.settings.recipe.epochs)


def _parameters(pool: _Pool, n: int) -> int:
    """The k-vs-C model's parameter count on the first ``n`` configurations of ``pool``."""
    from analysis.kmap import model_parameters

    return model_parameters(pool.data(n))


def smallest_budget(settings: StudySettings, space: Space, *, seed: int | None = None) -> tuple[int, int]:
    """``(configurations, parameters)``: the smallest number of configurations of the
    study's design on which the k-vs-C model can be fitted (more configurations than
    parameters; the parameters grow with the (C, k) cells seen, so the search steps up from
    the parameters at the requested budget), and the model's parameters there."""
    pool = _Pool(settings, space, settings.seed if seed is None else seed)
    n = max(2, min(settings.trials, MAX_CONFIGS))
    p = _parameters(pool, n)
    while n <= p and n < MAX_CONFIGS:  # too few: step up to the parameters seen (they can grow with n)
        n = min(p + 1, MAX_CONFIGS)
        p = _parameters(pool, n)
    lo = 1
    while lo < n - 1:  # the smallest n with n > p(n) (p is non-decreasing in n)
        mid = (lo + n) // 2
        if mid > _parameters(pool, mid):
            n = mid
        else:
            lo = mid
    return n, _parameters(pool, n)


def budget_warning(settings: StudySettings, space: Space) -> str | None:
    """A line saying that the study's budget is too small for the k-vs-C model of its
    design, with the smallest budget that fits; None when it fits (or the design is not
    the inference design, whose analysis this is)."""
    if settings.design != "inference":
        return None
    pool = _Pool(settings, space, settings.seed)
    p = _parameters(pool, settings.trials)
    if settings.trials > p:
        return None
    need, p_need = smallest_budget(settings, space)
    return (f"this budget ({settings.trials} configurations) cannot be analysed: the k-vs-C model of this design has {p} parameters "
            f"(width strata and the (C, k) cells seen); the smallest budget it can fit is {need} configurations ({p_need} parameters), "
            f"and power needs more (--plan); extend the study later with --resume --trials N")


def pilot_sigma(settings: StudySettings, space: Space, *,
                log: Callable[[str], None] = print) -> tuple[float, tuple[float, float], int, int]:
    """Train the space's reference points :data:`PILOT_REPLICATES` times each (local runner,
    the study's proxy and recipe) and return the pooled seed-to-seed standard deviation of
    top-1: ``(sigma, 95 % interval, df, trials)``."""
    import analysis

    refs = space.reference_points(settings.space_context())
    if not refs:
        raise ConfigError("sigma", f"space {space.name!r} has no reference points to run as a noise pilot; give the noise with {{sigma}}",
                          refs=["sigma"])
    folder = Path(tempfile.mkdtemp(prefix="plan-pilot-"))
    try:
        pilot = settings.replace(name="pilot", storage=f"sqlite:///{folder / 'study.db'}", run_dir=str(folder), trials=len(refs),
                                 runner="local", address=None, max_concurrent=1, gpus_per_trial=0.0, stage_data=False,
                                 replicates=PILOT_REPLICATES, seed_mode="per_trial", pruner="none", pruner_options={}, timeout=None)
        log(f"pilot: {len(refs)} reference points x {PILOT_REPLICATES} runs ({settings.recipe.epochs} epochs each) to measure the noise "
            f"...")
        bridge = run_study(pilot, space=space, progress=Progress(quiet=True))
        noise = analysis.seed_noise(analysis.kmap_data(analysis.frames_of(bridge.study, settings=pilot.to_dict())))
        if noise.sigma is None or noise.ci is None:
            raise ConfigError("sigma", "the noise pilot finished no replicated reference point; give the noise with {sigma}",
                              refs=["sigma"])
        return noise.sigma, noise.ci, noise.df, len(bridge.study.get_trials(deepcopy=False))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Plan:
    """What the plan found (see the module doc); ``needed`` None when even
    :data:`MAX_CONFIGS` configurations do not reach the power."""

    sigma: float
    sigma_source: str
    effect: float
    alpha: float
    power: float
    needed: int | None
    needed_power: float | None
    budget: int
    budget_power: float
    detectable: float
    replicates: int
    epochs: int
    pilot_trials: int
    too_small: str | None = None

    def text(self, settings: StudySettings, space_name: str) -> str:
        s, R, E = settings, self.replicates, self.epochs
        lines = [f"plan for {space_name} ({s.design} design): {s.backbone} {s.stem}, proxy {s.proxy.source} {s.proxy.resolution}px/"
                 f"{s.proxy.num_classes} classes, {E} epochs per trial, {R} replicate{'s' if R > 1 else ''} per configuration",
                 f"noise: sigma = {self.sigma:.3g} points of top-1 per trial ({self.sigma_source})",
                 f"planted effect: {self.effect:g} points (a stage two or more odd steps from k* = psi(C; 2, 1) loses it, one step half); "
                 f"F-test of 'k matters' at alpha {self.alpha:g}"]
        if self.too_small is not None:
            lines.append(self.too_small)
        if self.needed is None:
            lines.append(f"needed for power {self.power:g}: more than {MAX_CONFIGS} configurations: reduce the noise (more validation "
                         f"images, more epochs, more replicates) or look for a larger effect")
        else:
            lines.append(f"needed for power {self.power:g}: {self.needed} configurations x {R} = {self.needed * R} trials, "
                         f"{self.needed * R * E} trial-epochs (power {self.needed_power:.2f})"
                         + (f"; the pilot used {self.pilot_trials} trials" if self.pilot_trials else ""))
        if self.too_small is None:
            lines.append(f"this budget ({self.budget} configurations x {R} = {self.budget * R} trials, {self.budget * R * E} "
                         f"trial-epochs): power {self.budget_power:.2f} for {self.effect:g} points; it detects "
                         f"{self.detectable:.2g} points with power {self.power:g}")
        lines.append("(the power depends on the planted shape and on sigma; rerun the plan with the sigma a finished study reports)")
        return "\n".join(lines)


def plan_study(settings: StudySettings, space: Space, *, effect: float = 0.5, sigma: float | None = None, alpha: float = 0.05,
               power: float = 0.8, log: Callable[[str], None] = print) -> Plan:
    """Plan the k-vs-C study ``settings`` (see the module doc)."""
    from analysis.kmap import design_power, detectable_effect, f_power

    if not effect > 0:
        raise ConfigError("effect", f"must be > 0 points, got {effect!r}")
    if sigma is not None and not sigma > 0:
        raise ConfigError("sigma", f"must be > 0 points, got {sigma!r}")
    planted = Planted(effect=effect)
    effect_of = lambda C, k: planted.stage_effect(int(C), int(k))
    pilot_trials = 0
    if sigma is None:
        sigma, ci, df, pilot_trials = pilot_sigma(settings, space, log=log)
        source = f"measured by the pilot: 95 % CI {ci[0]:.3g}-{ci[1]:.3g}, {df} df" + _pilot_widths(settings, space)
    else:
        source = "given with --sigma"
    pools = [_Pool(settings, space, settings.seed + 1000 * d) for d in range(DRAWS)]

    def at(n: int) -> Any:
        return design_power([p.data(n) for p in pools], effect_of, sigma=sigma, alpha=alpha)

    too_small = budget_warning(settings.replace(design="inference"), space) if settings.design == "inference" else None
    if too_small is not None:
        too_small = too_small.replace(", and power needs more (--plan); extend the study later with --resume --trials N", "")
    budget = [p.data(settings.trials) for p in pools]
    budget_pt = design_power(budget, effect_of, sigma=sigma, alpha=alpha)
    detectable = detectable_effect(budget, effect_of, effect=effect, sigma=sigma, alpha=alpha, power=power)
    # the smallest number of configurations with the power: the noncentrality grows about in
    # proportion to the configurations, so a pilot size predicts where to look; the drawn
    # designs then confirm it (stepping up by 10 % while they fall short)
    probe_size = max(min(settings.trials, MAX_CONFIGS), 64)
    probe = budget_pt if probe_size == settings.trials else at(probe_size)
    params = probe.configs - probe.df[1]
    rate = probe.lam / probe.configs

    def predicted(n: int) -> float:
        return f_power(rate * n, probe.df[0], n - params, alpha)

    needed = needed_power = None
    if predicted(MAX_CONFIGS) >= power:
        lo, hi = params + 1, MAX_CONFIGS
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if not predicted(mid) >= power else (lo, mid)
        n = hi
        while n <= MAX_CONFIGS:
            pt = at(n)
            if pt.power >= power:
                needed, needed_power = n, pt.power
                break
            n = math.ceil(n * 1.1)
    return Plan(sigma=sigma, sigma_source=source, effect=effect, alpha=alpha, power=power, needed=needed, needed_power=needed_power,
                budget=settings.trials, budget_power=budget_pt.power, detectable=detectable, replicates=settings.replicates,
                epochs=settings.recipe.epochs, pilot_trials=pilot_trials, too_small=too_small)


def _pilot_widths(settings: StudySettings, space: Space) -> str:
    """Which widths the pilot measured the noise at, when the design trains others too."""
    refs = {float(p.get("width", settings.width or 0)) for _, p in space.reference_points(settings.space_context())}
    if settings.width is not None or not refs:
        return ""
    return (f"; at width {', '.join(f'{w:g}' for w in sorted(refs))} only (the reference points): the design trains narrower widths "
            "too, whose noise is often larger, and the power assumes this noise at every width")


