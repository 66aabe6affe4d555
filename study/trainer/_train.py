"""One trial: build the model, train it epoch by epoch, evaluate and report after each.

The hot path (one epoch's steps, :func:`_train_epoch`) reads top to bottom, after airbench
(Jordan, 2024): set the step's lr, forward under autocast, loss, backward, step. The
training loss is summed on the device and checked for NaN/inf once every
:data:`DIVERGENCE_CHECK_EVERY` steps and at the end of the epoch, so there is no per-step
host synchronisation. Epoch times are measured with CUDA events on a GPU.

One process and one rank of a data-parallel group run the same code: the group's part is a
context (:class:`Distributed`, or the null :class:`SingleProcess`: rank 0 of 1, identity
reductions) that reduces, broadcasts and wraps. A trial is the steps of :func:`train`:
the checkpoint to resume, the data, the set-up (:func:`_start`), then per epoch training
(:func:`_train_epoch`), evaluation (:func:`_evaluate`), the divergence check, the report and
the checkpoint (:func:`_checkpoint_state`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from study.config import TrialConfig
from study.costs import resolve_device
from study.metrics import EpochMetrics, Reporter, TrialResult, as_reporter
from study.trainer._checkpoint import CheckpointStore, as_store
from study.trainer._distributed import Distributed, ParallelContext, SingleProcess, as_context, per_worker_batch
from study.trainer._optim import build_optimizer
from study.trainer._schedule import LRSchedule
from study.validate import ConfigError

__all__ = ["train", "trial_model", "finished_result", "check_same_config", "format_metrics", "numerics", "DIVERGENCE_CHECK_EVERY"]

#: Steps between two host-side checks of the running training loss for NaN/inf.
DIVERGENCE_CHECK_EVERY = 50


def train(
    config: TrialConfig,
    reporter: Reporter | Callable[[EpochMetrics], bool | None] | None = None,
    *,
    device: str | torch.device | None = None,
    data: Any = None,
    checkpoint_dir: str | Path | CheckpointStore | None = None,
    resume: bool = False,
    log: Callable[[str], Any] | None = None,
    distributed: Distributed | SingleProcess | None = None,
    placement: str = "auto",
) -> TrialResult:
    """Train ``config`` for ``config.recipe.epochs`` epochs and return its :class:`TrialResult`.

    Args:
        config: the trial (architecture, recipe, proxy, seed).
        reporter: gets ``start(costs, stages)`` once, then ``report(metrics)`` after every
            epoch; ``report`` returning True stops the trial after that epoch (outcome
            ``"stopped"``; a stop after the last epoch changes nothing, the outcome stays
            ``"complete"``). A plain callable ``f(metrics) -> bool | None`` works too. An
            exception from the reporter propagates; that epoch is not checkpointed.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        data: an already loaded :class:`study.data.ProxyData` (a study shares one); default
            ``study.data.load_proxy(config.proxy)``. Its class count must equal
            ``config.arch.num_classes`` and its resolution ``config.proxy.resolution``.
        checkpoint_dir: save a checkpoint there after every epoch (atomically): a folder
            (``<folder>/checkpoint.pt``) or a :class:`CheckpointStore`. One that already
            holds a checkpoint is refused unless ``resume``.
        resume: continue from the checkpoint in ``checkpoint_dir`` (if any). The checkpoint
            must come from the same config; the continued run reproduces the uninterrupted
            one exactly on the same machine (model, optimizer, schedule step, RNG states and
            the loader's per-epoch seeds are restored). ``reporter.start`` is called again;
            ``reporter.report`` only for the epochs trained now (the result's history holds
            all of them). A finished checkpoint returns its result without training.
        log: called with one human-readable line per event (costs, each epoch, the end).
        distributed: this process's rank in an initialised data-parallel process group
            (:class:`Distributed`); None (or :class:`SingleProcess`) trains in this process alone. Every rank calls
            ``train`` with the same config; rank 0 reports, logs and saves checkpoints, and
            every rank reads the checkpoint to resume. See :mod:`study.trainer._distributed`
            for the global batch, the learning rate and how metrics are reduced; the
            result's ``extra["distributed"]`` records them and every rank's weight digest.
        placement: where the data splits live, ``"auto"``, ``"device"`` or ``"host"``
            (streamed from host memory; see :class:`study.data.DeviceLoader`).

    Recipe (see :class:`study.config.Recipe`): SGD with Nesterov momentum, per-step lr with
    linear warm-up then cosine or step decay (:class:`LRSchedule`), label smoothing (Szegedy
    et al., "Rethinking the Inception Architecture", CVPR 2016), no weight decay on BN and
    bias parameters; bf16 autocast and channels-last as :func:`numerics` says (by default on
    CUDA only; on any device when the recipe sets them true), and ``torch.compile`` when
    ``recipe.compile``. The model is built for ``config.proxy.resolution``
    (:func:`study.models.build_model`), so the attention parameters that depend on the
    feature map and are left at their default fit the proxy's maps. Validation after every epoch on the centre
    view: top-1 and top-5 (%) and the plain cross-entropy (without label smoothing).
    ``EpochMetrics.lr`` is the lr of the epoch's last step; ``epoch_time_s`` and
    ``images_per_s`` cover training only (data included, evaluation excluded);
    ``wall_time_s`` counts from the start of training (across a resume). The seed sets the
    model's initialisation (``torch.manual_seed``) and the loader's shuffle and
    augmentation (``(seed, epoch)``); on CUDA cuDNN runs deterministically, on CPU denormals
    are flushed to zero (both restored afterwards).

    The costs' latency is probed with the node to itself (:func:`study.costs.probe_latency`),
    and every epoch's training and evaluation loops hold the node's turnstile shared
    (:mod:`study.turnstile`; not for a rank of a data-parallel group), so a probe of another
    trial on the node stops them at their next step for its few seconds.

    A NaN or inf training (or validation) loss ends the trial with outcome ``"diverged"``:
    the diverged epoch is neither reported nor added to the history, so the result carries
    the last finite metrics; ``extra["diverged_epoch"]`` names the epoch. Errors while
    building the model or loading data propagate.
    """
    if not isinstance(config, TrialConfig):
        raise TypeError(f"config: expected a study.config.TrialConfig, got {type(config).__name__}")
    reporter = as_reporter(reporter)
    say = _as_log(log)
    device = resolve_device(device)
    ctx = as_context(distributed)
    store = as_store(checkpoint_dir)
    state = _checkpoint_to_resume(store, config, resume)
    if state is not None and state.get("outcome"):
        result = finished_result(state, config)
        reporter.start(result.costs, [dict(s) for s in result.stages])
        say(f"checkpoint in {store} is finished ({state['outcome']} after epoch {state['epoch']})")
        return result

    with _turnstile(ctx).computing():  # loading the data computes: another trial's latency probe waits for it
        data = _checked_data(config, data)
    run = _start(config, data, state, ctx=ctx, device=device, placement=placement,
                 reporter=reporter, say=say, where=store)
    outcome, message, extra = _train_epochs(run, reporter, say, store)
    if outcome == "stopped":
        say(message)
    extra = {**extra, **ctx.result_extra(run.model, run.worker_batch)}
    return TrialResult(config=config, outcome=outcome, history=tuple(run.history), costs=run.costs, stages=run.stages,
                       message=message, extra=extra)


@dataclasses.dataclass
class _Run:
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


def _checkpoint_to_resume(store: CheckpointStore | None, config: TrialConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint in ``store`` to continue (None when there is none or no store):
    FileExistsError for one that is there without ``resume``, ValueError for one of another
    config."""
    state = store.load() if store is not None else None
    if state is None:
        return None
    if not resume:
        raise FileExistsError(
            f"checkpoint_dir: {store} already holds a checkpoint (epoch {state['epoch']}); "
            "pass resume=True to continue it or choose another folder"
        )
    check_same_config(state["config"], config, store)
    return state


def _checked_data(config: TrialConfig, data: Any) -> Any:
    """``data`` (default: the proxy loaded for ``config.proxy``), checked against the
    config's class count and resolution."""
    from study.data import load_proxy

    if data is None:
        data = load_proxy(config.proxy)
    if len(data.classes) != config.arch.num_classes:
        raise ConfigError("arch.num_classes", f"is {config.arch.num_classes} but the proxy data has "
                         f"{len(data.classes)} classes; set num_classes to {len(data.classes)}")
    if data.resolution != config.proxy.resolution:
        raise ConfigError("data", f"resolution {data.resolution} does not match proxy.resolution {config.proxy.resolution}")
    return data


def _loaders(config: TrialConfig, data: Any, *, worker_batch: int, device: torch.device, memory_format: torch.memory_format,
             ctx: ParallelContext, placement: str) -> tuple[Any, Any]:
    """This rank's training loader (shuffled, augmented, ``worker_batch`` images a step) and
    its validation loader (centre view, twice the batch)."""
    from study.data import DeviceLoader

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
    from study.costs import Costs, measure_costs

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
    _set_rng_state(state["rng"], device)
    say(f"resuming from epoch {state['epoch']} of {epochs} ({where})")
    if int(state.get("world_size", 1)) != world_size:
        say(f"note: the checkpoint was written by {state.get('world_size', 1)} worker(s), this run has {world_size}: "
            "it goes on from the same weights but does not reproduce an uninterrupted run exactly")
    return history, int(state["step"]), float(state["wall_time_s"])


def _start(config: TrialConfig, data: Any, state: Mapping[str, Any] | None, *, ctx: ParallelContext, device: torch.device,
           placement: str, reporter: Reporter, say: Callable[[str], Any], where: Any) -> _Run:
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
        say(f"costs: {_format_costs(costs)}")
    if ctx.main:
        reporter.start(costs, [dict(s) for s in stages])
    ctx.announce(say, global_batch=recipe.batch_size, worker_batch=batch, lr=recipe.lr)

    wrapped = ctx.wrap(model, device)
    net = torch.compile(wrapped) if recipe.compile else wrapped
    eval_net = net if wrapped is model else (torch.compile(model) if recipe.compile else model)
    return _Run(config=config, ctx=ctx, device=device, amp=amp, model=model, net=net, eval_net=eval_net,
                optimizer=optimizer, schedule=schedule, train_loader=train_loader, val_loader=val_loader,
                worker_batch=batch, n_val=len(data.val), val_k=min(5, len(data.classes)), costs=costs, stages=stages,
                history=history, step=step, wall_start=time.perf_counter() - wall_before, turnstile=_turnstile(ctx))


def _turnstile(ctx: ParallelContext) -> Any:
    """The node's turnstile for a single process; none for a rank of a data-parallel group
    (one rank stopped at the gate would hold its peers inside a collective, which holds the
    probe: :mod:`study.turnstile`)."""
    from study.turnstile import Turnstile, node_turnstile

    return node_turnstile() if ctx.world_size == 1 else Turnstile(None)


def _computing(run: _Run) -> Any:
    """The node's shared lock for one loop of steps (:meth:`study.turnstile.Turnstile.computing`);
    a probe waiting for the node first gets this process's queued GPU work finished."""
    from study.turnstile import Turnstile

    device = run.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return (run.turnstile or Turnstile(None)).computing(sync=sync)


def _train_epochs(run: _Run, reporter: Reporter, say: Callable[[str], Any],
                  store: CheckpointStore | None) -> tuple[str, str, dict[str, Any]]:
    """Train the epochs still to do, each followed by evaluation, the divergence check, the
    report and the checkpoint; ``(outcome, message, extra)`` of the trial."""
    epochs = run.config.recipe.epochs
    with _numerics(run.device):
        for epoch in range(len(run.history) + 1, epochs + 1):
            train_loss, seen, epoch_time, lr = _train_epoch(run, epoch)
            hits1, hits5, val_loss = _evaluate(run) if math.isfinite(train_loss) else (0.0, 0.0, math.nan)
            failure = _divergence(train_loss, val_loss, epoch=epoch, step=run.step, lr=lr, history=run.history)
            if failure is not None:
                say(f"epoch {epoch}/{epochs}: diverged: {failure}")
                return "diverged", failure, {"diverged_epoch": epoch}
            metrics = EpochMetrics(
                epoch=epoch,
                top1=100.0 * hits1 / run.n_val,
                top5=100.0 * hits5 / run.n_val,
                val_loss=val_loss,
                train_loss=train_loss,
                lr=lr,
                epoch_time_s=epoch_time,
                wall_time_s=time.perf_counter() - run.wall_start,
                images_per_s=seen / epoch_time if epoch_time > 0 else math.inf,
            )
            stop = _report_epoch(run, metrics, reporter, say)
            outcome, message = ("stopped", f"stopped by the reporter after epoch {epoch}") if stop and epoch < epochs \
                else ("complete", "")
            if store is not None and run.ctx.main:
                store.save(_checkpoint_state(run, epoch, outcome if (stop or epoch == epochs) else None, message))
            if stop:
                return outcome, message, {}
    return "complete", "", {}


def _train_epoch(run: _Run, epoch: int) -> tuple[float, int, float, float]:
    """One epoch of training steps; ``(train_loss, images, seconds, lr)``: the mean loss of
    the global batches and the images over all ranks, the epoch's training time and its last
    step's lr. Ends early when the running loss is NaN/inf at a check (every
    :data:`DIVERGENCE_CHECK_EVERY` steps)."""
    recipe, ctx, device, net, optimizer = run.config.recipe, run.ctx, run.device, run.net, run.optimizer
    peak_lr, smoothing, schedule, step = recipe.lr, recipe.label_smoothing, run.schedule, run.step
    net.train()
    run.train_loader.set_epoch(epoch)
    loss_sum = torch.zeros((), device=device)
    steps = seen = 0
    timer = _Timer(device)
    with _computing(run) as gate:  # a latency probe elsewhere on the node waits for the step to end
        for x, y in run.train_loader:
            lr = peak_lr * schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.amp):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            steps += 1
            step += 1
            seen += y.shape[0]
            if steps % DIVERGENCE_CHECK_EVERY == 0 and ctx.any_nonfinite(loss_sum):
                break
            gate.step()
    epoch_time = timer.stop()
    run.step = step
    # the mean over ranks of equal shards: the global batches' mean loss
    total_loss, seen = ctx.all_sum([loss_sum, float(seen)], device)
    return total_loss / (steps * ctx.world_size), int(seen), epoch_time, lr


def _evaluate(run: _Run) -> tuple[float, float, float]:
    """Validation on the centre view of the model's current weights (every rank evaluates
    rank 0's, buffers included): ``(top-1 hits, top-5 hits, mean cross-entropy)`` over the
    whole validation split (each image is in exactly one rank's part; counts and sums are
    added over ranks)."""
    device, net, k = run.device, run.eval_net, run.val_k
    run.ctx.sync_buffers(run.model)
    net.eval()
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correct5 = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.amp), _computing(run) as gate:
        for x, y in run.val_loader:
            logits = net(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            hit = logits.topk(k, dim=1).indices == y[:, None]
            correct1 += hit[:, 0].sum()
            correct5 += hit.any(dim=1).sum()
            gate.step()
    hits1, hits5, loss_total = run.ctx.all_sum([correct1, correct5, loss_sum], device)
    return hits1, hits5, loss_total / run.n_val


def _divergence(train_loss: float, val_loss: float, *, epoch: int, step: int, lr: float,
                history: list[EpochMetrics]) -> str | None:
    """The message of a diverged epoch (a NaN or inf training or validation loss), or None
    when both losses are finite."""
    if math.isfinite(train_loss) and math.isfinite(val_loss):
        return None
    which, value = ("training", train_loss) if not math.isfinite(train_loss) else ("validation", val_loss)
    kept = f"the result keeps the metrics of epoch {history[-1].epoch}" if history else "no epoch finished"
    return f"{which} loss became {value} in epoch {epoch} (step {step}, lr {lr:.4g}); {kept}"


def _report_epoch(run: _Run, metrics: EpochMetrics, reporter: Reporter, say: Callable[[str], Any]) -> bool:
    """Add an epoch to the history, log it and report it (main process); whether the
    reporter asked to stop, the same answer on every rank."""
    run.history.append(metrics)
    say(format_metrics(metrics, run.config.recipe.epochs))
    stop = bool(reporter.report(metrics)) if run.ctx.main else False
    return run.ctx.broadcast_flag(stop, run.device)


def _checkpoint_state(run: _Run, epoch: int, outcome: str | None, message: str) -> dict[str, Any]:
    """The checkpoint after ``epoch``: everything a resume needs to continue exactly
    (model, optimizer, schedule step, RNG states, history, costs, wall time), the config,
    and the outcome once the trial is finished (None before)."""
    return {
        "config": run.config.to_dict(),
        "epoch": epoch,
        "step": run.step,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": dataclasses.asdict(run.schedule),
        "rng": _get_rng_state(run.device),
        "history": [m.to_dict() for m in run.history],
        "costs": run.costs.to_dict(),
        "stages": [dict(s) for s in run.stages],
        "wall_time_s": time.perf_counter() - run.wall_start,
        "outcome": outcome,
        "message": message,
        "world_size": run.ctx.world_size,
    }


def trial_model(config: TrialConfig) -> torch.nn.Module:
    """The model :func:`train` trains for ``config``, freshly initialised from
    ``config.seed``: ``config.arch`` built for ``config.proxy.resolution``
    (:func:`study.models.build_model`), so the attention parameters that depend on the
    feature map and are left at their default (BAM's dilation, Gather-Excite's global
    ``size``) fit the proxy's maps, and are recorded in ``model.stage_info``."""
    from study.models import build_model

    torch.manual_seed(config.seed)
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


def finished_result(state: Mapping[str, Any], config: TrialConfig) -> TrialResult:
    """The result a finished checkpoint (its ``outcome`` set) stands for."""
    return TrialResult.from_dict({**state, "stages": state["stages"]}, config=config)


# ---------------------------------------------------------------------------------------
# helpers


def format_metrics(m: EpochMetrics, epochs: int | None = None) -> str:
    """One line for an epoch: ``epoch 3/10  top1 45.20  top5 80.10  val_loss ...``."""
    of = f"/{epochs}" if epochs else ""
    return (f"epoch {m.epoch}{of}  top1 {m.top1:6.2f}  top5 {m.top5:6.2f}  val_loss {m.val_loss:.4f}  "
            f"train_loss {m.train_loss:.4f}  lr {m.lr:.4g}  {m.epoch_time_s:.2f} s  {m.images_per_s:,.0f} img/s")


def _format_costs(costs: Any) -> str:
    latency = "n/a" if getattr(costs, "latency_ms", None) is None else f"{costs.latency_ms:.2f} ms"
    if getattr(costs, "latency_iqr_ms", None) is not None:
        latency += f" (IQR {costs.latency_iqr_ms:.2f} ms, {costs.latency_device}, {costs.latency_threads} thread(s))"
    return (f"params {costs.params / 1e6:.3f} M  MACs {costs.macs / 1e6:.1f} M at {costs.resolution} px "
            f"({costs.macs_224 / 1e9:.3f} G at 224 px)  latency {latency}")


def _as_log(log: Callable[[str], Any] | None) -> Callable[[str], Any]:
    if log is None:
        return lambda _msg: None
    if hasattr(log, "info") and callable(log.info):  # a logging.Logger
        return log.info
    if not callable(log):
        raise TypeError(f"log: expected a callable taking a string or a logging.Logger, got {type(log).__name__}")
    return log




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


def _get_rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _numerics(device: torch.device) -> Iterator[None]:
    """The trial's numeric settings, restored afterwards.

    CUDA: deterministic cuDNN kernels without autotuning, so the same kernels run every
    time (CPU kernels already are deterministic). CPU: denormal floats are flushed to zero;
    small weights and momentum buffers otherwise drift into the denormal range, where x86
    arithmetic is tens of times slower (an epoch of 0.25 s took 14 s in our runs).
    """
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            yield
        return
    flushed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)


class _Timer:
    """Device-synchronised elapsed seconds: CUDA events on a GPU, ``perf_counter`` on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / 1000.0
        return time.perf_counter() - self.t0
