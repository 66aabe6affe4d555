"""Benchmark (a): DeviceLoader batches/s against the model's own consumption rate.

For the default proxy (``proxy_preset("synthetic")``: 100 classes, 32 px) and the default
small model (resnet18, stem "lowres", width 0.25), measures in the same run:

- loader: batches/s of one training epoch of :class:`study.data.DeviceLoader` (shuffle,
  ``crop_flip`` augmentation, normalization, batches ready on the device);
- model: training steps/s (forward, backward, SGD step) on batches of the same size,
  i.e. the rate at which training consumes batches.

Rounds are interleaved (a loader epoch, then a few model steps) so load from other
processes hits both alike; the figure is the median over rounds of the per-round ratio
``loader batches/s / model batches/s``. The issue's target on CPU is >= 10x.

    python benchmarks/loader_throughput.py                 # CPU, 1 thread, ~30 s
    python benchmarks/loader_throughput.py --threads 2 --batch-size 256
    python benchmarks/loader_throughput.py --device cuda --preset in100-64 --backbone resnet50 --width 1
    python benchmarks/loader_throughput.py --device cuda --placement host   # streamed from (pinned) host memory

``measure(args, data)`` is the same measurement as a function (``benchmarks/gpu_check.py``
calls it for both placements).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
from _results import write_result  # benchmarks/ is sys.path[0] when a script here runs

from study.config import ArchSpec
from study.data import PLACEMENTS, DeviceLoader, load_proxy, proxy_preset
from study.models import build_model

TARGET = 10.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="synthetic")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--stem", default="lowres")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--placement", default="auto", choices=PLACEMENTS,
                   help="where the split lives: auto, device, or host (streamed through two staging buffers, pinned on CUDA)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one trial per core)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model-steps", type=int, default=3, help="model steps timed per round")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line too")
    return p


def measure(args: argparse.Namespace, data=None) -> dict:
    """The measurement (``data``: a loaded ``ProxyData``, default the preset's); the result
    dict that ``--json`` prints."""
    device = torch.device(args.device)
    proxy = proxy_preset(args.preset)
    if data is None:
        data = load_proxy(proxy)
    loader = DeviceLoader(data.train, batch_size=args.batch_size, device=device, train=True, seed=0, augment=proxy.augment,
                          placement=args.placement)
    model = build_model(ArchSpec.uniform(args.backbone, "none", stem=args.stem, width=args.width, num_classes=data.num_classes)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    batches = [b for _, b in zip(range(args.model_steps), loader)]

    def model_round() -> float:
        _sync(device)
        t = time.perf_counter()
        for x, y in batches:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return len(batches) / (time.perf_counter() - t)

    def loader_round() -> float:
        _sync(device)
        t = time.perf_counter()
        n = 0
        for _ in loader:
            n += 1
        _sync(device)
        return n / (time.perf_counter() - t)

    model_round(), loader_round()  # warm-up
    ratios, loader_rates, model_rates = [], [], []
    for _ in range(args.rounds):
        lr_, mr = loader_round(), model_round()
        loader_rates.append(lr_)
        model_rates.append(mr)
        ratios.append(lr_ / mr)
    ratio = statistics.median(ratios)
    return {
        "benchmark": "loader_throughput", "preset": args.preset, "device": str(device), "threads": torch.get_num_threads(),
        "placement": loader.placement,
        "model": f"{args.backbone} stem={args.stem} width={args.width}", "batch_size": args.batch_size,
        "resolution": data.resolution, "train_images": len(data.train), "batches_per_epoch": len(loader),
        "loader_batches_per_s": round(statistics.median(loader_rates), 1),
        "model_batches_per_s": round(statistics.median(model_rates), 2),
        "ratio": round(ratio, 1), "target": TARGET, "rounds": args.rounds,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_proxy(proxy_preset(args.preset))
    result = measure(args, data)
    ratio = result["ratio"]
    print(f"proxy {args.preset} ({data.resolution} px, {len(data.train)} train images), batch {args.batch_size}, "
          f"{result['device']}, {args.threads} thread(s), model {result['model']}, placement {result['placement']}")
    print(f"loader: {result['loader_batches_per_s']} batches/s (crop_flip + normalize, {result['batches_per_epoch']} batches/epoch)")
    print(f"model:  {result['model_batches_per_s']} batches/s (forward + backward + SGD step)")
    print(f"ratio:  loader is {ratio:.1f}x faster than the model consumes (median of {args.rounds} interleaved rounds; "
          f"target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    if args.json:
        print(json.dumps(result))
    write_result("loader_throughput", goal=f"the loader >= {TARGET:.0f}x the batches/s the model consumes",
                 headline={"loader / model": f"{ratio:.0f}x", "loader (batches/s)": result["loader_batches_per_s"],
                           "model (batches/s)": result["model_batches_per_s"]},
                 detail=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
