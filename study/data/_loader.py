"""DeviceLoader: batches from a split held in memory, augmented on the device.

Where the split lives (``placement``):

- ``"device"``: the whole split sits on the training device (on the CPU: in host memory, a
  memory-mapped cache stays memory-mapped); every batch is one gather by index on the device.
- ``"host"``: the split stays in host memory (a memory-mapped cache is read lazily, so
  several ranks on one node share the page cache) and is *streamed*: each batch is gathered
  on the host into one of two staging buffers (pinned on CUDA) and copied to the device
  asynchronously on a side stream, one batch ahead, so the copy and the next gather overlap
  the training step. For splits that do not fit in device memory (ImageNet-100 at 224 px
  on a small GPU).
- ``"auto"`` (default): ``"device"``, except on CUDA when the split takes more than
  :data:`DEVICE_FRACTION` of the free device memory (:func:`choose_placement`).

Both give identical batches. Augmentation is batched tensor code on the device, with no
per-image Python (after airbench, Jordan 2024):

- ``crop_flip``: random crop with *reflect* padding of ``resolution // 8`` pixels (4 at
  32 px, the CIFAR recipe of He et al. 2016) and a horizontal flip, done together as one
  uint8 gather;
- ``rrc_flip``: random-resized crop (area 25-100 %, aspect ratio 3/4-4/3, bilinear, as in
  Szegedy et al. 2015 / torchvision's ``RandomResizedCrop``) and a flip, via one batched
  ``affine_grid`` + ``grid_sample``; meant for 64 px and up;
- ``flip``: horizontal flip only; ``none``: no augmentation.

Evaluation (``train=False``) uses the centre view: the cached image as is (the cache was
made by resizing the shorter side and centre cropping). Inputs are normalized with the
ImageNet mean and std. Shuffle order and augmentation come from a ``torch.Generator``
seeded by ``(seed, epoch)``: the same seed and epoch give the same batches on any device.

Data-parallel shards (``rank`` of ``world_size``): in training, every rank draws the same
global permutation and the same augmentation parameters for the *global* batch of
``batch_size * world_size`` images and keeps its own contiguous slice of it, so N ranks
together see exactly the batches one process with the global batch would see. In
evaluation, rank ``r`` takes the ``r``-th contiguous part of the split (sizes differ by at
most one; no image is repeated or padded), so sums over ranks equal one process's sums.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from study.data._types import Split, seeded_generator
from study.validate import ConfigError

__all__ = ["DeviceLoader", "AUGMENTS", "IMAGENET_MEAN", "IMAGENET_STD", "PLACEMENTS", "list_augments", "choose_placement"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RRC_SCALE = (0.25, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
#: Keep a split on a CUDA device only if it takes at most this fraction of the free memory.
DEVICE_FRACTION = 0.5
#: where a split lives: on the device, streamed from host memory, or chosen by free memory
PLACEMENTS = ("auto", "device", "host")


def choose_placement(need_bytes: int, free_bytes: int) -> str:
    """``"device"`` when a split of ``need_bytes`` takes at most :data:`DEVICE_FRACTION` of
    ``free_bytes`` of device memory, else ``"host"`` (streamed from host memory)."""
    return "device" if need_bytes <= DEVICE_FRACTION * free_bytes else "host"


def _crop_flip_index(b: int, h: int, w: int, pad: int, g: torch.Generator, *, crop: bool, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (b, h) and column (b, w) source indices for a reflect-padded random crop + flip."""
    rows = torch.arange(h).expand(b, h)
    cols = torch.arange(w).expand(b, w)
    if crop and pad > 0:
        oy = torch.randint(-pad, pad + 1, (b, 1), generator=g)
        ox = torch.randint(-pad, pad + 1, (b, 1), generator=g)
        rows, cols = rows + oy, cols + ox
        rows = rows.abs()
        rows = torch.where(rows > h - 1, 2 * (h - 1) - rows, rows)
        cols = cols.abs()
        cols = torch.where(cols > w - 1, 2 * (w - 1) - cols, cols)
    if flip:
        mirror = torch.rand((b, 1), generator=g) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    return rows, cols


def _rrc_theta(b: int, g: torch.Generator) -> torch.Tensor:
    """(b, 2, 3) affine matrices of random-resized crops with a random horizontal flip."""
    area = torch.rand(b, generator=g) * (RRC_SCALE[1] - RRC_SCALE[0]) + RRC_SCALE[0]
    log_r = torch.rand(b, generator=g) * (math.log(RRC_RATIO[1]) - math.log(RRC_RATIO[0])) + math.log(RRC_RATIO[0])
    ratio = torch.exp(log_r)
    cw = torch.sqrt(area * ratio).clamp(max=1.0)
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - cw)
    cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - ch)
    sign = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cw * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    return theta


#: name -> (uses random crop by gather, flip, random-resized crop)
AUGMENTS: dict[str, tuple[bool, bool, bool]] = {
    "none": (False, False, False),
    "flip": (False, True, False),
    "crop_flip": (True, True, False),
    "rrc_flip": (False, False, True),
}


def list_augments() -> list[str]:
    return sorted(AUGMENTS)


class DeviceLoader:
    """Iterate ``(x, y)`` batches of ``split``: ``x`` float32 NCHW normalized on ``device``,
    ``y`` int64 on ``device``.

    Args:
        split: the images (uint8 NHWC) and labels.
        batch_size: images per batch (>= 1); with ``world_size`` > 1, this rank's share of
            a global batch of ``batch_size * world_size`` in training.
        device: where batches (and, with placement ``"device"``, the whole split) live.
        train: shuffle and augment (True) or iterate in order with the centre view (False).
        seed: seeds the shuffle and augmentation; epoch ``e`` uses ``(seed, e)``.
        augment: one of :data:`AUGMENTS` (``crop_flip``, ``rrc_flip``, ``flip``, ``none``);
            used only when ``train``.
        drop_last: drop the last incomplete (global) batch; default ``train``. A split
            smaller than one batch still gives one batch.
        memory_format: of ``x``; ``torch.channels_last`` saves a copy when the model runs
            channels-last.
        rank, world_size: this process's shard of a data-parallel group (see the module
            docstring); the default is the whole split.
        placement: ``"auto"``, ``"device"`` or ``"host"`` (see the module docstring);
            ``"host"`` on the CPU runs the streaming path with unpinned buffers.

    ``len(loader)`` is the number of batches per epoch (the same on every rank in
    training). Each iteration uses the epoch set by :meth:`set_epoch` and then advances it
    by one, so a loop that calls ``set_epoch(e)`` every epoch is reproducible from any
    epoch (resume), and one that never calls it still sees a fresh order every epoch.
    """

    def __init__(self, split: Split, *, batch_size: int, device: str | torch.device = "cpu", train: bool, seed: int = 0,
                 augment: str = "crop_flip", drop_last: bool | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 rank: int = 0, world_size: int = 1, placement: str = "auto") -> None:
        if not isinstance(split, Split):
            raise TypeError(f"split: expected a study.data.Split, got {type(split).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
        if augment not in AUGMENTS:
            raise ConfigError("augment", f"unknown augmentation {augment!r} (valid: {', '.join(list_augments())})")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ConfigError("world_size", f"expected an integer >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError("rank", f"expected an integer in [0, {world_size - 1}], got {rank!r}")
        if placement not in PLACEMENTS:
            raise ConfigError("placement", f"must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        if len(split) == 0:
            raise ConfigError("split", "has no images")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = bool(train)
        self.seed = int(seed)
        self.augment = augment
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.memory_format = memory_format
        self.rank, self.world_size = rank, world_size
        self._epoch = 0
        n, h, w, _ = split.images.shape
        self._n, self._h, self._w = int(n), int(h), int(w)
        self.pad = max(1, self._h // 8)
        self._plan = self._make_plan()

        images, labels = split.images, split.labels
        if placement == "auto":
            placement = "device"
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                placement = choose_placement(images.numel() + labels.numel() * 8, free)
        self.placement = placement
        self.on_device = placement == "device"
        self._cuda = self.device.type == "cuda"
        self._copy_stream: torch.cuda.Stream | None = None
        if self.on_device:
            images = images.to(self.device)  # a no-op on the CPU: a memory-mapped split stays mapped
        else:
            # two staging buffers used in turn (pinned on CUDA); a buffer is refilled only
            # after the asynchronous copy that last read it has finished (its event)
            biggest = max((hi - lo for _, _, lo, hi in self._plan), default=1)
            self._buffers = [torch.empty((biggest, h, w, 3), dtype=torch.uint8, pin_memory=self._cuda) for _ in range(2)]
            self._copied: list[torch.cuda.Event | None] = [None, None]
            self._copy_stream = torch.cuda.Stream(self.device) if self._cuda else None
        self.images = images
        self.labels = labels.to(self.device)
        std = torch.tensor(IMAGENET_STD)
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device)
        self._bias = (-torch.tensor(IMAGENET_MEAN) / std).view(1, 3, 1, 1).to(self.device)

    def _make_plan(self) -> list[tuple[int, int, int, int]]:
        """Per batch: ``(g_lo, g_hi, lo, hi)``, positions in the epoch's order of the global
        batch (whose augmentation is drawn) and of this rank's part of it."""
        n, b, world, rank = self._n, self.batch_size, self.world_size, self.rank
        plan = []
        if not self.train:  # evaluation: this rank's contiguous part, in batches
            lo_shard, hi_shard = (int(t[0]), int(t[-1]) + 1) if (t := torch.tensor_split(torch.arange(n), world)[rank]).numel() else (0, 0)
            stop = hi_shard - (hi_shard - lo_shard) % b if self.drop_last and hi_shard - lo_shard >= b else hi_shard
            for lo in range(lo_shard, stop, b):
                hi = min(lo + b, stop)
                plan.append((lo, hi, lo, hi))
            return plan
        g = b * world
        full = n // g
        steps = full if self.drop_last and full >= 1 else -(-n // g)
        for i in range(steps):
            g_lo, g_hi = i * g, min((i + 1) * g, n)
            if g_hi - g_lo == g:
                lo, hi = g_lo + rank * b, g_lo + (rank + 1) * b
            else:  # the last, partial global batch: near-equal parts
                if g_hi - g_lo < world:
                    raise ConfigError("split", f"a batch of {g_hi - g_lo} images cannot be shared by {world} workers "
                                     f"({n} images, global batch {g}); use fewer workers or drop_last")
                part = torch.tensor_split(torch.arange(g_lo, g_hi), world)[rank]
                lo, hi = int(part[0]), int(part[-1]) + 1
            plan.append((g_lo, g_hi, lo, hi))
        return plan

    def __len__(self) -> int:
        return len(self._plan)

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (after ``drop_last``)."""
        return sum(hi - lo for _, _, lo, hi in self._plan)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s shuffle and augmentation for the next iteration."""
        self._epoch = int(epoch)

    def _generator(self, epoch: int) -> torch.Generator:
        return seeded_generator(self.seed, epoch)

    def _draws(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]:
        """Per batch, in order: this rank's indices and its slice of the global batch's
        random crop rows/columns (or None) and random-resized-crop matrices (or None)."""
        g = self._generator(epoch)
        order = torch.randperm(self._n, generator=g) if self.train else torch.arange(self._n)
        crop, flip, rrc = AUGMENTS[self.augment] if self.train else (False, False, False)
        for g_lo, g_hi, lo, hi in self._plan:
            idx = order[lo:hi]
            mine = slice(lo - g_lo, hi - g_lo)
            rows = cols = theta = None
            if crop or flip:
                rows, cols = _crop_flip_index(g_hi - g_lo, self._h, self._w, self.pad, g, crop=crop, flip=flip)
                rows, cols = rows[mine], cols[mine]
            if rrc:
                theta = _rrc_theta(g_hi - g_lo, g)[mine]
            yield idx, rows, cols, theta

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        draws = self._draws(epoch)
        if self.on_device:
            for idx, rows, cols, theta in draws:
                dev = self.images.device
                if rows is not None:
                    # crop + flip as two uint8 gathers: whole (reflect-indexed) rows, then columns
                    b = idx.shape[0]
                    xb = self.images[idx.to(dev)[:, None], rows.to(dev)]
                    xb = torch.gather(xb, 2, cols.to(dev)[:, None, :, None].expand(b, self._h, self._w, 3))
                else:
                    xb = self.images[idx.to(dev)]
                yield self._finish(xb, None, idx, theta)
            return
        # streamed from host memory, one batch ahead: batch i+1 is gathered and its copy
        # issued before batch i is handed out
        ahead = None
        for turn, (idx, rows, cols, theta) in enumerate(draws):
            staged = self._stage(turn & 1, idx, rows, cols)
            if ahead is not None:
                yield self._finish(*ahead)
            ahead = (*staged, idx, theta)
        if ahead is not None:
            yield self._finish(*ahead)

    def _stage(self, turn: int, idx: torch.Tensor, rows: torch.Tensor | None,
               cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """Gather a batch on the host into staging buffer ``turn`` and start its copy; the
        batch (on the device once its event has passed) and the event (None on the CPU)."""
        pending = self._copied[turn]
        if pending is not None:
            pending.synchronize()  # the copy that last read this buffer has finished
        b = idx.shape[0]
        buf = self._buffers[turn][:b]
        if rows is not None:
            xb = self.images[idx[:, None], rows]
            torch.gather(xb, 2, cols[:, None, :, None].expand(b, self._h, self._w, 3), out=buf)
        else:
            torch.index_select(self.images, 0, idx, out=buf)
        if self._copy_stream is None:
            return buf, None
        with torch.cuda.stream(self._copy_stream):
            x = buf.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        self._copied[turn] = done
        return x, done

    def _finish(self, xb: torch.Tensor, copied: torch.cuda.Event | None, idx: torch.Tensor,
                theta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels, and the uint8 NHWC batch as a normalized float NCHW batch on the device."""
        if copied is not None:  # streamed: this stream waits for this batch's copy only, and
            current = torch.cuda.current_stream(self.device)  # the copy's memory is kept for it
            current.wait_event(copied)
            xb.record_stream(current)
        y = self.labels[idx.to(self.labels.device)]
        xb = xb.to(self.device, non_blocking=True)
        if theta is not None:
            b = xb.shape[0]
            grid = F.affine_grid(theta.to(self.device), [b, 3, self._h, self._w], align_corners=False)
            x = F.grid_sample(xb.permute(0, 3, 1, 2).float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            x = x.mul_(self._scale).add_(self._bias).contiguous(memory_format=self.memory_format)
        elif self.memory_format == torch.channels_last:
            x = xb.float().mul_(self._scale.view(3)).add_(self._bias.view(3)).permute(0, 3, 1, 2)
        else:
            x = xb.permute(0, 3, 1, 2).contiguous().float().mul_(self._scale).add_(self._bias)
        return x, y

    def __repr__(self) -> str:
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (f"DeviceLoader(n={self._n}, batch_size={self.batch_size}, device={str(self.device)!r}, train={self.train}, "
                f"augment={self.augment!r}, placement={self.placement!r}{shard})")
