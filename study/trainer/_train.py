"""One trial: build the model, train it epoch by epoch, evaluate and report after each.

The hot path (the epoch loop in :func:`train`) reads top to bottom, after airbench
(Jordan, 2024): set the step's lr, forward under autocast, loss, backward, step. The
training loss is summed on the device and checked for NaN/inf once every
:data:`DIVERGENCE_CHECK_EVERY` steps and at the end of the epoch, so there is no per-step
host synchronisation. Epoch times are measured with CUDA events on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F

from study.config import TrialConfig
from study.costs import resolve_device
from study.metrics import EpochMetrics, Reporter, TrialResult, as_reporter
from study.trainer._checkpoint import CheckpointStore, as_store
from study.trainer._distributed import Distributed, per_worker_batch, state_digest
from study.trainer._optim import build_optimizer
from study.trainer._schedule import LRSchedule

__all__ = ["train", "trial_model", "finished_result", "format_metrics", "numerics", "DIVERGENCE_CHECK_EVERY"]

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
    distributed: Distributed | None = None,
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
            (:class:`Distributed`); None trains in this process alone. Every rank calls
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

    A NaN or inf training (or validation) loss ends the trial with outcome ``"diverged"``:
    the diverged epoch is neither reported nor added to the history, so the result carries
    the last finite metrics; ``extra["diverged_epoch"]`` names the epoch. Errors while
    building the model or loading data propagate.
    """
    from study.costs import Costs, measure_costs
    from study.data import DeviceLoader, load_proxy

    if not isinstance(config, TrialConfig):
        raise TypeError(f"config: expected a study.config.TrialConfig, got {type(config).__name__}")
    reporter = as_reporter(reporter)
    say = _as_log(log)
    device = resolve_device(device)
    recipe = config.recipe

    # ---- checkpoint to resume from ------------------------------------------------------
    store = as_store(checkpoint_dir)
    main = distributed is None or distributed.main
    state = None
    if store is not None:
        state = store.load()
        if state is not None and not resume:
            raise FileExistsError(
                f"checkpoint_dir: {store} already holds a checkpoint (epoch {state['epoch']}); "
                "pass resume=True to continue it or choose another folder"
            )
        if state is not None:
            _check_same_config(state["config"], config, store)
    if state is not None and state.get("outcome"):
        result = finished_result(state, config)
        reporter.start(result.costs, [dict(s) for s in result.stages])
        say(f"checkpoint in {store} is finished ({state['outcome']} after epoch {state['epoch']})")
        return result

    # ---- data -----------------------------------------------------------------------------
    if data is None:
        data = load_proxy(config.proxy)
    if len(data.classes) != config.arch.num_classes:
        raise ValueError(f"arch.num_classes: is {config.arch.num_classes} but the proxy data has "
                         f"{len(data.classes)} classes; set num_classes to {len(data.classes)}")
    if data.resolution != config.proxy.resolution:
        raise ValueError(f"data: resolution {data.resolution} does not match proxy.resolution {config.proxy.resolution}")
    amp, memory_format = numerics(recipe, device)
    rank, world = (distributed.rank, distributed.world_size) if distributed is not None else (0, 1)
    batch = per_worker_batch(recipe.batch_size, world)
    train_loader = DeviceLoader(data.train, batch_size=batch, device=device, train=True, seed=config.seed,
                                augment=config.proxy.augment, memory_format=memory_format, rank=rank, world_size=world,
                                placement=placement)
    val_loader = DeviceLoader(data.val, batch_size=2 * batch, device=device, train=False, seed=config.seed,
                              memory_format=memory_format, rank=rank, world_size=world, placement=placement)
    steps_per_epoch = len(train_loader)
    schedule = LRSchedule.from_recipe(recipe, steps_per_epoch)

    # ---- model, costs, optimizer ------------------------------------------------------
    model = trial_model(config)
    stages = tuple(s.to_dict() for s in model.stage_info)
    if distributed is not None and distributed.sync_bn:
        model = distributed.convert_sync_bn(model)
    model.to(device)
    if state is not None:
        costs = Costs.from_dict(state["costs"])
    elif main:
        costs = measure_costs(model, config.proxy.resolution, latency=True, device=str(device))
    else:
        costs = None  # measured by rank 0
    model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, recipe)
    history: list[EpochMetrics] = []
    step, wall_before = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochMetrics.from_dict(m) for m in state["history"]]
        step, wall_before = int(state["step"]), float(state["wall_time_s"])
        _set_rng_state(state["rng"], device)
        say(f"resuming from epoch {state['epoch']} of {recipe.epochs} ({store})")
        if int(state.get("world_size", 1)) != world:
            say(f"note: the checkpoint was written by {state.get('world_size', 1)} worker(s), this run has {world}: "
                "it goes on from the same weights but does not reproduce an uninterrupted run exactly")
    elif costs is not None:
        say(f"costs: {_format_costs(costs)}")
    if main:
        reporter.start(costs, [dict(s) for s in stages])
    if distributed is not None:
        say(f"data-parallel: {world} workers x {batch} images = global batch {batch * world}"
            + (f" (recipe.batch_size {recipe.batch_size}: the remainder of {recipe.batch_size - batch * world} is dropped)"
               if batch * world != recipe.batch_size else "")
            + f", lr {recipe.lr:g}" + (", SyncBatchNorm" if distributed.sync_bn else ""))

    ddp = distributed.wrap(model, device) if distributed is not None else model
    net = torch.compile(ddp) if recipe.compile else ddp
    eval_net = net if distributed is None else (torch.compile(model) if recipe.compile else model)
    nonfinite = _nonfinite if distributed is None else distributed.any_nonfinite
    peak_lr, smoothing = recipe.lr, recipe.label_smoothing
    n_val = len(data.val)
    val_k = min(5, len(data.classes))
    outcome, message, extra = "complete", "", {}
    wall_start = time.perf_counter() - wall_before

    with _numerics(device):
        for epoch in range(len(history) + 1, recipe.epochs + 1):
            # ---- train one epoch -----------------------------------------------------------
            net.train()
            train_loader.set_epoch(epoch)
            loss_sum = torch.zeros((), device=device)
            steps = seen = 0
            timer = _Timer(device)
            for x, y in train_loader:
                lr = peak_lr * schedule(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
                steps += 1
                step += 1
                seen += y.shape[0]
                if steps % DIVERGENCE_CHECK_EVERY == 0 and nonfinite(loss_sum):
                    break
            epoch_time = timer.stop()
            if distributed is None:
                train_loss = loss_sum.item() / steps
            else:  # the mean over ranks of equal shards: the global batches' mean loss
                total_loss, seen = distributed.all_sum([loss_sum, float(seen)], device)
                train_loss, seen = total_loss / (steps * world), int(seen)

            # ---- evaluate on the centre view ------------------------------------------------
            if math.isfinite(train_loss):
                if distributed is not None:
                    distributed.sync_buffers(model)  # every rank evaluates rank 0's weights
                eval_net.eval()
                correct1 = torch.zeros((), dtype=torch.int64, device=device)
                correct5 = torch.zeros((), dtype=torch.int64, device=device)
                val_loss_sum = torch.zeros((), device=device)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    for x, y in val_loader:
                        logits = eval_net(x).float()
                        val_loss_sum += F.cross_entropy(logits, y, reduction="sum")
                        topk = logits.topk(val_k, dim=1).indices
                        hit = topk == y[:, None]
                        correct1 += hit[:, 0].sum()
                        correct5 += hit.any(dim=1).sum()
                if distributed is None:
                    hits1, hits5, val_loss = correct1.item(), correct5.item(), val_loss_sum.item() / n_val
                else:  # counts and sums over ranks (each image in exactly one rank's part)
                    hits1, hits5, val_total = distributed.all_sum([correct1, correct5, val_loss_sum], device)
                    val_loss = val_total / n_val
            else:
                val_loss = math.nan

            # ---- divergence, report, checkpoint ---------------------------------------------
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                which = "training" if not math.isfinite(train_loss) else "validation"
                value = train_loss if which == "training" else val_loss
                outcome = "diverged"
                kept = f"the result keeps the metrics of epoch {history[-1].epoch}" if history else "no epoch finished"
                message = f"{which} loss became {value} in epoch {epoch} (step {step}, lr {lr:.4g}); {kept}"
                extra = {"diverged_epoch": epoch}
                say(f"epoch {epoch}/{recipe.epochs}: diverged: {message}")
                break
            metrics = EpochMetrics(
                epoch=epoch,
                top1=100.0 * hits1 / n_val,
                top5=100.0 * hits5 / n_val,
                val_loss=val_loss,
                train_loss=train_loss,
                lr=lr,
                epoch_time_s=epoch_time,
                wall_time_s=time.perf_counter() - wall_start,
                images_per_s=seen / epoch_time if epoch_time > 0 else math.inf,
            )
            history.append(metrics)
            say(format_metrics(metrics, recipe.epochs))
            stop = bool(reporter.report(metrics)) if main else False
            if distributed is not None:
                stop = distributed.broadcast_flag(stop, device)
            if stop and epoch < recipe.epochs:
                outcome, message = "stopped", f"stopped by the reporter after epoch {epoch}"
            if store is not None and main:
                done = outcome if (stop or epoch == recipe.epochs) else None
                store.save({
                    "config": config.to_dict(),
                    "epoch": epoch,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": dataclasses.asdict(schedule),
                    "rng": _get_rng_state(device),
                    "history": [m.to_dict() for m in history],
                    "costs": costs.to_dict(),
                    "stages": [dict(s) for s in stages],
                    "wall_time_s": time.perf_counter() - wall_start,
                    "outcome": done,
                    "message": message,
                    "world_size": world,
                })
            if stop:
                break

    if outcome == "stopped":
        say(message)
    if distributed is not None:  # the record that every rank ended with the same weights
        extra = {**extra, "distributed": {"workers": world, "worker_batch": batch, "global_batch": batch * world,
                                          "sync_bn": distributed.sync_bn,
                                          "rank_digests": distributed.gather_strings(state_digest(model))}}
    return TrialResult(config=config, outcome=outcome, history=tuple(history), costs=costs, stages=stages,
                       message=message, extra=extra)


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
    from study.costs import Costs

    return TrialResult(config=config, outcome=state["outcome"], history=tuple(EpochMetrics.from_dict(m) for m in state["history"]),
                       costs=Costs.from_dict(state["costs"]), stages=tuple(state["stages"]),
                       message=state.get("message", ""), extra=dict(state.get("extra", {})))


def _nonfinite(value: torch.Tensor) -> bool:
    return not torch.isfinite(value)


# ---------------------------------------------------------------------------------------
# helpers


def format_metrics(m: EpochMetrics, epochs: int | None = None) -> str:
    """One line for an epoch: ``epoch 3/10  top1 45.20  top5 80.10  val_loss ...``."""
    of = f"/{epochs}" if epochs else ""
    return (f"epoch {m.epoch}{of}  top1 {m.top1:6.2f}  top5 {m.top5:6.2f}  val_loss {m.val_loss:.4f}  "
            f"train_loss {m.train_loss:.4f}  lr {m.lr:.4g}  {m.epoch_time_s:.2f} s  {m.images_per_s:,.0f} img/s")


def _format_costs(costs: Any) -> str:
    latency = "n/a" if getattr(costs, "latency_ms", None) is None else f"{costs.latency_ms:.2f} ms"
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




def _check_same_config(saved: Mapping[str, Any], config: TrialConfig, where: Any) -> None:
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
    raise ValueError(f"resume: the checkpoint in {where} was made by a different config (differs in {', '.join(diffs)})")


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
