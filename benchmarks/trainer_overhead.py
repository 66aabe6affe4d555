"""Trainer throughput against a bare hand-written training loop (issue 3, benchmark c).

Both train the same architecture on the same batches (one ``study.data.DeviceLoader``
with the same seed, so epoch ``e`` gives identical batches) with the same SGD + Nesterov
optimizer, label smoothing and the same numerics (``study.trainer.numerics``: bf16 autocast
and channels-last on a GPU, and on the CPU when the recipe sets them). The bare loop
is forward, loss, zero_grad, backward, step, nothing else; ``study.trainer.train`` adds the
per-step lr schedule, on-device loss accumulation and the periodic divergence check.
Throughput is training images per second of an epoch, timed the same way in both (CUDA
events on a GPU), evaluation excluded. The two run in lockstep: after every trainer epoch
its reporter runs one bare epoch, so a drifting machine load hits both alike; the figure is
the median of the per-epoch ratios, the first (warm-up) epoch left out.

    python benchmarks/trainer_overhead.py                       # CPU, resnet18 lowres x0.25, 32 px
    python benchmarks/trainer_overhead.py --device cuda --width 1 --batch-size 256

Prints the median images/s of each and the ratio trainer / bare (target >= 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from _results import write_result  # benchmarks/ is sys.path[0] when a script here runs

from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.data import DeviceLoader, load_proxy
from study.metrics import EpochMetrics, Reporter
from study.trainer import build_optimizer, numerics, train, trial_model


def bare_epochs(config: TrialConfig, data, device: torch.device) -> Iterator[float]:
    """Images/s of every epoch of the plainest loop that trains the same thing (a
    generator: one epoch per ``next``)."""
    recipe = config.recipe
    on_cuda = device.type == "cuda"
    amp, fmt = numerics(recipe, device)
    loader = DeviceLoader(data.train, batch_size=recipe.batch_size, device=device, train=True, seed=config.seed,
                          augment=config.proxy.augment, memory_format=fmt)
    model = trial_model(config).to(device).to(memory_format=fmt)
    net = torch.compile(model) if recipe.compile else model
    optimizer = build_optimizer(model, recipe)
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        loader.set_epoch(epoch)
        seen = 0
        if on_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        for x, y in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += y.shape[0]
        if on_cuda:
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1000.0
        else:
            elapsed = time.perf_counter() - t0
        yield seen / elapsed


class Paired(Reporter):
    """After every trainer epoch, runs one bare-loop epoch: the two are measured side by
    side, so a drifting machine load hits both alike."""

    def __init__(self, bare: Iterator[float]):
        self.bare = bare
        self.pairs: list[tuple[float, float]] = []

    def report(self, metrics: EpochMetrics) -> bool:
        self.pairs.append((metrics.images_per_s, next(self.bare)))
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--attention", default="eca")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--images-per-class", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=12, help="epochs (the first is warm-up)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # the trainer does this on CPU; give the bare loop the same
    device = torch.device(args.device)
    config = TrialConfig(
        arch=ArchSpec.uniform(args.backbone, args.attention, stem="lowres", width=args.width, num_classes=args.classes),
        recipe=Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, warmup_epochs=1.0, compile=args.compile),
        proxy=ProxySpec(num_classes=args.classes, resolution=args.res, images_per_class=args.images_per_class, val_per_class=2),
    )
    data = load_proxy(config.proxy)
    print(f"device {device}  {args.backbone}+{args.attention} x{args.width} lowres  {args.res} px  batch {args.batch_size}  "
          f"{len(data.train)} train images  {args.epochs} epochs  threads {torch.get_num_threads()}")

    paired = Paired(bare_epochs(config, data, device))
    train(config, paired, device=device, data=data)
    pairs = paired.pairs[1:]  # epoch 1 is warm-up for both
    for e, (t, b) in enumerate(pairs, start=2):
        print(f"epoch {e:3d}: trainer {t:10.1f} img/s   bare {b:10.1f} img/s   ratio {t / b:.3f}")
    trainer_median = statistics.median(t for t, _ in pairs)
    bare_median = statistics.median(b for _, b in pairs)
    ratio = statistics.median(t / b for t, b in pairs)
    print(f"trainer {trainer_median:.1f} img/s  bare loop {bare_median:.1f} img/s  "
          f"ratio trainer/bare {ratio:.3f} (median of per-epoch ratios; target >= 0.97)")
    write_result("trainer_overhead", goal="study.trainer.train >= 0.97 of a bare loop's throughput",
                 headline={"trainer / bare loop": round(ratio, 3), "trainer (img/s)": round(trainer_median, 1),
                           "bare loop (img/s)": round(bare_median, 1)},
                 detail={"pairs": pairs, "settings": vars(args)})

if __name__ == "__main__":
    main()
