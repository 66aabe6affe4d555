"""A trial's set-up, everything before its first epoch: the data checked against the config,
this rank's loaders, the model (seeded, built for the proxy's resolution), its costs, the
optimizer and schedule, a checkpoint's state restored, the reporter started
(:func:`start_trial`), and what a trial trains with (:func:`numerics`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from study import turnstile
from study.config import TrialConfig
from study.costs import Costs, measure_costs
from study.data import DeviceLoader, load_proxy
from study.metrics import EpochMetrics, Reporter
from study.models import build_model, describe_stages
from study.trainer._checkpoint import set_rng_state
from study.trainer._distributed import ParallelContext, per_worker_batch
from study.trainer._optim import build_optimizer
from study.trainer._schedule import LRSchedule
from study.turnstile import Turnstile
from study.validate import ConfigError

__all__ = ["TrialRun", "start_trial", "checked_data", "trial_model", "numerics", "trial_turnstile", "format_costs"]


@dataclasses.dataclass
class TrialRun:
    """A trial in progress: what :func:`_start` built for it and the counters its epochs
    advance (``history``, the global ``step``)."""

    config: TrialConfig
    ctx: ParallelContext
    device: torch.device
    amp: bool
    model: torch.nn.Module  # the bare model: checkpointed and digested
    net: torch.nn.Module  # what trains: the model wrapped by the context, compiled when asked
    eval_net: torch.nn.Module  # what evaluates: the unwrapped model, compiled when asked
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    train_loader: Any
    val_loader: Any
    worker_batch: int
    n_val: int
    val_k: int
    costs: Any
    stages: tuple[dict[str, Any], ...]
    history: list[EpochMetrics]
    step: int
    wall_start: float
    turnstile: Any = None  # the node's (study.turnstile): the loops hold it shared, a latency probe alone


def checked_data(config: TrialConfig, data: Any = None) -> Any:
    """What :func:`study.trainer.train` refuses before it trains, checked without training:
    ``data`` (default: the proxy loaded for ``config.proxy``) against the config's class
    count and resolution, and the architecture at that resolution (its attention parameters
    against the stages' feature maps, :func:`study.models.describe_stages`). Returns the data."""
    if data is None:
        data = load_proxy(config.proxy)
    if len(data.classes) != config.arch.num_classes:
        raise ConfigError("arch.num_classes", f"is {config.arch.num_classes} but the proxy data has "
                         f"{len(data.classes)} classes; set num_classes to {len(data.classes)}")
    if data.resolution != config.proxy.resolution:
        raise ConfigError("data", f"resolution {data.resolution} does not match proxy.resolution {config.proxy.resolution}")
    describe_stages(config.arch, config.proxy.resolution)
    return data


def _loaders(config: TrialConfig, data: Any, *, worker_batch: int, device: torch.device, memory_format: torch.memory_format,
             ctx: ParallelContext, placement: str) -> tuple[Any, Any]:
    """This rank's training loader (shuffled, augmented, ``worker_batch`` images a step) and
    its validation loader (centre view, twice the batch)."""

    shard = {"rank": ctx.rank, "world_size": ctx.world_size, "placement": placement}
    train_loader = DeviceLoader(data.train, batch_size=worker_batch, device=device, train=True, seed=config.seed,
                                augment=config.proxy.augment, memory_format=memory_format, **shard)
    val_loader = DeviceLoader(data.val, batch_size=2 * worker_batch, device=device, train=False, seed=config.seed,
                              memory_format=memory_format, **shard)
    return train_loader, val_loader


def _optimization(model: torch.nn.Module, recipe: Any, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """The recipe's optimizer for ``model`` (:func:`build_optimizer`) and its per-step lr
    schedule (:class:`LRSchedule`)."""
    return build_optimizer(model, recipe), LRSchedule.from_recipe(recipe, steps_per_epoch)


def _measured_costs(model: torch.nn.Module, config: TrialConfig, state: Mapping[str, Any] | None,
                    ctx: ParallelContext, device: torch.device) -> Any:
    """The trial's costs: a checkpoint's, else measured on the main process (other ranks
    get None: rank 0 reports them)."""

    if state is not None:
        return Costs.from_dict(state["costs"])
    if ctx.main:
        return measure_costs(model, config.proxy.resolution, latency=True, device=str(device))
    return None


def _restore(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
             *, world_size: int, say: Callable[[str], Any], where: Any, epochs: int) -> tuple[list[EpochMetrics], int, float]:
    """Load a checkpoint's model, optimizer and RNG states; its ``(history, step,
    wall_time_s)``. Says that it resumes, and when the checkpoint's worker count differs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    history = [EpochMetrics.from_dict(m) for m in state["history"]]
    set_rng_state(state["rng"], device)
    say(f"resuming from epoch {state['epoch']} of {epochs} ({where})")
    if int(state.get("world_size", 1)) != world_size:
        say(f"note: the checkpoint was written by {state.get('world_size', 1)} worker(s), this run has {world_size}: "
            "it goes on from the same weights but does not reproduce an uninterrupted run exactly")
    return history, int(state["step"]), float(state["wall_time_s"])


def start_trial(config: TrialConfig, data: Any, state: Mapping[str, Any] | None, *, ctx: ParallelContext, device: torch.device,
           placement: str, reporter: Reporter, say: Callable[[str], Any], where: Any) -> TrialRun:
    """Everything before the first epoch: loaders, model (seeded), costs, optimizer and
    schedule; a checkpoint's state restored; the reporter started on the main process."""
    recipe = config.recipe
    amp, memory_format = numerics(recipe, device)
    batch = per_worker_batch(recipe.batch_size, ctx.world_size)
    train_loader, val_loader = _loaders(config, data, worker_batch=batch, device=device, memory_format=memory_format,
                                        ctx=ctx, placement=placement)
    model = trial_model(config)
    stages = tuple(s.to_dict() for s in model.stage_info)
    model = ctx.convert_model(model)
    model.to(device)
    costs = _measured_costs(model, config, state, ctx, device)
    model.to(memory_format=memory_format)
    optimizer, schedule = _optimization(model, recipe, len(train_loader))
    history: list[EpochMetrics] = []
    step, wall_before = 0, 0.0
    if state is not None:
        history, step, wall_before = _restore(state, model, optimizer, device, world_size=ctx.world_size, say=say,
                                              where=where, epochs=recipe.epochs)
    elif costs is not None:
        say(f"costs: {format_costs(costs)}")
    if ctx.main:
        reporter.start(costs, [dict(s) for s in stages])
    ctx.announce(say, global_batch=recipe.batch_size, worker_batch=batch, lr=recipe.lr)

    wrapped = ctx.wrap(model, device)
    if recipe.compile:
        # a process trains its trials one after another (the local runner, a reused Ray actor): each new network is a
        # recompilation of the same forward, and past dynamo's recompile limit (8) the later trials would run eager
        torch._dynamo.reset()
    net = torch.compile(wrapped) if recipe.compile else wrapped
    eval_net = net if wrapped is model else (torch.compile(model) if recipe.compile else model)
    return TrialRun(config=config, ctx=ctx, device=device, amp=amp, model=model, net=net, eval_net=eval_net,
                optimizer=optimizer, schedule=schedule, train_loader=train_loader, val_loader=val_loader,
                worker_batch=batch, n_val=len(data.val), val_k=min(5, len(data.classes)), costs=costs, stages=stages,
                history=history, step=step, wall_start=time.perf_counter() - wall_before, turnstile=trial_turnstile(ctx))


def trial_turnstile(ctx: ParallelContext) -> Any:
    """The node's turnstile for a single process; none for a rank of a data-parallel group
    (one rank stopped at the gate would hold its peers inside a collective, which holds the
    probe: :mod:`study.turnstile`)."""

    return turnstile.node_turnstile() if ctx.world_size == 1 else Turnstile(None)  # the node's, looked up when a trial starts


def trial_model(config: TrialConfig) -> torch.nn.Module:
    """The model :func:`train` trains for ``config``, freshly initialised from
    ``config.seed`` (``config.init_seed`` when given): ``config.arch`` built for ``config.proxy.resolution``
    (:func:`study.models.build_model`), so the attention parameters that depend on the
    feature map and are left at their default (BAM's dilation, Gather-Excite's global
    ``size``) fit the proxy's maps, and are recorded in ``model.stage_info``."""

    torch.manual_seed(config.seed if config.init_seed is None else config.init_seed)
    return build_model(config.arch, config.proxy.resolution)


def numerics(recipe: Any, device: str | torch.device) -> tuple[bool, torch.memory_format]:
    """``(amp, memory_format)`` for training ``recipe`` on ``device``: whether the forward
    pass runs under bf16 autocast and whether model and batches are channels-last.

    ``recipe.amp`` / ``recipe.channels_last``: ``None`` (the default) turns them on on CUDA
    only, where they pay; ``True`` on any device (bf16 autocast on the CPU is ordinary
    PyTorch: ``torch.autocast("cpu", dtype=torch.bfloat16)``; fast on CPUs with AVX512-BF16
    or AMX, slower elsewhere); ``False`` never. Used by :func:`train` and by any loop that
    wants to train the same way (``benchmarks/trainer_overhead.py``)."""
    on_cuda = torch.device(device).type == "cuda"
    amp = on_cuda if recipe.amp is None else recipe.amp
    last = on_cuda if recipe.channels_last is None else recipe.channels_last
    return bool(amp), torch.channels_last if last else torch.contiguous_format


def format_costs(costs: Any) -> str:
    latency = "n/a" if getattr(costs, "latency_ms", None) is None else f"{costs.latency_ms:.2f} ms"
    if getattr(costs, "latency_iqr_ms", None) is not None:
        latency += f" (IQR {costs.latency_iqr_ms:.2f} ms, {costs.latency_device}, {costs.latency_threads} thread(s))"
    return (f"params {costs.params / 1e6:.3f} M  MACs {costs.macs / 1e6:.1f} M at {costs.resolution} px "
            f"({costs.macs_224 / 1e9:.3f} G at 224 px)  latency {latency}")

