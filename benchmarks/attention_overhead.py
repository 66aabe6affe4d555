"""Training-step overhead of each channel attention, relative to no attention.

For each backbone and resolution, builds one model per attention kind (the same attention in
every stage; parameters that depend on the feature map fitted per stage) and times a
forward+backward pass (SGD step excluded) of each, interleaved: every round runs every kind
once - with the fused and memory-lean channel-attention paths on and off, ``--lean`` - in a
rotated order, so drift and noise from other processes hit all alike. The figure is the median
over rounds of the per-round ratio ``time(kind) / time(none)``, and the ratio of the fastest
steps (robust when other processes share the machine); params and MACs ratios are printed
alongside. With ``eca`` and ``se`` among the kinds, a last table sets their overheads side by
side.

    python benchmarks/attention_overhead.py                        # CPU default, all kinds, 64 px, ~5 min
    python benchmarks/attention_overhead.py --kinds eca se --res 32 64 224 --lean both   # ECA vs SE
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

from _attention_bench import uniform_arch
from study.attention import lean_attention, list_attention
from study.costs import count_macs, count_params
from study.models import build_model, list_backbones

LEAN_MODES = {"on": (True,), "off": (False,), "both": (False, True)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: "wall": elapsed time; "cpu": this process's CPU time (with --threads 1, robust to other
#: processes competing for the cores: time spent waiting for a core is not counted)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool, lean: bool, clock=time.perf_counter) -> float:
    _sync(device)
    t0 = clock()
    model.zero_grad(set_to_none=True)
    with lean_attention(lean), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    _sync(device)
    return (clock() - t0) * 1e3


def batch_for(args: argparse.Namespace, res: int) -> int:
    return args.batch if res < 128 else args.batch_large


def run(args: argparse.Namespace, on_group=None) -> list[dict]:
    device = torch.device(args.device)
    kinds = args.kinds or list_attention()
    if "none" not in kinds:
        kinds = ["none", *kinds]
    leans = LEAN_MODES[args.lean]
    clock = CLOCKS[args.clock]
    rows = []
    for backbone in args.backbones:
        for res in args.res:
            torch.manual_seed(0)
            batch = batch_for(args, res)
            models = {}
            for kind in kinds:
                try:
                    arch = uniform_arch(backbone, kind, res, stem=args.stem, width=args.width, num_classes=args.num_classes)
                except ValueError as exc:
                    print(f"# {backbone} {res} px {kind}: skipped ({exc})", flush=True)
                    continue
                model = build_model(arch)
                macs = count_macs(model, res)
                model = model.to(device).train()
                if args.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                models[kind] = (model, count_params(model), macs)
            configs = [("none", leans[-1])] + [(k, lean) for k in models if k != "none" for lean in leans]
            x = torch.randn(batch, 3, res, res, device=device)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, args.num_classes, (batch,), device=device)
            for kind, lean in configs:
                for _ in range(args.warmup):
                    _step(models[kind][0], x, y, device, args.amp, lean, clock)
            times: dict[tuple, list[float]] = {c: [] for c in configs}
            for r in range(args.repeats):
                order = configs[r % len(configs):] + configs[: r % len(configs)]
                for kind, lean in order:
                    times[(kind, lean)].append(_step(models[kind][0], x, y, device, args.amp, lean, clock))
            base_times = times[configs[0]]
            _, base_params, base_macs = models["none"]
            group = []
            for kind, lean in configs:
                ratios = [t / b for t, b in zip(times[(kind, lean)], base_times)]
                _, params, macs = models[kind]
                group.append(
                    {
                        "backbone": backbone,
                        "res": res,
                        "batch": batch,
                        "kind": kind,
                        "lean": lean,
                        "params": params,
                        "macs": macs,
                        "ms": statistics.median(times[(kind, lean)]),
                        "ms_min": min(times[(kind, lean)]),
                        "min_ratio": min(times[(kind, lean)]) / min(base_times),
                        "time_ratio": statistics.median(ratios),
                        "time_ratio_q1": statistics.quantiles(ratios, n=4)[0] if len(ratios) > 1 else ratios[0],
                        "time_ratio_q3": statistics.quantiles(ratios, n=4)[2] if len(ratios) > 1 else ratios[0],
                        "params_ratio": params / base_params,
                        "macs_ratio": macs / base_macs,
                    }
                )
            rows += group
            del models
            if on_group is not None:
                on_group(group)
    return rows


def eca_vs_se(rows: list[dict]) -> list[dict]:
    """Per backbone, resolution and path: ECA's and SE's overhead (x time - 1) and their ratio."""
    out = []
    for key in dict.fromkeys((r["backbone"], r["res"], r["batch"], r["lean"]) for r in rows if r["kind"] != "none"):
        pick = {r["kind"]: r for r in rows if (r["backbone"], r["res"], r["batch"], r["lean"]) == key}
        if "eca" in pick and "se" in pick:
            eca, se = pick["eca"]["time_ratio"] - 1, pick["se"]["time_ratio"] - 1
            eca_min, se_min = pick["eca"]["min_ratio"] - 1, pick["se"]["min_ratio"] - 1
            out.append(
                {"backbone": key[0], "res": key[1], "batch": key[2], "lean": key[3], "eca": eca, "se": se, "eca_min": eca_min, "se_min": se_min,
                 "ratio": eca / se if se > 0 else float("nan"), "ratio_min": eca_min / se_min if se_min > 0 else float("nan")}
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], choices=list_backbones())
    parser.add_argument("--kinds", nargs="+", choices=list_attention(), help="attention kinds (default: all registered; none is always included)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--res", type=int, nargs="+", default=[64], help="input resolutions (default 64; e.g. 32 64 224)")
    parser.add_argument("--batch", type=int, default=8, help="batch size below 128 px (default 8)")
    parser.add_argument("--batch-large", type=int, default=2, help="batch size at 128 px and above (default 2)")
    parser.add_argument("--lean", choices=list(LEAN_MODES), default="on", help="fused and memory-lean channel-attention paths: on (the default setting), off, or both, interleaved")
    parser.add_argument("--stem", default="imagenet", choices=["imagenet", "lowres"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, each running every kind once (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing (default 2)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="wall (default) or cpu: this process's CPU time, for a shared machine with --threads 1")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu: only for --device cpu")
    if args.repeats < 1 or args.batch < 1 or args.batch_large < 1 or min(args.res) < 8:
        parser.error("--repeats, --batch and --batch-large must be >= 1 and --res >= 8")

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(
        f"# attention overhead: forward+backward, {args.device} ({name}), torch {torch.__version__}, "
        f"{'/'.join(map(str, args.res))} px, batch {args.batch} (below 128 px) / {args.batch_large}, stem {args.stem}, width {args.width:g}, "
        f"{'bf16 autocast' if args.amp else 'fp32'}{', channels_last' if args.channels_last else ''}, lean paths {args.lean}, "
        f"{args.repeats} interleaved rounds (+{args.warmup} warm-up), {args.clock} clock"
    )
    t0 = time.time()
    print(
        f"{'backbone':<10} {'res':>4} {'attention':<15} {'lean':<5} {'params':>11} {'x params':>9} {'MACs':>14} {'x MACs':>7} "
        f"{'ms/step':>9} {'x time':>7} {'(IQR)':>13} {'min ms':>8} {'x min':>6}",
        flush=True,
    )

    def show(rows: list[dict]) -> None:
        for r in rows:
            print(
                f"{r['backbone']:<10} {r['res']:>4} {r['kind']:<15} {('on' if r['lean'] else 'off'):<5} {r['params']:>11,} {r['params_ratio']:>9.4f} "
                f"{r['macs']:>14,} {r['macs_ratio']:>7.4f} {r['ms']:>9.1f} {r['time_ratio']:>7.3f} ({r['time_ratio_q1']:.3f}-{r['time_ratio_q3']:.3f}) "
                f"{r['ms_min']:>8.1f} {r['min_ratio']:>6.3f}",
                flush=True,
            )

    rows = run(args, show)
    print(
        f"# x time: median over rounds of time(kind) / time(none) in the same round (IQR in brackets); "
        f"x min: fastest step of kind / fastest step of none (robust to interference from other processes); {time.time() - t0:.0f} s in all"
    )
    side = eca_vs_se(rows)
    if side:
        print("# ECA vs SE: overhead = x time - 1 (x min - 1 in brackets); goal: ECA's at most half of SE's (eca/se <= 0.5)")
        print(f"{'backbone':<10} {'res':>4} {'batch':>5} {'lean':<5} {'eca':>16} {'se':>16} {'eca/se':>14}")
        for r in side:
            print(
                f"{r['backbone']:<10} {r['res']:>4} {r['batch']:>5} {('on' if r['lean'] else 'off'):<5} "
                f"{r['eca']:>+7.3f} ({r['eca_min']:+.3f}) {r['se']:>+7.3f} ({r['se_min']:+.3f}) {r['ratio']:>5.2f} ({r['ratio_min']:.2f})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "device_name": name, "rows": rows, "eca_vs_se": side}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
