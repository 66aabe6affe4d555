"""Data-parallel full training on Ray Train: the same trainer, N ranks, one engine.

:func:`train_distributed` runs :func:`study.trainer.train` in every worker of Ray Train's
``TorchTrainer`` (DistributedDataParallel; Ray Train sets up the process group: gloo on CPU,
NCCL on GPU, places the workers and restarts them). The training function stays plain
PyTorch; what is rank-aware lives in :mod:`study.trainer._distributed`:

- the config's ``recipe.batch_size`` is the global batch; each worker trains on
  ``batch_size // workers`` images a step (the remainder is dropped and said); the learning
  rate is the recipe's. :func:`scale_recipe` is the linear-scaling rule for a run that fixes
  the per-worker batch instead (``--batch-per-worker``);
- each rank reads its shard of every global batch from the (memory-mapped) cache, with the
  same on-device augmentation one process would apply to that batch;
- validation is summed over ranks (counts, not means): it equals one process's figures on
  the same weights;
- rank 0 writes the checkpoint every epoch, through the run's recorder
  (:mod:`study.cluster._recorder`), atomically, in the one-process format; every worker
  resumes from it, whether after ``resume`` or after Ray Train restarted a worker group
  whose worker died (``FailureConfig(max_failures)``).

A Python exception in a worker is recorded with its traceback's last frames and fails the
attempt; Ray Train retries up to ``max_failures`` times from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.cluster._nodes import cluster_nodes, prepare_cache
from study.cluster._recorder import NAMESPACE, Recorder, RecorderReporter, RecorderStore, recorder_name
from study.config import Recipe, TrialConfig, repr_non_default
from study.metrics import TrialResult
from study.record import error_text
from study.runfolder import next_run_name
from study.validate import ConfigError, check_int, check_number

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.train.torch import TorchTrainer

    from study.cluster._recorder import Recorder

__all__ = ["Scaling", "TrainingFailed", "scale_recipe", "check_resources", "prepare_data", "train_distributed",
           "absolute_data"]

#: seconds between two polls of the recorder for progress lines
POLL_S = 0.5


class TrainingFailed(RuntimeError):
    """A data-parallel run started but did not finish (its workers failed more often than
    ``max_failures`` allows, or a worker raised); the message says why."""


@dataclass(frozen=True, kw_only=True, repr=False)
class Scaling:
    """How a data-parallel run uses the Ray cluster.

    ``workers`` ranks (Ray Train workers), each with ``cpus_per_worker`` CPUs (also its torch
    threads) and ``gpus_per_worker`` GPUs (0: gloo on CPUs; 1: one GPU and NCCL); ``sync_bn`` converts BatchNorm to
    SyncBatchNorm (GPUs only); ``max_failures``: how often Ray Train restarts the workers
    from the last checkpoint after one died (0: never); ``stage_data``: ship the proxy cache
    to every node's local disk instead of reading it at the same path everywhere.
    """

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: int = 0
    sync_bn: bool = False
    max_failures: int = 1
    stage_data: bool = False

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", 1)
        c = check_number(self.cpus_per_worker, "cpus_per_worker", 0, math.inf, what="a number >= 0")
        g = self.gpus_per_worker
        if isinstance(g, float) and g.is_integer():
            object.__setattr__(self, "gpus_per_worker", g := int(g))
        if isinstance(g, bool) or not isinstance(g, int) or g not in (0, 1):
            raise ConfigError("gpus_per_worker", f"must be 0 (CPUs, gloo) or 1 (one GPU per rank: DistributedDataParallel "
                             f"trains one device per process), got {g!r}")
        if c == 0 and g == 0:
            raise ConfigError("cpus_per_worker", "a worker needs some CPU or GPU (both are 0)")
        check_int(self.max_failures, "max_failures", 0)
        if self.sync_bn and g == 0:
            raise ConfigError("sync_bn", "torch's SyncBatchNorm runs on GPUs only; it needs {gpus_per_worker} >= 1",
                              refs=["gpus_per_worker"])

    @property
    def threads(self) -> int:
        """torch threads per worker: its CPU share, at least one."""
        return max(1, int(self.cpus_per_worker))

    __repr__ = repr_non_default


def scale_recipe(recipe: Recipe, workers: int, batch_per_worker: int) -> Recipe:
    """The recipe for ``workers`` x ``batch_per_worker`` images a step: ``batch_size`` becomes
    that global batch and the peak ``lr`` is scaled linearly with it (Goyal et al.,
    "Accurate, Large Minibatch SGD", 2017: lr x global / recipe.batch_size); warm-up and the
    schedule stay in epochs."""
    if isinstance(batch_per_worker, bool) or not isinstance(batch_per_worker, int) or batch_per_worker < 1:
        raise ConfigError("batch_per_worker", f"must be an integer >= 1, got {batch_per_worker!r}")
    global_batch = workers * batch_per_worker
    return dataclasses.replace(recipe, batch_size=global_batch, lr=recipe.lr * (global_batch / recipe.batch_size))


def check_resources(scaling: Scaling) -> None:
    """The connected Ray cluster must be able to hold ``scaling.workers`` workers at once;
    ValueError naming ``gpus_per_worker``, ``cpus_per_worker`` or ``workers`` otherwise."""
    nodes = cluster_nodes()
    c, g = float(scaling.cpus_per_worker), float(scaling.gpus_per_worker)
    total_gpus = sum(n.gpus for n in nodes)
    if g and not any(n.gpus >= g for n in nodes):
        raise ConfigError("gpus_per_worker", f"a worker needs {g:g} GPU(s) but no node of the Ray cluster has that many "
                         f"(the cluster has {total_gpus:g} GPUs)")
    if c and not any(n.cpus >= c and n.gpus >= g for n in nodes):
        raise ConfigError("cpus_per_worker", f"a worker needs {c:g} CPUs{f' and {g:g} GPUs' if g else ''} but no node of the Ray "
                         f"cluster has that many (largest: {max((n.cpus for n in nodes), default=0):g} CPUs)")
    room = sum(min(math.floor(n.cpus / c) if c else math.inf, math.floor(n.gpus / g) if g else math.inf) for n in nodes)
    if room < scaling.workers:
        need = f"{c:g} CPU" + (f" + {g:g} GPU" if g else "")
        raise ConfigError("workers", f"{scaling.workers} workers of {need} each do not fit on the Ray cluster at once "
                         f"(room for {room:g}: {sum(n.cpus for n in nodes):g} CPUs, {total_gpus:g} GPUs on {len(nodes)} nodes)")


def prepare_data(config: TrialConfig, scaling: Scaling, *, log: Callable[[str], Any] | None = None) -> dict[str, str] | None:
    """Make sure every node that can run a worker reads the config's cache: check it there
    (ValueError naming the nodes that cannot), or with ``scaling.stage_data`` ship it and
    return ``{node_id: local folder}``. Generated proxies (synthetic) need nothing."""
    config = absolute_data(config)
    if config.proxy.source != "cache" or not config.proxy.data:
        return None
    return prepare_cache(config.proxy.data, cpus=float(scaling.cpus_per_worker), gpus=float(scaling.gpus_per_worker),
                         stage=scaling.stage_data, log=log)


def absolute_data(config: TrialConfig) -> TrialConfig:
    """``config`` with a relative cache folder made absolute (against this process's working
    folder): Ray workers run elsewhere."""
    p = config.proxy
    if p.source != "cache" or not p.data or os.path.isabs(p.data):
        return config
    return config.replace(proxy=dataclasses.replace(p, data=str(Path(p.data).resolve())))


# ------------------------------------------------------------------------- in every worker


def _worker(spec: dict[str, Any]) -> None:
    """One rank: ``study.trainer.train`` with this rank's shard, DDP, the recorder's
    checkpoint (resumed if there is one) and, on rank 0, the recorder as reporter and log."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from study.data import load_proxy
    from study.trainer import Distributed, train

    recorder = spec["recorder"]
    rank = ray.train.get_context().get_world_rank()
    node = ray.get_runtime_context().get_node_id()
    ray.get(recorder.hello.remote(rank, os.getpid(), node, socket.gethostname()))
    try:
        torch.set_num_threads(spec["threads"])
        config = TrialConfig.from_dict(spec["config"])
        proxy = config.proxy
        staged = spec.get("staged") or {}
        if node in staged:  # this node's local copy of the cache; the config keeps the original path
            proxy = dataclasses.replace(proxy, data=staged[node])
        data = load_proxy(proxy)
        if spec["gpus"]:
            device = ray.train.torch.get_device()
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        distributed = Distributed.from_process_group(sync_bn=spec["sync_bn"])
        main = distributed.main
        result = train(config, RecorderReporter(recorder) if main else None, device=device, data=data,
                       checkpoint_dir=RecorderStore(recorder, spec["out"]), resume=True,
                       log=(lambda line: recorder.log.remote(line)) if main else None, distributed=distributed)
    except BaseException as exc:
        ray.get(recorder.fail.remote(rank, error_text(exc, frames=6)))
        raise
    if main:
        ray.get(recorder.finish.remote(result.to_dict()))


# ------------------------------------------------------------------------- the driver


def _failure_text(error: BaseException, errors: Mapping[int, str], attempts: int) -> str:
    """One line: the first rank's own error (the last line of its traceback) when it
    recorded one, else what Ray says of the first failed rank (a worker process that died)."""
    tries = f"after {attempts} attempt(s)" if attempts > 1 else "on the first attempt"
    if errors:
        rank = min(errors)
        last = [line for line in errors[rank].strip().splitlines() if line.strip()]
        return f"rank {rank} failed {tries}: {last[-1].strip() if last else 'no message'}"
    failures = getattr(error, "worker_failures", None)
    if failures:
        rank, exc = min(failures.items(), key=lambda item: item[0])
        text = str(exc)
        head = text.strip().splitlines()[0].strip() if text.strip() else ""
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        pid = re.search(r"\bpid: (\d+)", text)
        return (f"rank {rank}{f' (pid {pid.group(1)})' if pid else ''} failed {tries}: {type(exc).__name__}: {head[:200]}"
                + (f" (worker exit type {exit_type.group(1)})" if exit_type else ""))
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def train_distributed(
    config: TrialConfig,
    out: str | os.PathLike,
    *,
    scaling: Scaling = Scaling(),
    resume: bool = False,
    log: Callable[[str], Any] | None = print,
    staged: dict[str, str] | None = None,
    check: bool = True,
) -> TrialResult:
    """Train ``config`` data-parallel on the connected Ray cluster, into ``out``.

    ``out`` receives what a one-process run writes (``metrics.csv``, ``metrics.json`` and
    ``checkpoint.pt`` every epoch; the caller writes ``config.json`` and ``result.json``)
    plus Ray Train's own folder ``out/ray/run-<k>/``. A checkpoint already in ``out`` is
    refused unless ``resume``, which continues it (a finished one gives its result without
    starting workers). ``log`` gets the run's lines (costs, each epoch, restarts) as they
    happen. With ``check`` (the default) the cluster's resources and the data on every node
    are checked first (:func:`check_resources`, :func:`prepare_data`; ``staged`` is then
    ignored); the command line does that before it creates anything and passes ``staged``.

    Raises :class:`TrainingFailed` when the run did not finish, ValueError for bad input.
    """
    from study.trainer import per_worker_batch

    say = log or (lambda _line: None)
    out = Path(out).resolve()
    config = absolute_data(config)
    if check:
        per_worker_batch(config.recipe.batch_size, scaling.workers)
        check_resources(scaling)
        staged = prepare_data(config, scaling, log=say)
    finished = _finished_checkpoint(out, config, resume, say)
    if finished is not None:
        return finished
    out.mkdir(parents=True, exist_ok=True)

    recorder = _start_recorder(out)
    spec = {"recorder": recorder, "config": config.to_dict(), "out": str(out), "staged": staged or {},
            "threads": scaling.threads, "gpus": scaling.gpus_per_worker, "sync_bn": scaling.sync_bn}
    trainer = _torch_trainer(spec, scaling, out / "ray")
    started = time.monotonic()
    error, st, result = _fit_following(trainer, recorder, out, say)
    if error is not None or result is None:
        error = error or RuntimeError("the workers ended without a result")
        raise TrainingFailed(_failure_text(error, st["errors"], st["attempts"]))
    workers = st["workers"]
    result.setdefault("extra", {}).setdefault("distributed", {}).update(
        nodes=[workers[r]["node_id"] for r in sorted(workers)], attempts=st["attempts"])
    res = TrialResult.from_dict(result)
    say(f"ran on {scaling.workers} worker(s) in {time.monotonic() - started:.1f} s"
        + (f", {st['attempts']} attempts" if st["attempts"] > 1 else ""))
    return res


def _finished_checkpoint(out: Path, config: TrialConfig, resume: bool, say: Callable[[str], Any]) -> TrialResult | None:
    """The result of a finished checkpoint in ``out`` (said), None when there is none or it
    is unfinished; a checkpoint without ``resume``, or of another config, is refused
    (:func:`study.trainer.resume_point`)."""
    from study.trainer import finished_result, resume_point  # torch: in the driver only when a run starts

    state = resume_point(out if out.is_dir() else None, config, resume=resume, field="out")
    if state is None or not state.get("outcome"):
        return None
    say(f"checkpoint in {out} is finished ({state['outcome']} after epoch {state['epoch']})")
    return finished_result(state, config)


def _start_recorder(out: Path) -> ActorHandle[Recorder]:
    """The run's recorder actor (named after ``out``), pinned to this driver's node;
    ValueError when another training on the cluster already writes into ``out``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        recorder = ray.remote(Recorder).options(
            name=recorder_name(out), namespace=NAMESPACE, num_cpus=0, max_concurrency=1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        ).remote(str(out))
        ray.get(recorder.state.remote())
    except ValueError as exc:
        if "already exists" in str(exc):
            raise ConfigError("out", f"another training on this Ray cluster is writing into {out}") from None
        raise
    return recorder


def _torch_trainer(spec: dict[str, Any], scaling: Scaling, ray_dir: Path) -> TorchTrainer:
    """Ray Train's ``TorchTrainer`` running :func:`_worker` with ``spec`` on
    ``scaling.workers`` workers, its files in a new ``ray_dir/run-<k>``, restarting the
    workers up to ``scaling.max_failures`` times."""
    import ray.train
    import ray.train.torch

    resources = {"CPU": float(scaling.cpus_per_worker)}
    if scaling.gpus_per_worker:
        resources["GPU"] = float(scaling.gpus_per_worker)
    return ray.train.torch.TorchTrainer(
        _worker,
        train_loop_config=spec,
        scaling_config=ray.train.ScalingConfig(num_workers=scaling.workers, use_gpu=bool(scaling.gpus_per_worker),
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(name=next_run_name(ray_dir), storage_path=str(ray_dir),
                                       failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures)),
    )


def _fit_following(trainer: TorchTrainer, recorder: ActorHandle[Recorder], out: Path,
                   say: Callable[[str], Any]) -> tuple[BaseException | None, dict[str, Any], dict[str, Any] | None]:
    """Run ``trainer.fit()`` in a thread, saying the recorder's lines as they come;
    ``(error, recorder state, result dict)`` at the end (the error ``fit`` raised, if any).
    The recorder is killed once the run has ended."""
    import ray

    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=fit, name=f"fit {out.name}", daemon=True)
    seen = 0
    try:
        thread.start()
        while True:
            thread.join(timeout=POLL_S)
            lines, seen = ray.get(recorder.poll.remote(seen))
            for line in lines:
                say(line)
            if not thread.is_alive():
                break
        st = ray.get(recorder.state.remote())
        result = ray.get(recorder.get_result.remote())
    finally:
        if not thread.is_alive():
            ray.kill(recorder)
    return box.get("error"), st, result
