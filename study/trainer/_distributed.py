"""The rank-aware parts of the trainer: one process of a data-parallel group.

:func:`study.trainer.train` runs unchanged in every rank of a group that someone else set up
(Ray Train's ``TorchTrainer`` calls ``torch.distributed.init_process_group``: gloo on CPU,
NCCL on GPU); given a :class:`Distributed`, it

- reads its shard of every global batch (:class:`study.data.DeviceLoader` with ``rank`` and
  ``world_size``): the recipe's ``batch_size`` is the *global* batch, each of N ranks gets
  ``batch_size // N`` (:func:`per_worker_batch`; a remainder is dropped and said, a global
  batch smaller than N is an error). The learning rate is the recipe's: the global batch is
  the one the recipe was written for;
- trains ``DistributedDataParallel(model)`` (optionally with ``SyncBatchNorm``), so the
  averaged gradient of N shards of b images is the gradient of the global batch;
- decides to stop (divergence, the reporter) collectively, so no rank waits for another in a
  collective that never comes;
- validates each rank's contiguous part of the validation split on the same weights (BN
  buffers broadcast from rank 0 first) and sums correct counts, loss sums and image counts
  over ranks: the figures equal one process's on those weights;
- writes checkpoints and reports from rank 0 only; every rank reads a checkpoint to resume.

One process alone is the same loop with the null context :class:`SingleProcess` (rank 0 of
1: the reductions are the identity, the barriers no-ops, the model is not wrapped), so the
trainer has one path; :func:`as_context` picks it for ``distributed=None``.

Everything here is plain ``torch.distributed``; nothing imports Ray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from study.validate import ConfigError

__all__ = ["Distributed", "SingleProcess", "ParallelContext", "as_context", "per_worker_batch", "state_digest"]


def per_worker_batch(global_batch: int, workers: int) -> int:
    """Each worker's batch when ``workers`` share a global batch of ``global_batch`` images:
    ``global_batch // workers`` (the remainder, fewer than ``workers`` images, is dropped).
    ValueError when the global batch is smaller than the number of workers."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be an integer >= 1, got {workers!r}")
    if global_batch < workers:
        raise ConfigError("workers", f"{workers} workers cannot share a global batch of {global_batch} images "
                         f"(recipe.batch_size must be at least the number of workers)")
    return global_batch // workers


def state_digest(module: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's parameters and buffers, in state-dict order:
    equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel group whose ``torch.distributed`` process
    group is already initialised.

    ``rank`` of ``world_size``; ``sync_bn`` converts every BatchNorm to
    ``torch.nn.SyncBatchNorm`` (batch statistics over the global batch; torch runs it on
    GPUs only).
    """

    rank: int
    world_size: int
    sync_bn: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise ConfigError("world_size", f"must be an integer >= 1, got {self.world_size!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise ConfigError("rank", f"must be an integer in [0, {self.world_size - 1}], got {self.rank!r}")

    @classmethod
    def from_process_group(cls, *, sync_bn: bool = False) -> Distributed:
        """This process's rank and the world size of the initialised default process group."""
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("torch.distributed is not initialised (run under Ray Train's TorchTrainer or torchrun)")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), sync_bn=sync_bn)

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports, logs and writes checkpoints."""
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` (already on ``device``) wrapped in ``DistributedDataParallel``."""
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    @staticmethod
    def convert_sync_bn(model: nn.Module) -> nn.Module:
        """Every BatchNorm of ``model`` as ``SyncBatchNorm`` (parameters kept)."""
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert_model(self, model: nn.Module) -> nn.Module:
        """``model`` as this group trains it: with ``SyncBatchNorm`` when ``sync_bn``, else
        unchanged."""
        return self.convert_sync_bn(model) if self.sync_bn else model

    def announce(self, say: Callable[[str], Any], *, global_batch: int, worker_batch: int, lr: float) -> None:
        """Say how the workers share the recipe's global batch (and a dropped remainder)."""
        kept = worker_batch * self.world_size
        say(f"data-parallel: {self.world_size} workers x {worker_batch} images = global batch {kept}"
            + (f" (recipe.batch_size {global_batch}: the remainder of {global_batch - kept} is dropped)"
               if kept != global_batch else "")
            + f", lr {lr:g}" + (", SyncBatchNorm" if self.sync_bn else ""))

    def all_sum(self, values: list[torch.Tensor | float], device: torch.device) -> list[float]:
        """The sums over ranks of scalars (one float64 all-reduce on ``device``: NCCL
        reduces CUDA tensors only)."""
        t = torch.stack([torch.as_tensor(v).detach().to(device=device, dtype=torch.float64).reshape(()) for v in values])
        dist.all_reduce(t)
        return t.tolist()

    def any_rank(self, flag: bool | torch.Tensor, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on some rank."""
        t = torch.as_tensor(flag, dtype=torch.int32).reshape(1).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def any_nonfinite(self, value: torch.Tensor) -> bool:
        """True on every rank when ``value`` is NaN or inf on some rank."""
        return self.any_rank(~torch.isfinite(value), value.device)

    def broadcast_flag(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag`` on every rank."""
        t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank: after a training
        step each rank's running statistics saw only its own shard."""
        for b in model.buffers():
            dist.broadcast(b.data, 0)

    def gather_strings(self, text: str) -> list[str]:
        """``text`` of every rank, in rank order."""
        out: list[str | None] = [None] * self.world_size
        dist.all_gather_object(out, text)
        return [str(s) for s in out]

    def result_extra(self, model: nn.Module, worker_batch: int) -> dict[str, Any]:
        """The result's record of the group (``extra["distributed"]``): workers, batches and
        every rank's weight digest, which shows that all ranks ended with the same weights."""
        return {"distributed": {"workers": self.world_size, "worker_batch": worker_batch,
                                "global_batch": worker_batch * self.world_size, "sync_bn": self.sync_bn,
                                "rank_digests": self.gather_strings(state_digest(model))}}


class SingleProcess:
    """The null data-parallel context: this process trains alone.

    It answers like :class:`Distributed` for rank 0 of a group of one: it is the main
    process, sums over ranks and broadcasts are the identity, buffer synchronisation is a
    no-op, the model is neither converted nor wrapped, and the result records nothing about
    a group. :func:`study.trainer.train` runs the same loop with either.
    """

    rank = 0
    world_size = 1
    sync_bn = False
    main = True

    def convert_model(self, model: nn.Module) -> nn.Module:
        """``model`` unchanged."""
        return model

    def announce(self, say: Callable[[str], Any], *, global_batch: int, worker_batch: int, lr: float) -> None:
        """Nothing to say: the worker batch is the recipe's batch."""

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` itself (no ``DistributedDataParallel``)."""
        return model

    def all_sum(self, values: list[torch.Tensor | float], device: torch.device) -> list[float]:
        """The values themselves as floats (the sum over one rank)."""
        return [float(v) for v in values]

    def any_rank(self, flag: bool | torch.Tensor, device: torch.device) -> bool:
        """``flag`` itself."""
        return bool(flag)

    def any_nonfinite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is NaN or inf."""
        return not torch.isfinite(value)

    def broadcast_flag(self, flag: bool, device: torch.device) -> bool:
        """``flag`` itself."""
        return flag

    def sync_buffers(self, model: nn.Module) -> None:
        """Nothing to synchronise."""

    def gather_strings(self, text: str) -> list[str]:
        """``[text]``."""
        return [text]

    def result_extra(self, model: nn.Module, worker_batch: int) -> dict[str, Any]:
        """Nothing: a one-process result has no ``extra["distributed"]``."""
        return {}

    def __repr__(self) -> str:
        return "SingleProcess()"


#: what :func:`study.trainer.train` trains in: one rank of a group, or this process alone
ParallelContext = Distributed | SingleProcess


def as_context(distributed: Distributed | SingleProcess | None) -> ParallelContext:
    """``distributed`` itself; None as :class:`SingleProcess`."""
    return SingleProcess() if distributed is None else distributed
