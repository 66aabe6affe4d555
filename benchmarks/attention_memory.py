"""Activation memory of each channel attention, relative to no attention.

Every channel-attention block multiplies the C x H x W feature map by a broadcast C-vector,
and autograd keeps what the backward pass needs; this counts it. For each backbone and
attention kind (the same kind in every stage, map-dependent parameters fitted per stage),
one training-mode forward pass runs under ``torch.autograd.graph.saved_tensors_hooks`` and
the bytes of every distinct storage saved for backward are summed (parameters excluded):
an exact figure, on any device. On a GPU the peak allocated memory of a forward+backward
step is printed alongside. Figures are ratios against ``none`` measured in the same run, and
the attention's overhead ``saved(kind) - saved(none)`` in MiB, with the memory-lean path off
and at its default setting (:func:`study.attention.set_lean`).

    python benchmarks/attention_memory.py                    # ResNet-18 and ResNet-50, 64 px, batch 32, CPU
    python benchmarks/attention_memory.py --device cuda --kinds eca se
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _attention_bench import uniform_arch
from _results import write_result

from study.attention import lean_attention, list_attention
from study.models import build_model, list_backbones

MIB = 2.0**20


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward pass of
    ``model`` on ``x`` (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and ptr != 0:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def peak_step_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak allocated CUDA memory of one forward+backward step, above what was allocated
    before it (parameters, gradients of the previous step released)."""
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    before = torch.cuda.memory_allocated(x.device)
    F.cross_entropy(model(x), y).backward()
    torch.cuda.synchronize(x.device)
    peak = torch.cuda.max_memory_allocated(x.device) - before
    model.zero_grad(set_to_none=True)
    return peak


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    kinds = args.kinds or list_attention()
    if "none" not in kinds:
        kinds = ["none", *kinds]
    rows = []
    for backbone in args.backbones:
        torch.manual_seed(0)
        x = torch.randn(args.batch, 3, args.res, args.res, device=device)
        y = torch.randint(0, args.num_classes, (args.batch,), device=device)
        for kind in kinds:
            try:
                arch = uniform_arch(backbone, kind, args.res, stem=args.stem, width=args.width, num_classes=args.num_classes)
            except ValueError as exc:
                print(f"# {backbone} {kind}: skipped ({exc})", flush=True)
                continue
            model = build_model(arch, args.res).to(device).train()  # map-dependent parameters fit the maps (FcaNet's filters)
            for lean in (False, "auto"):
                with lean_attention(lean):
                    row = {"backbone": backbone, "kind": kind, "lean": lean, "saved": saved_bytes(model, x)}
                    if device.type == "cuda":
                        peak_step_bytes(model, x, y)  # warm-up (workspaces, allocator)
                        row["peak"] = peak_step_bytes(model, x, y)
                rows.append(row)
            del model
    for backbone in args.backbones:
        for lean in (False, "auto"):
            group = [r for r in rows if r["backbone"] == backbone and r["lean"] == lean]
            base = next(r for r in group if r["kind"] == "none")
            for r in group:
                r["saved_ratio"] = r["saved"] / base["saved"]
                r["saved_overhead"] = r["saved"] - base["saved"]
                if "peak" in r:
                    r["peak_ratio"] = r["peak"] / base["peak"]
                    r["peak_overhead"] = r["peak"] - base["peak"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], choices=list_backbones())
    parser.add_argument("--kinds", nargs="+", choices=list_attention(),
                        help="attention kinds (default: all registered; none is always included)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda adds the peak allocated memory of a step)")
    parser.add_argument("--res", type=int, default=64, help="input resolution (default 64)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--stem", default="imagenet", choices=["imagenet", "lowres"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.batch < 1 or args.res < 8:
        parser.error("--batch must be >= 1 and --res >= 8")

    t0 = time.time()
    print(
        f"# saved-for-backward activation memory: {args.device}, torch {torch.__version__}, {args.res} px, batch {args.batch}, "
        f"stem {args.stem}, width {args.width:g}, fp32"
    )
    rows = run(args)
    cuda = args.device.startswith("cuda")
    head = (f"{'backbone':<10} {'attention':<15} {'saved MiB':>10} {'x none':>7} {'+MiB':>8} | "
            f"{'lean MiB':>9} {'x none':>7} {'+MiB':>8} {'cut':>6}")
    print(head + (f" | {'peak MiB':>9} {'x none':>7} {'lean peak':>9} {'x none':>7}" if cuda else ""))
    for r in (r for r in rows if not r["lean"]):
        lean = next((q for q in rows if q["lean"] == "auto" and q["backbone"] == r["backbone"] and q["kind"] == r["kind"]), None)
        cut = r["saved_overhead"] / lean["saved_overhead"] if lean and lean["saved_overhead"] > 0 else float("inf")
        line = (
            f"{r['backbone']:<10} {r['kind']:<15} {r['saved'] / MIB:>10.1f} {r['saved_ratio']:>7.3f} {r['saved_overhead'] / MIB:>8.1f} | "
            f"{lean['saved'] / MIB:>9.1f} {lean['saved_ratio']:>7.3f} {lean['saved_overhead'] / MIB:>8.1f} "
            + (f"{cut:>5.1f}x" if r["kind"] != "none" and r["saved_overhead"] > 0 else f"{'':>6}")
        )
        if cuda:
            line += f" | {r['peak'] / MIB:>9.1f} {r['peak_ratio']:>7.3f} {lean['peak'] / MIB:>9.1f} {lean['peak_ratio']:>7.3f}"
        print(line, flush=True)
    print(
        "# saved: distinct storages saved for backward in one forward (parameters excluded); x none: ratio to none in the same run; "
        f"+MiB: overhead over none; lean: the lean path at its default setting (auto); cut: overhead without / with it; "
        f"{time.time() - t0:.0f} s in all"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    headline = {}
    for b in args.backbones:
        plain = {r["kind"]: r for r in rows if r["backbone"] == b and not r["lean"]}
        lean = {r["kind"]: r for r in rows if r["backbone"] == b and r["lean"] == "auto"}
        for kind in (k for k in plain if k != "none"):  # every kind measured
            headline[f"{b} {kind} over none, plain -> default"] = (
                f"+{plain[kind]['saved_overhead'] / MIB:.1f} MiB (x{plain[kind]['saved_ratio']:.3f}) -> "
                f"+{lean[kind]['saved_overhead'] / MIB:.1f} MiB (x{lean[kind]['saved_ratio']:.3f})")
        ranked = sorted((r["saved_ratio"], k) for k, r in lean.items() if k != "none")
        if ranked:
            least, most = ranked[0], ranked[-1]
            headline[f"{b} x none, default paths: least / most"] = f"{least[1]} {least[0]:.2f} / {most[1]} {most[0]:.2f}"
    write_result("attention_memory", goal="ECA's activation memory close to none's (bytes saved for backward, exact)",
                 headline=headline, detail={"settings": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
