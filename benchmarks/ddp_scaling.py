"""Data-parallel scaling of full training: throughput with 1 and 2 Ray Train workers.

Trains the same config (global batch fixed, so each of N workers takes batch / N images a
step) with ``study.cluster.train_distributed`` on 1 and then 2 workers of a local Ray started
by this script (or ``--address``), and, as the baseline of the 1-worker figure, with
``study.trainer.train`` in this process. Throughput is training images per second of an
epoch (all ranks' images over rank 0's epoch time, CUDA events on a GPU), the median over
the epochs after the first (warm-up). The three run in turn, ``--rounds`` times, and each
figure is the median over the rounds, so a drifting machine load hits all three alike.
Start-up (Ray Train's worker processes, the process group) is not in the figure; it is
printed apart.

    python benchmarks/ddp_scaling.py                              # CPU: gloo, 1 CPU per worker
    python benchmarks/ddp_scaling.py --gpus-per-worker 1 --width 1 --res 64 --batch-size 256   # GPUs: NCCL

Prints images/s of each and the ratios 2 workers / 1 worker (ideal 2.0) and 1 worker on
Ray / one process (the cost of DDP and Ray around the same trainer; ideal 1.0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import write_result

from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig


def median_rate(history) -> float:
    rates = [m.images_per_s for m in history[1:]] or [m.images_per_s for m in history]
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", help="a Ray cluster (default: a local Ray started for the benchmark)")
    p.add_argument("--gpus-per-worker", type=int, default=0)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--attention", default="eca")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--images-per-class", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="the global batch (each of N workers: batch / N)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (one process, 1 worker, 2 workers)")
    args = p.parse_args()

    import torch

    from study.cluster import Scaling, init_ray, train_distributed
    from study.trainer import train

    config = TrialConfig(
        arch=ArchSpec.uniform(args.backbone, args.attention, stem="lowres", width=args.width, num_classes=args.classes),
        recipe=Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, warmup_epochs=1.0),
        proxy=ProxySpec(num_classes=args.classes, resolution=args.res, images_per_class=args.images_per_class, val_per_class=2),
    )
    device = "cuda" if args.gpus_per_worker else "cpu"
    print(f"{args.backbone}+{args.attention} x{args.width} lowres  {args.res} px  global batch {args.batch_size}  "
          f"{args.classes * args.images_per_class} train images  {args.epochs} epochs  device {device}  {os.cpu_count()} CPUs")

    torch.set_num_threads(1)  # as one worker with 1 CPU
    init_ray(args.address)
    runs: dict[str, list[float]] = {"process": [], "1": [], "2": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1, args.rounds + 1):
            runs["process"].append(median_rate(train(config, device=device).history))
            print(f"round {r}: one process {runs['process'][-1]:9.1f} img/s  (load average {os.getloadavg()[0]:.1f})", flush=True)
            for workers in (1, 2):
                started = time.monotonic()
                scaling = Scaling(workers=workers, cpus_per_worker=1.0, gpus_per_worker=args.gpus_per_worker, max_failures=0)
                result = train_distributed(config, Path(tmp) / f"r{r}w{workers}", scaling=scaling, log=None)
                wall = time.monotonic() - started
                runs[str(workers)].append(median_rate(result.history))
                print(f"round {r}: {workers} worker(s) {runs[str(workers)][-1]:9.1f} img/s  (run {wall:.1f} s, of which training "
                      f"{sum(m.epoch_time_s for m in result.history):.1f} s; load average {os.getloadavg()[0]:.1f})", flush=True)
    rates = {k: statistics.median(v) for k, v in runs.items()}
    print(f"median over {args.rounds} rounds: one process {rates['process']:.1f}, 1 worker {rates['1']:.1f}, "
          f"2 workers {rates['2']:.1f} img/s")
    print(f"throughput 2 workers / 1 worker: {rates['2'] / rates['1']:.2f}x (ideal 2.0)")
    print(f"throughput 1 worker on Ray / one process: {rates['1'] / rates['process']:.3f} (ideal 1.0)")
    write_result("ddp_scaling", goal="2 Ray Train workers near 2x the throughput of 1; 1 worker near one process",
                 headline={"2 workers / 1 worker": f"{rates['2'] / rates['1']:.2f}x",
                           "1 worker on Ray / one process": round(rates["1"] / rates["process"], 3),
                           "rounds (2 / 1)": ", ".join(f"{a / b:.2f}" for a, b in zip(runs["2"], runs["1"])),
                           "load average": round(os.getloadavg()[0], 1)},
                 detail={"images_per_s": runs, "settings": vars(args)})


if __name__ == "__main__":
    main()
