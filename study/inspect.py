"""``python -m study.inspect``: per-stage attention, parameters and MACs of an architecture.

Examples::

    python -m study.inspect                                  # ResNet-50, ECA (gamma=2, b=1) everywhere, 224 px
    python -m study.inspect --backbone resnet18 --attention se:r=8 --stage 3=none
    python -m study.inspect --backbone resnet50 --attention eca --released-k
    python -m study.inspect --backbone mobilenetv2 --attention none --units paper
    python -m study.inspect --config trial.json --json

An attention is written ``KIND`` or ``KIND:NAME=VALUE,NAME=VALUE`` (``eca:k=3``,
``eca:gamma=2,b=1,rule=timm``, ``se:r=16,bias=false``). Stage indices count from 0.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from study import record
from study.cli import ArgumentParser, UsageError, as_usage_error, run_cli
from study.config import PSI_INPUTS, ArchSpec, AttentionSpec, ConfigError, TrialConfig

__all__ = ["main", "build_parser", "parse_attention", "inspect_arch", "UNITS"]

#: unit systems: SI (M = 1e6, G = 1e9) and the ECA paper's (M = 2^20, G = 2^30)
UNITS = {"si": (1e6, 1e9), "paper": (2.0**20, 2.0**30)}

DEFAULT_ATTENTION = "eca:gamma=2,b=1"


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_attention(text: str) -> AttentionSpec:
    """``"eca:gamma=2,b=1"`` -> ``AttentionSpec.of("eca", gamma=2, b=1)`` (kind and
    parameters validated later, against the stage's channels)."""
    kind, _, rest = text.strip().partition(":")
    if not kind:
        raise UsageError(f"attention {text!r}: expected KIND or KIND:NAME=VALUE,... (e.g. eca:k=3)")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise UsageError(f"attention {text!r}: parameter {item!r} is not NAME=VALUE")
        if name.strip() in params:
            raise UsageError(f"attention {text!r}: parameter {name.strip()!r} given twice")
        if name.strip() == "kind":
            raise UsageError(f"attention {text!r}: parameter 'kind' is not allowed (the kind goes before the colon)")
        params[name.strip()] = _value(value.strip())
    return AttentionSpec.of(kind, **params)


def _parse_stage(text: str) -> tuple[int, AttentionSpec]:
    index, eq, spec = text.partition("=")
    try:
        i = int(index)
    except ValueError:
        i = -1
    if not eq or i < 0:
        raise UsageError(f"--stage {text!r}: expected INDEX=ATTENTION with INDEX >= 0 (e.g. 2=se:r=8)")
    return i, parse_attention(spec)


def _load_arch(path: str) -> ArchSpec:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    try:
        if isinstance(data, dict) and "arch" in data:
            return TrialConfig.from_dict(data).arch
        return ArchSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def inspect_arch(arch: ArchSpec, resolution: int = 224, *, latency: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Per-stage description and totals of ``arch`` as a JSON-ready dict, for ``arch`` built
    at ``resolution`` px (parameters that depend on the feature map, left at their default,
    fit its maps: :func:`study.models.build_model`)."""
    from study.attention import AttentionModule
    from study.costs import count_macs, count_params, measure_costs
    from study.models import build_model

    model = build_model(arch, resolution)
    costs = measure_costs(model, resolution, latency=latency, device=device)
    stages = []
    for info, stage in zip(model.stage_info, model.stages):
        attn = sum(p.numel() for m in stage.modules() if isinstance(m, AttentionModule) for p in m.parameters())
        stages.append({**info.to_dict(), "attention_params": attn})
    baseline = dataclasses.replace(arch, stages=(AttentionSpec("none"),) * len(arch.stages))
    base_model = build_model(baseline, resolution)
    attention_macs = costs.macs - count_macs(base_model, resolution)
    return {
        "arch": arch.to_dict(),
        "resolution": resolution,
        "stages": stages,
        "costs": costs.to_dict(),
        "baseline_params": count_params(base_model),
        "attention_macs": attention_macs,
    }


def _fmt_params(params: dict[str, Any]) -> str:
    if "gamma" in params:
        return f"k={params['k']} (psi: gamma={params['gamma']}, b={params['b']}, rule={params['rule']})"
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def _table(report: dict[str, Any], units: str) -> str:
    mega, giga = UNITS[units]
    arch, costs = report["arch"], report["costs"]
    fixed = (*record.STAGE_KEYS, "attention_params")
    rows = [("stage", "C", "planes", "blocks", "attention", "parameters", "attn params")]
    for s in report["stages"]:
        params = {k: v for k, v in s.items() if k not in fixed}
        rows.append((str(s["stage"]), str(s["channels"]), str(s["planes"]), str(s["blocks"]), s["kind"], _fmt_params(params),
                     f"{s['attention_params']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 1, 2, 3, 6}
    lines = [
        f"{arch['backbone']}  stem={arch['stem']}  width={arch['width']:g}  num_classes={arch['num_classes']}  "
        f"psi_input={arch['psi_input']}  resolution={report['resolution']} px  units={units} (M={'2^20' if units == 'paper' else '10^6'})"
    ]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    p, ap = costs["params"], costs["attention_params"]
    m, am = costs["macs"], report["attention_macs"]
    lines.append(f"params     {p:>15,}  = {p / mega:.2f} M   attention {ap:,} ({100 * ap / p:.3f}%)")
    lines.append(f"MACs       {m:>15,}  = {m / giga:.3f} G  attention {am:,} ({100 * am / m:.3f}%)  at {report['resolution']} px, batch 1")
    if report["resolution"] != 224:
        lines.append(f"MACs@224   {costs['macs_224']:>15,}  = {costs['macs_224'] / giga:.3f} G")
    if costs["latency_ms"] is not None:
        lines.append(f"latency    {costs['latency_ms']:.2f} ms (median forward, batch 1)")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    """The flags of ``python -m study.inspect``."""
    from study.attention import ATTENTION_PARAMS
    from study.models import STEMS, list_backbones

    def fmt(params: dict[str, Any]) -> str:
        items = [f"{n}={v}" for n, v in params.items() if n != "k"]
        return ("k=ODD | " if "k" in params else "") + ", ".join(items)

    kinds = "; ".join(f"{k}({fmt(dict(p))})" for k, p in sorted(ATTENTION_PARAMS.items()))
    parser = ArgumentParser(
        prog="python -m study.inspect",
        description="Print per-stage channels C, attention kind and its parameters (ECA's resolved k), "
        "the attention's own parameter count, and the totals (params, MACs, attention's share).",
        epilog="ATTENTION is KIND or KIND:NAME=VALUE,... e.g. eca:k=3, eca:gamma=2,b=1,rule=timm, se:r=16,bias=false. "
        f"Kinds and their parameter defaults: {kinds}. Stage indices count from 0. "
        "MACs are FLOPs counted by torch.utils.flop_counter / 2, batch 1; --units paper shows M = 2^20 and G = 2^30 "
        "(the ECA paper's parameter column).",
    )
    parser.add_argument("--backbone", choices=list_backbones(), help="backbone (default resnet50)")
    parser.add_argument("--attention", metavar="ATTENTION", help=f"attention in every stage (default {DEFAULT_ATTENTION})")
    parser.add_argument("--stage", metavar="I=ATTENTION", action="append", default=[],
                        help="override stage I (from 0), e.g. --stage 2=se:r=8; repeatable")
    parser.add_argument("--released-k", action="store_true", help="ECA with the authors' released per-stage k (study.attention.released_k)")
    parser.add_argument("--stem", choices=STEMS, help="stem (default imagenet)")
    parser.add_argument("--width", type=float, help="channel width multiplier in [0.25, 2.0] (default 1.0)")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default 1000)")
    parser.add_argument("--psi-input", choices=PSI_INPUTS, help="which C psi(C) sees for ECA given by gamma/b (default channels)")
    parser.add_argument("--config", metavar="FILE.json",
                        help="a TrialConfig or a bare ArchSpec JSON file (instead of the flags above; --stage still applies)")
    parser.add_argument("--res", type=int, default=224, help="input resolution in px for MACs and latency (default 224)")
    parser.add_argument("--units", choices=sorted(UNITS), default="si",
                        help="si: M=10^6, G=10^9 (default); paper: M=2^20, G=2^30 as in the ECA paper's tables")
    parser.add_argument("--latency", action="store_true", help="also measure the median forward latency (batch 1)")
    parser.add_argument("--device", default="cpu", help="device for --latency (default cpu)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    return parser


def _arch_from_args(args: Namespace) -> ArchSpec:
    from study.models import num_stages, released_arch

    if args.config:
        clash = [f for f in ("backbone", "attention", "stem", "width", "num_classes", "psi_input") if getattr(args, f) is not None]
        if clash or args.released_k:
            flag = "--" + (clash[0].replace("_", "-") if clash else "released-k")
            raise UsageError(f"{flag} cannot be combined with --config (edit the file or use --stage)")
        arch = _load_arch(args.config)
    else:
        kw = {k: getattr(args, k) for k in ("stem", "width", "num_classes", "psi_input") if getattr(args, k) is not None}
        backbone = args.backbone or "resnet50"
        if args.released_k:
            if args.attention is not None:
                raise UsageError("--released-k cannot be combined with --attention (it sets ECA with the released k)")
            arch = released_arch(backbone, **kw)
        else:
            arch = ArchSpec.uniform(backbone, parse_attention(args.attention or DEFAULT_ATTENTION), **kw)
    if args.stage:
        stages = list(arch.stages)
        n = num_stages(arch.backbone)
        for text in args.stage:
            i, spec = _parse_stage(text)
            if i >= n:
                raise UsageError(f"--stage {text!r}: backbone {arch.backbone!r} has stages 0..{n - 1}")
            stages[i] = spec
        arch = arch.with_stages(stages)
    return arch


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 8 <= args.res <= 4096:
        raise UsageError(f"--res: must be in [8, 4096], got {args.res}")
    arch = _arch_from_args(args)
    if args.latency:  # an unknown or missing device is the user's, not a bug
        from study.costs import resolve_device

        try:
            resolve_device(args.device)
        except ValueError as exc:
            raise as_usage_error(exc, build_parser()) from None
    report = inspect_arch(arch, args.res, latency=args.latency, device=args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report, args.units))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:], prog="python -m study.inspect")
