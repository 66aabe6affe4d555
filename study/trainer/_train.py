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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from study.config import TrialConfig
from study.costs import resolve_device
from study.metrics import EpochMetrics, Reporter, TrialResult, as_reporter
from study.trainer._checkpoint import CheckpointStore, as_store, finished_result, get_rng_state, resume_point
from study.trainer._distributed import Distributed, SingleProcess, as_context
from study.trainer._setup import TrialRun, checked_data, start_trial, trial_turnstile
from study.turnstile import Turnstile

__all__ = ["train", "format_metrics", "DIVERGENCE_CHECK_EVERY"]

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
    state = resume_point(store, config, resume=resume)
    if state is not None and state.get("outcome"):
        result = finished_result(state, config)
        reporter.start(result.costs, [dict(s) for s in result.stages])
        say(f"checkpoint in {store} is finished ({state['outcome']} after epoch {state['epoch']})")
        return result

    with trial_turnstile(ctx).computing():  # loading the data computes: another trial's latency probe waits for it
        data = checked_data(config, data)
    run = start_trial(config, data, state, ctx=ctx, device=device, placement=placement,
                 reporter=reporter, say=say, where=store)
    outcome, message, extra = _train_epochs(run, reporter, say, store)
    if outcome == "stopped":
        say(message)
    extra = {**extra, **ctx.result_extra(run.model, run.worker_batch)}
    return TrialResult(config=config, outcome=outcome, history=tuple(run.history), costs=run.costs, stages=run.stages,
                       message=message, extra=extra)


def _computing(run: TrialRun) -> Any:
    """The node's shared lock for one loop of steps (:meth:`study.turnstile.Turnstile.computing`);
    a probe waiting for the node first gets this process's queued GPU work finished."""
    device = run.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return (run.turnstile or Turnstile(None)).computing(sync=sync)


def _train_epochs(run: TrialRun, reporter: Reporter, say: Callable[[str], Any],
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


def _train_epoch(run: TrialRun, epoch: int) -> tuple[float, int, float, float]:
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


def _evaluate(run: TrialRun) -> tuple[float, float, float]:
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


def _report_epoch(run: TrialRun, metrics: EpochMetrics, reporter: Reporter, say: Callable[[str], Any]) -> bool:
    """Add an epoch to the history, log it and report it (main process); whether the
    reporter asked to stop, the same answer on every rank."""
    run.history.append(metrics)
    say(format_metrics(metrics, run.config.recipe.epochs))
    stop = bool(reporter.report(metrics)) if run.ctx.main else False
    return run.ctx.broadcast_flag(stop, run.device)


def _checkpoint_state(run: TrialRun, epoch: int, outcome: str | None, message: str) -> dict[str, Any]:
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
        "rng": get_rng_state(run.device),
        "history": [m.to_dict() for m in run.history],
        "costs": run.costs.to_dict(),
        "stages": [dict(s) for s in run.stages],
        "wall_time_s": time.perf_counter() - run.wall_start,
        "outcome": outcome,
        "message": message,
        "world_size": run.ctx.world_size,
    }


# ---------------------------------------------------------------------------------------
# helpers


def format_metrics(m: EpochMetrics, epochs: int | None = None) -> str:
    """One line for an epoch: ``epoch 3/10  top1 45.20  top5 80.10  val_loss ...``."""
    of = f"/{epochs}" if epochs else ""
    return (f"epoch {m.epoch}{of}  top1 {m.top1:6.2f}  top5 {m.top5:6.2f}  val_loss {m.val_loss:.4f}  "
            f"train_loss {m.train_loss:.4f}  lr {m.lr:.4g}  {m.epoch_time_s:.2f} s  {m.images_per_s:,.0f} img/s")


def _as_log(log: Callable[[str], Any] | None) -> Callable[[str], Any]:
    if log is None:
        return lambda _msg: None
    if hasattr(log, "info") and callable(log.info):  # a logging.Logger
        return log.info
    if not callable(log):
        raise TypeError(f"log: expected a callable taking a string or a logging.Logger, got {type(log).__name__}")
    return log


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
