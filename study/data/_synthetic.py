"""``synthetic``: a deterministic, learnable-but-not-trivial stand-in for ImageNet-100.

It exists to run the machinery (trainer, runners, analysis) without any data files; accuracy
on it says nothing about ImageNet, so draw no conclusions about attention from it.

Every class is a prototype made of ``COMPONENTS`` coloured plane waves (random spatial
frequency of 1-4 cycles per image, orientation, phase and an RGB colour per wave, plus a
class base colour). Each image renders its class's prototype with its own random shift
(a phase change), scale (x0.8-1.25 frequency), small rotation, per-wave amplitude,
per-channel colour gain and offset, mixes in the waves of a random distractor class
(weight up to ``DISTRACTOR``) and adds Gaussian pixel noise. The class is carried by
which frequencies/orientations come with which colours: a spatial *and* channel-wise
structure, so channel attention has something to act on. Everything is drawn from
``torch.Generator`` s seeded by ``ProxySpec.subset_seed`` and rendered in batched torch
(no per-image Python), so the same spec always gives the same images.

Default size: 16 training and 10 validation images per class (1,600 + 1,000 at 100
classes), chosen so one epoch of resnet18 (stem "lowres", width 0.25) at 32 px takes about
5 s on one CPU thread. Calibration with :func:`study.trainer.train` (SGD, batch 128, lr
0.2, 1 warm-up epoch then cosine, 4 epochs): no attention 34.7 % / 36.1 % top-1 (seeds 0 /
1), ECA 45.6 % / 35.8 %, SE 33.3 % (seed 0); 8 epochs without attention reach 74 %. Chance
is 1 %. Seed-to-seed spread is several points at this budget.
"""

from __future__ import annotations

import math

import torch

from study.data._registry import ProxySource, register_source
from study.data._types import ProxyData, Split, seeded_generator
from study.validate import ConfigError

__all__ = ["SyntheticSource", "make_synthetic", "DEFAULT_TRAIN_PER_CLASS", "DEFAULT_VAL_PER_CLASS"]

#: Images per class when ``ProxySpec.images_per_class`` / ``val_per_class`` are None.
DEFAULT_TRAIN_PER_CLASS = 16
DEFAULT_VAL_PER_CLASS = 10

COMPONENTS = 3          # plane waves per class prototype
FREQ_RANGE = (1.0, 4.0)  # cycles per image
SCALE_RANGE = (0.8, 1.25)
ROTATION = 0.25          # radians, +-
AMPLITUDE_RANGE = (0.6, 1.4)
GAIN_RANGE = (0.75, 1.25)
OFFSET = 0.2
DISTRACTOR = 0.6         # maximum weight of the distractor class's waves
NOISE = 0.25             # std of the pixel noise, in units of the pattern's amplitude
CONTRAST = 0.22          # pattern amplitude -> pixel range [0, 1] around grey 0.5
_CHUNK = 512


def _uniform(g: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (hi - lo) + lo


def _prototypes(num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    g = seeded_generator(seed, 0)
    c, k = num_classes, COMPONENTS
    freq = torch.exp(_uniform(g, (c, k), math.log(FREQ_RANGE[0]), math.log(FREQ_RANGE[1])))
    angle = _uniform(g, (c, k), 0.0, math.pi)
    phase = _uniform(g, (c, k), 0.0, 2 * math.pi)
    colour = torch.nn.functional.normalize(torch.randn((c, k, 3), generator=g), dim=-1) * math.sqrt(3.0) / 2
    base = _uniform(g, (c, 3), -0.5, 0.5)
    return {"freq": freq, "angle": angle, "phase": phase, "colour": colour, "base": base}


def _render(protos: dict[str, torch.Tensor], labels: torch.Tensor, resolution: int, g: torch.Generator) -> torch.Tensor:
    """uint8 NHWC images of ``labels``; all per-image randomness is drawn up front."""
    n, k, c = labels.shape[0], COMPONENTS, protos["freq"].shape[0]
    distractor = (labels + torch.randint(1, c, (n,), generator=g)) % c
    # waves of the class (first k) and of the distractor (last k): (n, 2k)
    cls = torch.cat([labels[:, None].expand(n, k), distractor[:, None].expand(n, k)], 1)
    comp = torch.arange(k).repeat(2)[None, :].expand(n, 2 * k)
    scale = _uniform(g, (n, 1), *SCALE_RANGE)
    angle = protos["angle"][cls, comp] + _uniform(g, (n, 1), -ROTATION, ROTATION)
    freq = protos["freq"][cls, comp] * scale
    shift = torch.rand((n, 2, 2), generator=g)  # (image, class/distractor, xy) in image fractions
    fx, fy = freq * torch.cos(angle), freq * torch.sin(angle)
    sx = shift[:, :, 0].repeat_interleave(k, 1)
    sy = shift[:, :, 1].repeat_interleave(k, 1)
    phase = protos["phase"][cls, comp] + 2 * math.pi * (fx * sx + fy * sy)
    weight = _uniform(g, (n, 2 * k), *AMPLITUDE_RANGE)
    weight[:, k:] *= _uniform(g, (n, 1), 0.0, DISTRACTOR)
    colour = protos["colour"][cls, comp] * weight[..., None]  # (n, 2k, 3)
    gain = _uniform(g, (n, 3), *GAIN_RANGE)
    offset = protos["base"][labels] + _uniform(g, (n, 3), -OFFSET, OFFSET)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))

    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    out = torch.empty((n, resolution, resolution, 3), dtype=torch.uint8)
    gn = seeded_generator(noise_seed)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        arg = 2 * math.pi * (fx[lo:hi, :, None, None] * coords[None, None, None, :]
                             + fy[lo:hi, :, None, None] * coords[None, None, :, None])
        wave = torch.cos(arg + phase[lo:hi, :, None, None])  # (b, 2k, H, W)
        img = torch.einsum("bkhw,bkc->bhwc", wave, colour[lo:hi])
        img = img + offset[lo:hi, None, None, :] + NOISE * torch.randn(img.shape, generator=gn)
        img = 0.5 + CONTRAST * img * gain[lo:hi, None, None, :]
        out[lo:hi] = (img.clamp_(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return out


def make_synthetic(*, num_classes: int = 100, resolution: int = 32, train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
                   val_per_class: int = DEFAULT_VAL_PER_CLASS, seed: int = 0) -> ProxyData:
    """The synthetic proxy; a pure function of its arguments.

    Train and val share the class prototypes (seeded by ``seed``) and draw their images
    from separate streams, so changing the val size never changes the train images.
    """
    for name, value, lo in (("num_classes", num_classes, 2), ("resolution", resolution, 8),
                            ("train_per_class", train_per_class, 1), ("val_per_class", val_per_class, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(name, f"expected an integer >= {lo}, got {value!r}")
    protos = _prototypes(num_classes, seed)
    splits = []
    for stream, per_class in ((1, train_per_class), (2, val_per_class)):
        g = seeded_generator(seed, stream)
        labels = torch.arange(num_classes * per_class, dtype=torch.int64) % num_classes
        splits.append(Split(_render(protos, labels, resolution, g), labels))
    width = len(str(num_classes - 1))
    return ProxyData(
        train=splits[0], val=splits[1], classes=[f"synthetic_{i:0{width}d}" for i in range(num_classes)],
        resolution=resolution, source="synthetic",
        info={"seed": seed, "train_per_class": train_per_class, "val_per_class": val_per_class},
    )


@register_source("synthetic")
class SyntheticSource(ProxySource):
    description = "built-in, generated from a seed; runs the machinery, not for conclusions"
    generated = True

    def load(self, proxy):  # type: ignore[override]
        ipc = proxy.images_per_class
        if ipc is None:
            train = DEFAULT_TRAIN_PER_CLASS
        elif isinstance(ipc, float):
            train = max(1, round(ipc * DEFAULT_TRAIN_PER_CLASS))
        else:
            train = int(ipc)
        val = proxy.val_per_class if proxy.val_per_class is not None else DEFAULT_VAL_PER_CLASS
        return make_synthetic(num_classes=proxy.num_classes, resolution=proxy.resolution,
                              train_per_class=train, val_per_class=val, seed=proxy.subset_seed)
