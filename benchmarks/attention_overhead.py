"""Training-step overhead of each channel attention, relative to no attention.

For each backbone, builds one model per attention kind (the same attention in every
stage) and times a forward+backward pass (SGD step excluded) of each, interleaved: every
round runs every kind once, in a rotated order, so drift and noise from other processes
hit all kinds alike. The figure is the median over rounds of the per-round ratio
``time(kind) / time(none)``, and the ratio of the fastest steps (robust when other
processes share the machine); params and MACs ratios are printed alongside.

    python benchmarks/attention_overhead.py                        # CPU default, ~1-3 min
    python benchmarks/attention_overhead.py --device cuda --res 224 --batch 64 --amp
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from study.attention import list_attention
from study.config import ArchSpec
from study.costs import count_macs, count_params
from study.models import build_model, list_backbones

# parameters where a kind's default would not fit every stage (none needed at the default widths)
EXTRA_PARAMS: dict[str, dict] = {}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> float:
    _sync(device)
    t0 = time.perf_counter()
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def run(args: argparse.Namespace, on_backbone=None) -> list[dict]:
    device = torch.device(args.device)
    kinds = args.kinds or list_attention()
    if "none" not in kinds:
        kinds = ["none", *kinds]
    rows = []
    for backbone in args.backbones:
        torch.manual_seed(0)
        models = {}
        for kind in kinds:
            arch = ArchSpec.uniform(backbone, {"kind": kind, **EXTRA_PARAMS.get(kind, {})}, stem=args.stem, width=args.width, num_classes=args.num_classes)
            model = build_model(arch)
            macs = count_macs(model, args.res)
            model = model.to(device).train()
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last)
            models[kind] = (model, count_params(model), macs)
        x = torch.randn(args.batch, 3, args.res, args.res, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, args.num_classes, (args.batch,), device=device)
        for kind in kinds:
            for _ in range(args.warmup):
                _step(models[kind][0], x, y, device, args.amp)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.repeats):
            order = kinds[r % len(kinds):] + kinds[: r % len(kinds)]
            for kind in order:
                times[kind].append(_step(models[kind][0], x, y, device, args.amp))
        base_model, base_params, base_macs = models["none"]
        for kind in kinds:
            ratios = [t / b for t, b in zip(times[kind], times["none"])]
            _, params, macs = models[kind]
            rows.append(
                {
                    "backbone": backbone,
                    "kind": kind,
                    "params": params,
                    "macs": macs,
                    "ms": statistics.median(times[kind]),
                    "ms_min": min(times[kind]),
                    "min_ratio": min(times[kind]) / min(times["none"]),
                    "time_ratio": statistics.median(ratios),
                    "time_ratio_q1": statistics.quantiles(ratios, n=4)[0] if len(ratios) > 1 else ratios[0],
                    "time_ratio_q3": statistics.quantiles(ratios, n=4)[2] if len(ratios) > 1 else ratios[0],
                    "params_ratio": params / base_params,
                    "macs_ratio": macs / base_macs,
                }
            )
        del models
        if on_backbone is not None:
            on_backbone([r for r in rows if r["backbone"] == backbone])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], choices=list_backbones())
    parser.add_argument("--kinds", nargs="+", choices=list_attention(), help="attention kinds (default: all registered; none is always included)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--res", type=int, default=64, help="input resolution (default 64; use 224 on a GPU)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--stem", default="imagenet", choices=["imagenet", "lowres"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, each running every kind once (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing (default 2)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.repeats < 1 or args.batch < 1 or args.res < 8:
        parser.error("--repeats and --batch must be >= 1 and --res >= 8")

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(
        f"# attention overhead: forward+backward, {args.device} ({name}), torch {torch.__version__}, "
        f"{args.res} px, batch {args.batch}, stem {args.stem}, width {args.width:g}, {'bf16 autocast' if args.amp else 'fp32'}"
        f"{', channels_last' if args.channels_last else ''}, {args.repeats} interleaved rounds (+{args.warmup} warm-up)"
    )
    t0 = time.time()
    print(f"{'backbone':<10} {'attention':<9} {'params':>11} {'x params':>9} {'MACs':>14} {'x MACs':>7} {'ms/step':>9} {'x time':>7} {'(IQR)':>13} {'min ms':>8} {'x min':>6}", flush=True)

    def show(rows: list[dict]) -> None:
        for r in rows:
            print(
                f"{r['backbone']:<10} {r['kind']:<9} {r['params']:>11,} {r['params_ratio']:>9.4f} {r['macs']:>14,} {r['macs_ratio']:>7.4f} "
                f"{r['ms']:>9.1f} {r['time_ratio']:>7.3f} ({r['time_ratio_q1']:.3f}-{r['time_ratio_q3']:.3f}) {r['ms_min']:>8.1f} {r['min_ratio']:>6.3f}",
                flush=True,
            )

    rows = run(args, show)
    print(
        f"# x time: median over rounds of time(kind) / time(none) in the same round (IQR in brackets); "
        f"x min: fastest step of kind / fastest step of none (robust to interference from other processes); {time.time() - t0:.0f} s in all"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "device_name": name, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
