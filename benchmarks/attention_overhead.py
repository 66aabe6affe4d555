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

``--isolate`` times only what attention adds: for every block of the model, the last batch
norm and the attention after it (``study.attention.bn_attention``) forward and backward on a
random input of that block's shape, summed over the blocks, against the batch norms alone
(kind ``none``) - the attention's own cost in ms per step, free of the convolutions' noise.

    python benchmarks/attention_overhead.py                        # CPU default, all kinds, 64 px, ~5 min
    python benchmarks/attention_overhead.py --kinds eca se --res 32 64 224 --lean both   # ECA vs SE
    python benchmarks/attention_overhead.py --kinds eca se --res 32 64 224 --isolate --threads 1 --clock cpu
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

from study.attention import bn_attention, lean_attention, list_attention
from study.costs import count_macs, count_params
from study.models import build_model, list_backbones

#: --lean: which settings of study.attention.set_lean to time; "both": off and the default
LEAN_MODES = {"auto": ("auto",), "on": (True,), "off": (False,), "both": (False, "auto")}
LEAN_NAMES = {False: "off", True: "on", "auto": "auto"}


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


def _last_bn(block: torch.nn.Module) -> torch.nn.Module:
    """The batch norm right before a block's attention (ResNet: bn2 / bn3; MobileNetV2: the
    projection's BN, the last layer of ``block.conv``)."""
    for name in ("bn3", "bn2"):
        if hasattr(block, name):
            return getattr(block, name)
    return block.conv[-1]


class _Isolated(torch.nn.Module):
    """BN + attention of every block of ``model``, on random inputs of the blocks' shapes."""

    def __init__(self, model: torch.nn.Module, res: int, batch: int, device: torch.device, channels_last: bool):
        super().__init__()
        shapes = []
        hooks = [b.attention.register_forward_hook(lambda m, a, o: shapes.append(tuple(a[0].shape))) for st in model.stages for b in st]
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, res, res, device=device))
        model.train()
        for h in hooks:
            h.remove()
        self.pairs = [(_last_bn(b), b.attention) for st in model.stages for b in st]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.inputs = [torch.randn(batch, *shape[1:], device=device).contiguous(memory_format=fmt) for shape in shapes]

    def step(self) -> None:
        for (bn, att), c0 in zip(self.pairs, self.inputs):
            c = c0.detach().requires_grad_()
            out = bn_attention(bn, att, c)
            out.backward(c0)


def _isolated_step(part: _Isolated, device: torch.device, amp: bool, lean: bool, clock=time.perf_counter) -> float:
    _sync(device)
    t0 = clock()
    with lean_attention(lean), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        part.step()
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
            if args.isolate:
                parts = {kind: _Isolated(m[0], res, batch, device, args.channels_last) for kind, m in models.items()}

                def one(kind: str, lean: bool, parts: dict = parts) -> float:
                    return _isolated_step(parts[kind], device, args.amp, lean, clock)
            else:

                def one(kind: str, lean: bool, models: dict = models, x: torch.Tensor = x, y: torch.Tensor = y) -> float:
                    return _step(models[kind][0], x, y, device, args.amp, lean, clock)

            for kind, lean in configs:
                for _ in range(args.warmup):
                    one(kind, lean)
            times: dict[tuple, list[float]] = {c: [] for c in configs}
            for r in range(args.repeats):
                order = configs[r % len(configs):] + configs[: r % len(configs)]
                for kind, lean in order:
                    times[(kind, lean)].append(one(kind, lean))
            base_times = times[configs[0]]
            _, base_params, base_macs = models["none"]
            group = []
            for kind, lean in configs:
                ratios = [t / b for t, b in zip(times[(kind, lean)], base_times)]
                extra = [t - b for t, b in zip(times[(kind, lean)], base_times)]
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
                        "extra_ms": statistics.median(extra),
                        "extra_ms_q1": statistics.quantiles(extra, n=4)[0] if len(extra) > 1 else extra[0],
                        "extra_ms_q3": statistics.quantiles(extra, n=4)[2] if len(extra) > 1 else extra[0],
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
            e, s_ = pick["eca"], pick["se"]
            eca, se = e["time_ratio"] - 1, s_["time_ratio"] - 1
            out.append(
                {"backbone": key[0], "res": key[1], "batch": key[2], "lean": key[3], "eca": eca, "se": se,
                 "eca_ms": e["extra_ms"], "se_ms": s_["extra_ms"], "eca_ms_iqr": (e["extra_ms_q1"], e["extra_ms_q3"]), "se_ms_iqr": (s_["extra_ms_q1"], s_["extra_ms_q3"]),
                 "ratio": e["extra_ms"] / s_["extra_ms"] if s_["extra_ms"] > 0 else float("nan")}
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
    parser.add_argument("--lean", choices=list(LEAN_MODES), default="auto",
                        help="fused and memory-lean channel-attention paths: auto (the default setting), on, off, or both (off and auto, interleaved)")
    parser.add_argument("--stem", default="imagenet", choices=["imagenet", "lowres"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, each running every kind once (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing (default 2)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--isolate", action="store_true", help="time only every block's last BN + attention, against the BNs alone")
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
        f"{args.repeats} interleaved rounds (+{args.warmup} warm-up), {args.clock} clock{', BN + attention only' if args.isolate else ''}"
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
                f"{r['backbone']:<10} {r['res']:>4} {r['kind']:<15} {LEAN_NAMES[r['lean']]:<5} {r['params']:>11,} {r['params_ratio']:>9.4f} "
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
        what = "BN + attention over BN alone" if args.isolate else "step time over none"
        print(f"# ECA vs SE: overhead = {what}, median of the per-round differences in ms (IQR) and as x time - 1; goal: eca/se <= 0.5")
        print(f"{'backbone':<10} {'res':>4} {'batch':>5} {'lean':<5} {'eca ms':>24} {'se ms':>24} {'eca':>7} {'se':>7} {'eca/se':>7}")
        for r in side:
            print(
                f"{r['backbone']:<10} {r['res']:>4} {r['batch']:>5} {LEAN_NAMES[r['lean']]:<5} "
                f"{r['eca_ms']:>8.2f} ({r['eca_ms_iqr'][0]:6.2f}..{r['eca_ms_iqr'][1]:6.2f}) {r['se_ms']:>8.2f} ({r['se_ms_iqr'][0]:6.2f}..{r['se_ms_iqr'][1]:6.2f}) "
                f"{r['eca']:>+7.3f} {r['se']:>+7.3f} {r['ratio']:>7.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "device_name": name, "rows": rows, "eca_vs_se": side}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
