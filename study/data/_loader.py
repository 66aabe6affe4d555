"""DeviceLoader: batches from a split held in memory, augmented on the device.

The whole split sits on the training device when it fits (a CUDA device with room to
spare), otherwise in host memory (pinned when the target is a CUDA device, so copies are
asynchronous). Every batch is one gather by index; augmentation is batched tensor code on
the device, with no per-image Python (after airbench, Jordan 2024):

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
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from study.data._types import Split, seeded_generator

__all__ = ["DeviceLoader", "AUGMENTS", "IMAGENET_MEAN", "IMAGENET_STD", "list_augments"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RRC_SCALE = (0.25, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
#: Keep a split on a CUDA device only if it takes at most this fraction of the free memory.
DEVICE_FRACTION = 0.5


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
        batch_size: images per batch (>= 1).
        device: where batches (and, when it fits, the whole split) live.
        train: shuffle and augment (True) or iterate in order with the centre view (False).
        seed: seeds the shuffle and augmentation; epoch ``e`` uses ``(seed, e)``.
        augment: one of :data:`AUGMENTS` (``crop_flip``, ``rrc_flip``, ``flip``, ``none``);
            used only when ``train``.
        drop_last: drop the last incomplete batch; default ``train``. A split smaller than
            one batch still gives one batch.
        memory_format: of ``x``; ``torch.channels_last`` saves a copy when the model runs
            channels-last.

    ``len(loader)`` is the number of batches per epoch. Each iteration uses the epoch set
    by :meth:`set_epoch` and then advances it by one, so a loop that calls
    ``set_epoch(e)`` every epoch is reproducible from any epoch (resume), and one that
    never calls it still sees a fresh order every epoch.
    """

    def __init__(self, split: Split, *, batch_size: int, device: str | torch.device = "cpu", train: bool, seed: int = 0,
                 augment: str = "crop_flip", drop_last: bool | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        if not isinstance(split, Split):
            raise TypeError(f"split: expected a study.data.Split, got {type(split).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if augment not in AUGMENTS:
            raise ValueError(f"augment: unknown augmentation {augment!r} (valid: {', '.join(list_augments())})")
        if len(split) == 0:
            raise ValueError("split: has no images")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = bool(train)
        self.seed = int(seed)
        self.augment = augment
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.memory_format = memory_format
        self._epoch = 0
        n, h, w, _ = split.images.shape
        self._n, self._h, self._w = int(n), int(h), int(w)
        self.pad = max(1, self._h // 8)

        images, labels = split.images, split.labels
        self.on_device = False
        # two pinned staging buffers used in turn; a buffer is refilled only after the
        # asynchronous copy that last read it has finished (its event)
        self._pinned_buffers: list[torch.Tensor] = []
        self._copy_events: list[torch.cuda.Event | None] = [None, None]
        self._turn = 0
        if self.device.type == "cpu":
            pass
        elif self.device.type == "cuda":
            need = images.numel() + labels.numel() * 8
            free, _ = torch.cuda.mem_get_info(self.device)
            if need <= DEVICE_FRACTION * free:
                images, self.on_device = images.to(self.device), True
            else:
                images = images.pin_memory()
                self._pinned_buffers = [torch.empty((batch_size, h, w, 3), dtype=torch.uint8).pin_memory() for _ in range(2)]
        else:
            images, self.on_device = images.to(self.device), True
        self.images = images
        self.labels = labels.to(self.device)
        std = torch.tensor(IMAGENET_STD)
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device)
        self._bias = (-torch.tensor(IMAGENET_MEAN) / std).view(1, 3, 1, 1).to(self.device)

    def __len__(self) -> int:
        if self.drop_last and self._n >= self.batch_size:
            return self._n // self.batch_size
        return -(-self._n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images per epoch (after ``drop_last``)."""
        return min(self._n, len(self) * self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s shuffle and augmentation for the next iteration."""
        self._epoch = int(epoch)

    def _generator(self, epoch: int) -> torch.Generator:
        return seeded_generator(self.seed, epoch)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if self.on_device or self.device.type == "cpu":
            return self.images[idx.to(self.images.device)]
        turn, self._turn = self._turn, self._turn ^ 1
        pending = self._copy_events[turn]
        if pending is not None:
            pending.synchronize()  # the copy that last read this buffer has finished
        buf = self._pinned_buffers[turn][: idx.shape[0]]
        torch.index_select(self.images, 0, idx, out=buf)
        x = buf.to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        self._copy_events[turn] = done
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        g = self._generator(epoch)
        order = torch.randperm(self._n, generator=g) if self.train else torch.arange(self._n)
        crop, flip, rrc = AUGMENTS[self.augment] if self.train else (False, False, False)
        bs = self.batch_size
        for i in range(len(self)):
            idx = order[i * bs:(i + 1) * bs]
            b = idx.shape[0]
            y = self.labels[idx.to(self.labels.device)]
            if crop or flip:
                # crop + flip as two uint8 gathers: whole (reflect-indexed) rows, then columns
                rows, cols = _crop_flip_index(b, self._h, self._w, self.pad, g, crop=crop, flip=flip)
                dev = self.images.device
                xb = self.images[idx.to(dev)[:, None], rows.to(dev)]
                xb = torch.gather(xb, 2, cols.to(dev)[:, None, :, None].expand(b, self._h, self._w, 3))
                xb = xb.to(self.device, non_blocking=True)
            else:
                xb = self._gather(idx)
            if rrc:
                theta = _rrc_theta(b, g).to(self.device)
                grid = F.affine_grid(theta, [b, 3, self._h, self._w], align_corners=False)
                x = F.grid_sample(xb.permute(0, 3, 1, 2).float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
                x = x.mul_(self._scale).add_(self._bias).contiguous(memory_format=self.memory_format)
            elif self.memory_format == torch.channels_last:
                x = xb.float().mul_(self._scale.view(3)).add_(self._bias.view(3)).permute(0, 3, 1, 2)
            else:
                x = xb.permute(0, 3, 1, 2).contiguous().float().mul_(self._scale).add_(self._bias)
            yield x, y

    def __repr__(self) -> str:
        return (f"DeviceLoader(n={self._n}, batch_size={self.batch_size}, device={str(self.device)!r}, train={self.train}, "
                f"augment={self.augment!r}, on_device={self.on_device})")
