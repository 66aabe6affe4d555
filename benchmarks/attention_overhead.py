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
norm, the attention after it and the residual sum (``study.attention.bn_attention`` with
``residual``) forward and backward on random inputs of that block's shape, summed over the
blocks, against the batch norms and sums alone (kind ``none``) - the attention's own cost in
ms per step, free of the convolutions' noise.

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
from study.config import Recipe
from study.costs import count_macs, count_params
from study.models import build_model, list_backbones
from study.trainer import build_optimizer

#: --lean: which settings of study.attention.set_lean to time; "both": off and the default
LEAN_MODES = {"auto": ("auto",), "on": (True,), "off": (False,), "both": (False, "auto")}
LEAN_NAMES = {False: "off", True: "on", "auto": "auto"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: "wall": elapsed time; "cpu": this process's CPU time (with --threads 1, robust to other
#: processes competing for the cores: time spent waiting for a core is not counted)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool, lean: bool, clock=time.perf_counter,
          optimizer: torch.optim.Optimizer | None = None) -> float:
    """One training step in ms: zero the gradients, forward, loss, backward and - with
    ``optimizer`` - the optimizer's step (the trainer's SGD with Nesterov momentum)."""
    _sync(device)
    t0 = clock()
    model.zero_grad(set_to_none=True)
    with lean_attention(lean), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
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
        self.residuals = [torch.randn_like(c) for c in self.inputs]

    def step(self) -> None:
        for (bn, att), c0, r0 in zip(self.pairs, self.inputs, self.residuals):
            c, r = c0.detach().requires_grad_(), r0.detach().requires_grad_()
            out = bn_attention(bn, att, c, residual=r)  # the block's tail: attention(bn(c)) + identity
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


#: --compile: which forms of every model to time; "both": eager and compiled, interleaved
COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def run(args: argparse.Namespace, on_group=None) -> list[dict]:
    """The timed rows, one per backbone, resolution, kind, lean path and form (eager or
    compiled); ``on_group`` gets each backbone and resolution's rows as they are measured.
    ``args`` as :func:`main` parses them (``compile`` and ``optimizer`` may be left out:
    eager, no optimizer step)."""
    device = torch.device(args.device)
    kinds = args.kinds or list_attention()
    if "none" not in kinds:
        kinds = ["none", *kinds]
    leans = LEAN_MODES[args.lean]
    forms = COMPILE_MODES[getattr(args, "compile", "off")]
    with_optimizer = getattr(args, "optimizer", False)
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
                model = build_model(arch, res)  # map-dependent parameters fit the maps (FcaNet's filters)
                macs = count_macs(model, res)
                model = model.to(device).train()
                if args.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                models[kind] = (model, count_params(model), macs)
            # the compiled form of a model shares its parameters; each form has its own optimizer
            nets = {(kind, False): m[0] for kind, m in models.items()}
            if True in forms and not args.isolate:
                # every model is a recompilation of the same forward: start each network's set afresh, and let dynamo
                # keep one compiled form per model and lean setting (past its limit of 8 it would run the rest eager)
                torch._dynamo.reset()
                torch._dynamo.config.recompile_limit = max(8, 2 * len(models) * len(leans))
                nets.update({(kind, True): torch.compile(m[0]) for kind, m in models.items()})
            optimizers = {key: build_optimizer(net, Recipe(lr=1e-3)) if with_optimizer else None for key, net in nets.items()}
            configs = [(k, lean, c) for c in forms for k in models for lean in (leans if k != "none" else leans[-1:])]
            x = torch.randn(batch, 3, res, res, device=device)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, args.num_classes, (batch,), device=device)
            if args.isolate:
                parts = {kind: _Isolated(m[0], res, batch, device, args.channels_last) for kind, m in models.items()}

                def one(kind: str, lean: bool, compiled: bool, parts: dict = parts) -> float:
                    return _isolated_step(parts[kind], device, args.amp, lean, clock)
            else:

                def one(kind: str, lean: bool, compiled: bool, x: torch.Tensor = x, y: torch.Tensor = y, nets: dict = nets,
                        optimizers: dict = optimizers) -> float:
                    return _step(nets[(kind, compiled)], x, y, device, args.amp, lean, clock, optimizers[(kind, compiled)])

            t_warm = time.perf_counter()
            for kind, lean, compiled in configs:
                for _ in range(args.warmup + (2 if compiled else 0)):  # compiled: the first steps compile (forward, backward)
                    one(kind, lean, compiled)
            if True in forms:
                print(f"# {backbone} {res} px: warm-up (compiling {len(models)} models) {time.perf_counter() - t_warm:.0f} s", flush=True)
            times: dict[tuple, list[float]] = {c: [] for c in configs}
            for r in range(args.repeats):
                order = configs[r % len(configs):] + configs[: r % len(configs)]
                for config in order:
                    times[config].append(one(*config))
            _, base_params, base_macs = models["none"]
            group = []
            for kind, lean, compiled in configs:
                base_times = times[("none", leans[-1], compiled)]
                mine = times[(kind, lean, compiled)]
                ratios = [t / b for t, b in zip(mine, base_times)]
                extra = [t - b for t, b in zip(mine, base_times)]
                _, params, macs = models[kind]
                (eq1, eq3), (rq1, rq3) = _quartiles(extra), _quartiles(ratios)
                group.append(
                    {
                        "backbone": backbone,
                        "res": res,
                        "batch": batch,
                        "kind": kind,
                        "lean": lean,
                        "compiled": compiled,
                        "params": params,
                        "macs": macs,
                        "ms": statistics.median(mine),
                        "ms_q1": _quartiles(mine)[0],
                        "ms_q3": _quartiles(mine)[1],
                        "ms_min": min(mine),
                        "min_ratio": min(mine) / min(base_times),
                        "time_ratio": statistics.median(ratios),
                        "extra_ms": statistics.median(extra),
                        "extra_ms_q1": eq1,
                        "extra_ms_q3": eq3,
                        "time_ratio_q1": rq1,
                        "time_ratio_q3": rq3,
                        "params_ratio": params / base_params,
                        "macs_ratio": macs / base_macs,
                    }
                )
            rows += group
            del models, nets, optimizers
            if on_group is not None:
                on_group(group)
    return rows


def eca_vs_se(rows: list[dict]) -> list[dict]:
    """Per backbone, resolution and path: ECA's and SE's overhead (x time - 1) and their ratio."""
    out = []
    def key_of(r: dict) -> tuple:
        return r["backbone"], r["res"], r["batch"], r["lean"], r.get("compiled", False)

    for key in dict.fromkeys(key_of(r) for r in rows if r["kind"] != "none"):
        pick = {r["kind"]: r for r in rows if key_of(r) == key}
        if "eca" in pick and "se" in pick:
            e, s_ = pick["eca"], pick["se"]
            eca, se = e["time_ratio"] - 1, s_["time_ratio"] - 1
            out.append(
                {"backbone": key[0], "res": key[1], "batch": key[2], "lean": key[3], "compiled": key[4], "eca": eca, "se": se,
                 "eca_ms": e["extra_ms"], "se_ms": s_["extra_ms"], "eca_ms_iqr": (e["extra_ms_q1"], e["extra_ms_q3"]),
                 "se_ms_iqr": (s_["extra_ms_q1"], s_["extra_ms_q3"]),
                 "ratio": e["extra_ms"] / s_["extra_ms"] if s_["extra_ms"] > 0 else float("nan")}
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], choices=list_backbones())
    parser.add_argument("--kinds", nargs="+", choices=list_attention(),
                        help="attention kinds (default: all registered; none is always included)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--res", type=int, nargs="+", default=[64], help="input resolutions (default 64; e.g. 32 64 224)")
    parser.add_argument("--batch", type=int, default=8, help="batch size below 128 px (default 8)")
    parser.add_argument("--batch-large", type=int, default=2, help="batch size at 128 px and above (default 2)")
    parser.add_argument("--lean", choices=list(LEAN_MODES), default="auto",
                        help="fused and memory-lean channel-attention paths: auto (the default setting), on, off, or "
                             "both (off and auto, interleaved)")
    parser.add_argument("--stem", default="imagenet", choices=["imagenet", "lowres"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, each running every kind once (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing (default 2)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--isolate", action="store_true", help="time only every block's last BN + attention, against the BNs alone")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall (default) or cpu: this process's CPU time, for a shared machine with --threads 1")
    parser.add_argument("--compile", choices=list(COMPILE_MODES), default="off",
                        help="time the models eager (off, the default), under torch.compile (on: the recipe's "
                             "`compile`), or both, interleaved")
    parser.add_argument("--optimizer", action="store_true",
                        help="include the optimizer's step (the trainer's SGD, Nesterov momentum, weight decay): a whole training step")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--result", action="store_true",
                        help="write benchmarks/results/attention_overhead.json (ECA's step time over none, eager and "
                             "compiled, against the 5 %% goal)")
    parser.add_argument("--gate", action="store_true",
                        help="time only ECA's channel conv forms (forward and backward) per stage, then stop")
    args = parser.parse_args(argv)
    if args.gate:
        if args.threads:
            torch.set_num_threads(args.threads)
        for backbone in args.backbones:
            for r in gate_forms(backbone, args.res[0], args.batch, args.repeats):
                print(f"{r['backbone']:<10} C {r['channels']:>5} k {r['k']} batch {r['batch']}: "
                      + ", ".join(f"{name} {us:.0f} us" for name, us in r["us"].items()), flush=True)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu: only for --device cpu")
    if args.repeats < 1 or args.batch < 1 or args.batch_large < 1 or min(args.res) < 8:
        parser.error("--repeats, --batch and --batch-large must be >= 1 and --res >= 8")

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu
    print(
        f"# attention overhead: forward+backward{'+optimizer step' if args.optimizer else ''}, {args.device} ({name}), "
        f"torch {torch.__version__}, {'/'.join(map(str, args.res))} px, batch {args.batch} (below 128 px) / {args.batch_large}, "
        f"stem {args.stem}, width {args.width:g}, "
        f"{'bf16 autocast' if args.amp else 'fp32'}{', channels_last' if args.channels_last else ''}, lean paths {args.lean}, "
        f"{args.repeats} interleaved rounds (+{args.warmup} warm-up), {args.clock} clock{', BN + attention only' if args.isolate else ''}, "
        f"compile {args.compile}"
    )
    t0 = time.time()
    print(
        f"{'backbone':<10} {'res':>4} {'form':<8} {'attention':<15} {'lean':<5} {'params':>11} {'x params':>9} {'MACs':>14} {'x MACs':>7} "
        f"{'ms/step':>9} {'x time':>7} {'(IQR)':>13} {'min ms':>8} {'x min':>6}",
        flush=True,
    )

    def show(rows: list[dict]) -> None:
        for r in rows:
            print(
                f"{r['backbone']:<10} {r['res']:>4} {'compiled' if r['compiled'] else 'eager':<8} {r['kind']:<15} "
                f"{LEAN_NAMES[r['lean']]:<5} {r['params']:>11,} {r['params_ratio']:>9.4f} "
                f"{r['macs']:>14,} {r['macs_ratio']:>7.4f} {r['ms']:>9.1f} {r['time_ratio']:>7.3f} "
                f"({r['time_ratio_q1']:.3f}-{r['time_ratio_q3']:.3f}) "
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
        print(f"{'backbone':<10} {'res':>4} {'batch':>5} {'form':<8} {'lean':<5} {'eca ms':>24} {'se ms':>24} {'eca':>7} {'se':>7} "
              f"{'eca/se':>7}")
        for r in side:
            print(
                f"{r['backbone']:<10} {r['res']:>4} {r['batch']:>5} {'compiled' if r['compiled'] else 'eager':<8} "
                f"{LEAN_NAMES[r['lean']]:<5} "
                f"{r['eca_ms']:>8.2f} ({r['eca_ms_iqr'][0]:6.2f}..{r['eca_ms_iqr'][1]:6.2f}) "
                f"{r['se_ms']:>8.2f} ({r['se_ms_iqr'][0]:6.2f}..{r['se_ms_iqr'][1]:6.2f}) "
                f"{r['eca']:>+7.3f} {r['se']:>+7.3f} {r['ratio']:>7.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "device_name": name, "rows": rows, "eca_vs_se": side}, indent=2))
    if args.result:
        isolated = []
        if not args.isolate:  # ECA's own cost, free of the convolutions' noise: BN + attention + sum over BN + sum
            iso = argparse.Namespace(**{**vars(args), "isolate": True, "compile": "off", "optimizer": False, "lean": "auto",
                                        "repeats": max(15, args.repeats)})
            isolated = run(iso)
            for r in isolated:
                if r["kind"] != "none":
                    print(f"# isolated {r['backbone']} {r['res']} px {r['kind']}: BN + attention + sum {r['extra_ms']:.2f} ms over BN + "
                          f"sum "
                          f"(IQR {r['extra_ms_q1']:.2f}..{r['extra_ms_q3']:.2f})", flush=True)
        _write_result(args, name, rows, isolated)
    return 0


def gate_forms(backbone: str, res: int, batch: int, repeats: int, clock=time.process_time) -> list[dict]:
    """ECA's channel conv forward and backward on every stage's pooled (batch, C) vector with
    that stage's k: its two forms (the module picks one by size) and ``F.conv1d``,
    median us per call over ``repeats`` rounds of 20 calls."""
    from study.attention import channel_conv

    forms = {"shifted sums": lambda y, w: channel_conv(y, w, "shifted"),
             "unfolded windows": lambda y, w: channel_conv(y, w, "windows"),
             "F.conv1d": lambda y, w: F.conv1d(y[:, None], w, padding=(w.shape[-1] - 1) // 2)[:, 0]}
    model = build_model(uniform_arch(backbone, "eca", res))
    rows = []
    for stage in model.stages:
        att = stage[0].attention
        c, k = att.channels, att.k
        y = torch.randn(batch, c, requires_grad=True)
        w = att.conv.weight.detach().clone().requires_grad_()
        g = torch.randn(batch, c)
        times = {}
        for name, f in forms.items():
            f(y, w).backward(g)
            ts = []
            for _ in range(repeats):
                t0 = clock()
                for _ in range(20):
                    f(y, w).backward(g)
                ts.append((clock() - t0) / 20 * 1e6)
            times[name] = statistics.median(ts)
        rows.append({"backbone": backbone, "channels": c, "k": k, "batch": batch, "us": times})
    return rows


#: the goal: ECA's training step at most this much slower than none's
GOAL = 0.05


def eca_goal(rows: list[dict]) -> list[dict]:
    """Per backbone, resolution, form and lean path: ECA's step time over none (median of the
    per-round ratios - 1, with its IQR) and whether it meets :data:`GOAL`."""
    out = []
    for r in rows:
        if r["kind"] == "eca":
            out.append({"backbone": r["backbone"], "res": r["res"], "batch": r["batch"], "compiled": r["compiled"], "lean": r["lean"],
                        "overhead": r["time_ratio"] - 1, "iqr": (r["time_ratio_q1"] - 1, r["time_ratio_q3"] - 1),
                        "none_ms": next(b["ms"] for b in rows if b["kind"] == "none" and b["compiled"] == r["compiled"]
                                        and (b["backbone"], b["res"]) == (r["backbone"], r["res"])),
                        "eca_ms": r["ms"], "met": r["time_ratio"] - 1 <= GOAL})
    return out


def own_cost(rows: list[dict], isolated: list[dict]) -> list[dict]:
    """Per backbone, resolution and kind: the isolated extra ms of BN + attention + residual sum
    (``--isolate``) as a fraction of none's median eager training step - the attention's own
    share of the step, robust to the noise other processes add to whole steps."""
    out = []
    for r in isolated:
        if r["kind"] == "none":
            continue
        base = [b["ms"] for b in rows
                if b["kind"] == "none" and not b["compiled"] and (b["backbone"], b["res"]) == (r["backbone"], r["res"])]
        if base:
            out.append({"backbone": r["backbone"], "res": r["res"], "kind": r["kind"], "extra_ms": r["extra_ms"],
                        "extra_ms_iqr": (r["extra_ms_q1"], r["extra_ms_q3"]), "none_step_ms": base[0],
                        "share": r["extra_ms"] / base[0], "share_iqr": (r["extra_ms_q1"] / base[0], r["extra_ms_q3"] / base[0])})
    return out


def _write_result(args: argparse.Namespace, name: str, rows: list[dict], isolated: list[dict] = ()) -> None:
    from _results import write_result

    goals = eca_goal(rows)
    own = own_cost(rows, list(isolated))
    headline = {}
    for o in own:
        headline[f"{o['backbone']} {o['res']}px eager {o['kind'].upper()} own cost (isolated) / none's step"] = (
            f"{100 * o['share']:.1f} % (IQR {100 * o['share_iqr'][0]:.1f} to {100 * o['share_iqr'][1]:.1f}; {o['extra_ms']:.1f} ms "
            f"of {o['none_step_ms']:.0f})")
    for g in goals:
        lab = f"{g['backbone']} {g['res']}px {'compiled' if g['compiled'] else 'eager'} ECA over none"
        headline[lab] = f"{100 * g['overhead']:+.1f} % (IQR {100 * g['iqr'][0]:+.1f} to {100 * g['iqr'][1]:+.1f})"
    for r in rows:
        if r["kind"] not in ("none", "eca") and r["lean"] == "auto":  # every other kind measured, beside ECA's goal
            lab = f"{r['backbone']} {r['res']}px {'compiled' if r['compiled'] else 'eager'} {r['kind'].upper()} over none"
            q1, q3 = 100 * (r["time_ratio_q1"] - 1), 100 * (r["time_ratio_q3"] - 1)
            headline[lab] = f"{100 * (r['time_ratio'] - 1):+.1f} % (IQR {q1:+.1f} to {q3:+.1f})"
    path = write_result(
        "attention_overhead",
        goal=f"ECA's training step (forward, backward, optimizer) at most {100 * GOAL:.0f} % over none's, eager and under torch.compile",
        headline=headline,
        detail={"device": name, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "result")},
                "eca_goal": goals, "own_cost": own, "rows": rows, "isolated": list(isolated)},
    )
    print(f"# result: {path}")


if __name__ == "__main__":
    sys.exit(main())
