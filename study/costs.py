"""Exact cost accounting: trainable parameters, multiply-accumulates and latency.

MAC convention: :func:`count_macs` runs one forward pass at batch size 1 under
``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs of convolutions
(2D and the 1D of ECA), linear layers and matrix products (``mm``/``addmm``/``bmm``/
``einsum``) as 2 per multiply-accumulate, and reports ``MACs = counted FLOPs / 2``.
Elementwise work (BN, activations, pooling, the attention's scaling) is not counted. This
is the figure papers call "FLOPs": ResNet-50 at 224 px is 4.09e9 MACs ("4.1 GFLOPs").
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["Costs", "count_params", "count_attention_params", "count_macs", "measure_latency", "measure_costs", "input_shape", "resolve_device"]


@dataclass(frozen=True)
class Costs:
    """A model's costs. ``macs`` at ``resolution`` px and ``macs_224`` at 224 px (batch 1,
    see the module docstring for the convention; a model whose attention is tied to its
    feature maps - Gather-Excite's global gather, a kernel the size of the map - is counted
    at 224 px as its architecture built for 224 px, :func:`measure_costs`); ``latency_ms``:
    median forward time at ``resolution`` px, batch 1 (None when not measured);
    ``attention_params``: trainable parameters inside attention modules (included in
    ``params``)."""

    params: int
    macs: int
    macs_224: int
    latency_ms: float | None
    resolution: int
    attention_params: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Costs:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def count_params(model: nn.Module) -> int:
    """Exact number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_attention_params(model: nn.Module) -> int:
    """Trainable parameters inside :class:`study.attention.AttentionModule` submodules."""
    from study.attention import AttentionModule

    seen: set[int] = set()
    total = 0
    for m in model.modules():
        if isinstance(m, AttentionModule):
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def input_shape(input_size: int | Sequence[int], batch_size: int = 1) -> tuple[int, ...]:
    """``224`` -> (batch, 3, 224, 224); ``(H, W)`` -> (batch, 3, H, W); ``(C, H, W)`` ->
    (batch, C, H, W); a 4-tuple is used as given."""
    if isinstance(input_size, bool):
        raise ValueError(f"input_size: expected a resolution or a shape, got {input_size!r}")
    if isinstance(input_size, int):
        shape: tuple[int, ...] = (batch_size, 3, input_size, input_size)
    else:
        dims = tuple(input_size)
        if len(dims) == 2:
            shape = (batch_size, 3, *dims)
        elif len(dims) == 3:
            shape = (batch_size, *dims)
        elif len(dims) == 4:
            shape = dims
        else:
            raise ValueError(f"input_size: expected a resolution, (H, W), (C, H, W) or (N, C, H, W), got {input_size!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(f"input_size: every dimension must be an integer >= 1, got {input_size!r}")
    return shape


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``torch.device(device)``, with a ValueError for an unknown or unavailable device;
    ``None`` is CUDA when it is available, else the CPU. The one place that turns a device
    name into a device (the trainer, the cost counters and the CLIs use it)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected e.g. 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} requested but MPS is not available")
    return dev


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def count_macs(model: nn.Module, input_size: int | Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass at batch size 1 (FLOPs counted by
    ``torch.utils.flop_counter`` / 2), in eval mode; the model's mode is restored.

    The pass runs on the ``meta`` device (shapes only, no arithmetic, parameters swapped in
    with ``torch.func.functional_call``), so counting costs no compute; a model whose
    forward cannot run on meta tensors is counted with a real pass on its own device.
    """
    shape = input_shape(input_size, 1)
    was_training = model.training
    model.eval()
    try:
        try:
            state = {n: torch.empty_like(t, device="meta") for n, t in (*model.named_parameters(), *model.named_buffers())}
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                functional_call(model, state, (torch.zeros(shape, device="meta"),))
        except (NotImplementedError, RuntimeError):
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(torch.zeros(shape, device=_device_of(model)))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no MPS here
        torch.mps.synchronize()


def measure_latency(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 10,
) -> float:
    """Median wall time in milliseconds of one forward pass (eval mode, no grad) after
    ``warmup`` untimed passes, synchronizing the device around every timed pass. A model
    on another device is measured on a copy moved to ``device``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: must be an integer >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: must be an integer >= 1, got {repeats!r}")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if _device_of(model) != dev:
        model = copy.deepcopy(model).to(dev)
    x = torch.randn(input_shape(input_size, batch_size), device=dev)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            _sync(dev)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                _sync(dev)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)


def _macs_224(model: nn.Module) -> int:
    try:
        return count_macs(model, 224)
    except ValueError:  # an attention parameter fits only the model's own maps
        arch = getattr(model, "arch", None)
        if arch is None:
            raise
    from study.attention import get_attention
    from study.config import AttentionSpec
    from study.models import build_model

    stages = [AttentionSpec(s.kind, tuple((k, v) for k, v in s.params if k not in get_attention(s.kind).MAP_PARAMS)) for s in arch.stages]
    with torch.device("meta"):
        refit = build_model(arch.with_stages(stages), 224)
    return count_macs(refit, 224)


def measure_costs(
    model_or_arch: nn.Module | Any,
    resolution: int,
    *,
    latency: bool = True,
    device: str | torch.device = "cpu",
) -> Costs:
    """All of :class:`Costs` for a built model or an architecture (ArchSpec or its dict,
    built here for ``resolution``: :func:`study.models.build_model`). MACs are counted where
    the model's parameters are; latency is measured on ``device`` at ``resolution`` px,
    batch 1, when ``latency`` is true.

    ``macs_224``: the model at 224 px input. A model whose attention parameters fit only its
    own feature maps (Gather-Excite's global gather is a kernel the size of the map) cannot
    run at 224 px; then it is its architecture (``model.arch``, set by ``build_model``) built
    for 224 px, with those parameters (the attention kinds' ``MAP_PARAMS``) fitted to the
    224-px maps."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution: must be an integer >= 1, got {resolution!r}")
    if isinstance(model_or_arch, nn.Module):
        model = model_or_arch
    else:
        from study.models import build_model

        model = build_model(model_or_arch, resolution)
    macs = count_macs(model, resolution)
    macs_224 = macs if resolution == 224 else _macs_224(model)
    lat = measure_latency(model, resolution, device=device) if latency else None
    return Costs(
        params=count_params(model),
        macs=macs,
        macs_224=macs_224,
        latency_ms=lat,
        resolution=resolution,
        attention_params=count_attention_params(model),
    )
