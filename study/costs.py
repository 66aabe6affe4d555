"""Exact cost accounting: trainable parameters, multiply-accumulates and latency.

MAC convention: :func:`count_macs` runs one forward pass at batch size 1 under
``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs of convolutions
(2D and the 1D of ECA), linear layers and matrix products (``mm``/``addmm``/``bmm``/
``einsum``) as 2 per multiply-accumulate, and reports ``MACs = counted FLOPs / 2``. The
matrix-vector and vector products torch's counter leaves out (``mv``/``addmv``/``dot``, which
``matrix @ vector`` dispatches to: circular ECA's windows times its k weights) are counted
the same way (:data:`EXTRA_FLOPS`).
Elementwise work (BN, activations, pooling, the attention's scaling) is not counted. This
is the figure papers call "FLOPs": ResNet-50 at 224 px is 4.09e9 MACs ("4.1 GFLOPs").
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from study import turnstile as turnstiles
from study.attention import AttentionModule, get_attention
from study.config import AttentionSpec
from study.models import build_model
from study.validate import ConfigError, check_int

__all__ = ["Costs", "Latency", "count_params", "count_attention_params", "count_macs", "measure_latency", "probe_latency", "measure_costs",
           "input_shape", "resolve_device", "arch_digest", "LATENCY_SPREAD_FLAG", "EXTRA_FLOPS"]

def _mv_flops(mat: Sequence[int], vec: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``aten.mv``: an (M, K) matrix times a K vector, 2 M K FLOPs."""
    return 2 * mat[0] * mat[1]


def _addmv_flops(bias: Sequence[int], mat: Sequence[int], vec: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``aten.addmv``: the bias's additions are elementwise work, not counted."""
    return _mv_flops(mat, vec)


def _dot_flops(a: Sequence[int], b: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``aten.dot``: two K vectors, 2 K FLOPs."""
    return 2 * a[0]


#: FLOP formulas (operand shapes -> FLOPs) for the products ``torch.utils.flop_counter`` does not count
EXTRA_FLOPS = {torch.ops.aten.mv: _mv_flops, torch.ops.aten.addmv: _addmv_flops, torch.ops.aten.dot: _dot_flops}

#: a latency whose interquartile range exceeds this fraction of its median is flagged (report, fronts)
LATENCY_SPREAD_FLAG = 0.10


@dataclass(frozen=True)
class Costs:
    """A model's costs. ``macs`` at ``resolution`` px and ``macs_224`` at 224 px (batch 1,
    see the module docstring for the convention; a model whose attention is tied to its
    feature maps - Gather-Excite's global gather, a kernel the size of the map - is counted
    at 224 px as its architecture built for 224 px, :func:`measure_costs`); ``latency_ms``:
    median forward time at ``resolution`` px, batch 1 (None when not measured), measured by
    :func:`probe_latency` with the node to itself: ``latency_iqr_ms`` its interquartile range,
    ``latency_device`` and ``latency_threads`` where it was measured, ``latency_exclusive``
    whether no training computed on the node meanwhile (False: the probe's wait for the node
    timed out; None: no turnstile); ``attention_params``: trainable parameters inside
    attention modules (included in ``params``); ``arch_digest``: the built network's
    :func:`arch_digest`, under which a study shares one latency among the trials of one
    network. The fields after ``attention_params`` are absent from costs recorded before the
    probe and read back as None."""

    params: int
    macs: int
    macs_224: int
    latency_ms: float | None
    resolution: int
    attention_params: int
    latency_iqr_ms: float | None = None
    latency_device: str | None = None
    latency_threads: int | None = None
    latency_exclusive: bool | None = None
    arch_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Costs:
        """The costs of :meth:`to_dict`; optional fields missing from an older record are None."""
        return cls(**{k: data[k] for k, f in cls.__dataclass_fields__.items() if k in data or f.default is MISSING})


@dataclass(frozen=True)
class Latency:
    """One :func:`probe_latency`: the median and interquartile range (ms) of ``passes``
    timed forward passes in ``rounds`` rounds, on ``device`` with ``threads`` torch threads;
    ``exclusive`` as :attr:`Costs.latency_exclusive`; ``waited_s``: the wait for the node."""

    median_ms: float
    iqr_ms: float
    passes: int
    rounds: int
    device: str
    threads: int
    exclusive: bool | None
    waited_s: float

    @property
    def spread(self) -> float:
        """The interquartile range as a fraction of the median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")


def count_params(model: nn.Module) -> int:
    """Exact number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_attention_params(model: nn.Module) -> int:
    """Trainable parameters inside :class:`study.attention.AttentionModule` submodules."""
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
        raise ConfigError("input_size", f"expected a resolution or a shape, got {input_size!r}")
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
            raise ConfigError("input_size", f"expected a resolution, (H, W), (C, H, W) or (N, C, H, W), got {input_size!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ConfigError("input_size", f"every dimension must be an integer >= 1, got {input_size!r}")
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
        raise ConfigError("device", f"expected e.g. 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} requested but CUDA is not available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", f"{device!r} requested but MPS is not available")
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
            with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
                functional_call(model, state, (torch.zeros(shape, device="meta"),))
        except (NotImplementedError, RuntimeError):
            with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
                model(torch.zeros(shape, device=_device_of(model)))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no MPS here
        torch.mps.synchronize()


def _on_device(model: nn.Module, device: str | torch.device) -> tuple[nn.Module, torch.device]:
    """``model`` on ``device`` (a copy moved there when it lives elsewhere) and the device."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if _device_of(model) != dev:
        model = copy.deepcopy(model).to(dev)
    return model, dev


def _timed_passes(model: nn.Module, x: torch.Tensor, dev: torch.device, n: int) -> list[float]:
    """Milliseconds of ``n`` forward passes, the device synchronized around each."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        model(x)
        _sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


@contextlib.contextmanager
def _inference(model: nn.Module, input_size: int | Sequence[int], device: str | torch.device,
               batch_size: int) -> Iterator[tuple[nn.Module, torch.Tensor, torch.device]]:
    """``(model on the device, a random input batch, the device)`` in eval mode without
    gradients; the model's training mode is restored after."""
    model, dev = _on_device(model, device)
    x = torch.randn(input_shape(input_size, batch_size), device=dev)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model, x, dev
    finally:
        model.train(was_training)


def _warm(model: nn.Module, x: torch.Tensor, dev: torch.device, passes: int) -> None:
    """``passes`` untimed forward passes, the device synchronized after them."""
    for _ in range(passes):
        model(x)
    _sync(dev)


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
    on another device is measured on a copy moved to ``device``. It measures whatever else
    the node computes meanwhile; :func:`probe_latency` measures with the node to itself."""
    check_int(batch_size, "batch_size", 1)
    check_int(warmup, "warmup", 0)
    check_int(repeats, "repeats", 1)
    with _inference(model, input_size, device, batch_size) as (model, x, dev):
        _warm(model, x, dev, warmup)
        times = _timed_passes(model, x, dev, repeats)
    return statistics.median(times)


def _iqr(times: Sequence[float]) -> float:
    q = statistics.quantiles(times, n=4, method="inclusive")
    return q[2] - q[0]


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def probe_latency(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    min_rounds: int = 3,
    max_rounds: int = 10,
    target_spread: float = 0.05,
    turnstile: Any = None,
    wait_s: float = 120.0,
) -> Latency:
    """The latency of one forward pass (eval mode, no grad, batch ``batch_size``) measured
    with the node to itself: the node's turnstile (:mod:`study.turnstile`; ``turnstile``
    default :func:`study.turnstile.node_turnstile`) is closed, so no training on the node
    computes meanwhile (a training stops at its next step for the probe's few seconds).

    After ``warmup`` untimed passes, passes are timed in rounds of ``repeats``; rounds go on
    (at least ``min_rounds``, at most ``max_rounds``) until the interquartile range of all
    timed passes is at most ``target_spread`` of their median. Returns that median and IQR,
    the device, the torch threads, whether the node was had alone (False when ``wait_s``
    passed first; it measures anyway) and the wait. Call it outside a training loop of this
    process (which would hold the shared lock the probe waits for)."""
    check_int(batch_size, "batch_size", 1)
    check_int(warmup, "warmup", 0)
    check_int(repeats, "repeats", 2)
    check_int(min_rounds, "min_rounds", 1)
    check_int(max_rounds, "max_rounds", min_rounds)
    if isinstance(target_spread, bool) or not isinstance(target_spread, (int, float)) or not target_spread >= 0:
        raise ConfigError("target_spread", f"must be a number >= 0, got {target_spread!r}")
    if turnstile is None:
        turnstile = turnstiles.node_turnstile()  # the node's, looked up when a probe runs
    times: list[float] = []
    rounds = 0
    with _inference(model, input_size, device, batch_size) as (model, x, dev):
        t0 = time.perf_counter()
        with turnstile.alone(wait_s=wait_s) as alone:
            waited = time.perf_counter() - t0
            _warm(model, x, dev, warmup)
            while rounds < max_rounds:
                times += _timed_passes(model, x, dev, repeats)
                rounds += 1
                if rounds >= min_rounds and _iqr(times) <= target_spread * statistics.median(times):
                    break
    return Latency(median_ms=statistics.median(times), iqr_ms=_iqr(times), passes=len(times), rounds=rounds,
                   device=_device_name(dev), threads=torch.get_num_threads(), exclusive=alone, waited_s=waited)


def arch_digest(model: nn.Module, resolution: int | Sequence[int]) -> str:
    """A digest of the built network and its input: its module tree as printed (every
    layer with its shapes, strides, kernel sizes - ECA's resolved k included) and the input
    shape. Two trials of one network - replicates, a reference point and a sampled trial
    that resolve to the same layers (psi's k and the same k given explicitly) - share it."""
    text = f"{model!r}\ninput {input_shape(resolution, 1)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _macs_224(model: nn.Module) -> int:
    try:
        return count_macs(model, 224)
    except ValueError:  # an attention parameter fits only the model's own maps
        arch = getattr(model, "arch", None)
        if arch is None:
            raise

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
    turnstile: Any = None,
) -> Costs:
    """All of :class:`Costs` for a built model or an architecture (ArchSpec or its dict,
    built here for ``resolution``: :func:`study.models.build_model`). MACs are counted where
    the model's parameters are; latency is measured on ``device`` at ``resolution`` px,
    batch 1, when ``latency`` is true, by :func:`probe_latency` (with the node to itself:
    ``turnstile``, default the node's).

    ``macs_224``: the model at 224 px input. A model whose attention parameters fit only its
    own feature maps (Gather-Excite's global gather is a kernel the size of the map) cannot
    run at 224 px; then it is its architecture (``model.arch``, set by ``build_model``) built
    for 224 px, with those parameters (the attention kinds' ``MAP_PARAMS``) fitted to the
    224-px maps."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError("resolution", f"must be an integer >= 1, got {resolution!r}")
    if isinstance(model_or_arch, nn.Module):
        model = model_or_arch
    else:
        model = build_model(model_or_arch, resolution)
    macs = count_macs(model, resolution)
    macs_224 = macs if resolution == 224 else _macs_224(model)
    lat = probe_latency(model, resolution, device=device, turnstile=turnstile) if latency else None
    return Costs(
        params=count_params(model),
        macs=macs,
        macs_224=macs_224,
        latency_ms=lat.median_ms if lat else None,
        resolution=resolution,
        attention_params=count_attention_params(model),
        latency_iqr_ms=lat.iqr_ms if lat else None,
        latency_device=lat.device if lat else None,
        latency_threads=lat.threads if lat else None,
        latency_exclusive=lat.exclusive if lat else None,
        arch_digest=arch_digest(model, resolution),
    )
