"""``python -m study.data``: prepare a cache, show a cache's manifest, list sources and presets.

    python -m study.data prepare --source imagenet100 --root /data/imagenet --res 64 --out caches/in100-64
    python -m study.data prepare --source imagefolder --root /data/imagenette2 --res 64 --out caches/nette-64
    python -m study.data prepare --source imagenet-downsampled --root /data/Imagenet32 \
        --label-map map_clsloc.txt --res 32 --out caches/in100-32
    python -m study.data info caches/in100-64 [--verify] [--json]
    python -m study.data verify caches/in100-64
    python -m study.data list

``info`` and every reader of a cache check its arrays against the manifest first (header,
dtype, shape, byte size: milliseconds) and refuse a damaged or incomplete cache in one line
naming the file and the ``prepare`` command that remakes it; ``verify`` (or ``info --verify``)
also recomputes every array's sha256 (reads every byte). Exit status 0, or 2 for a missing,
damaged or altered cache.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from study.cli import ArgumentParser, UsageError, as_usage_error, run_cli
from study.data._check import check_cache, remake_command, verify_cache
from study.data._registry import list_sources
from study.proxies import PRESETS

PROG = "python -m study.data"
#: :func:`study.data.prepare` parameters not said as the option of the same name
FLAG_EXCEPTIONS = {"resolution": "--res"}


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--val-split: expected a fraction in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise UsageError(f"--val-split: expected a fraction in (0, 1), got {text!r}")
    return value


def build_parser() -> ArgumentParser:
    """The flags of ``python -m study.data``."""
    parser = ArgumentParser(prog=PROG, description="Proxy data: decode image sources once into a cache; inspect caches.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p = sub.add_parser("prepare", help="decode a source once into a memory-mappable cache")
    p.add_argument("--source", required=True, choices=list_sources(generated=False), help="file source")
    p.add_argument("--root", required=True, metavar="PATH", help="the source's folder")
    p.add_argument("--res", required=True, type=int, metavar="PX", help="square image side in pixels (shorter side resized, centre crop)")
    p.add_argument("--out", required=True, metavar="DIR", help="cache folder to create (written as OUT.partial, then renamed)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class list file, one wnid per line (imagenet100, imagenet-downsampled; default: the shipped ImageNet-100 list)")
    p.add_argument("--label-map", default=None, metavar="FILE", help="ILSVRC devkit map_clsloc.txt (imagenet-downsampled; required there)")
    p.add_argument("--val-split", default=None, type=str, metavar="FRACTION",
                   help="hold out this fraction of train/ as val, for trees without val/")
    p.add_argument("--seed", default=None, type=int, help="seed of --val-split (default 0)")
    p.add_argument("--workers", default=None, type=int, help="decoding threads (default: all CPUs)")
    p.add_argument("--chunk-size", default=256, type=int, help="images per decoding task and resumable step (default 256)")
    p.add_argument("--force", action="store_true", help="replace an existing cache at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    i = sub.add_parser("info", help="check a cache's arrays against its manifest (milliseconds) and print the manifest as a table")
    i.add_argument("dir", help="cache folder")
    i.add_argument("--verify", action="store_true", help="also recompute the arrays' sha256 and compare with the manifest")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    v = sub.add_parser("verify", help="check a cache's arrays against its manifest and recompute their sha256 (reads every byte)")
    v.add_argument("dir", help="cache folder")
    sub.add_parser("list", help="list sources and proxy presets")
    return parser


def _table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _short(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def info_table(manifest: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [
        ("source", manifest["source"]),
        ("root", manifest["root"]),
        ("resolution", f"{manifest['resolution']} px ({manifest.get('resize', '')})"),
        ("classes", f"{manifest['num_classes']}: {_short(manifest['classes'])}"),
    ]
    for split, c in manifest["counts"].items():
        per = [n for n in c["per_class"]]
        rows.append((f"{split} images", f"{c['images']} (per class min {min(per)}, max {max(per)})"))
    rows.append(("skipped", manifest["num_skipped"]))
    for s in manifest["skipped"][:10]:
        rows.append(("  " + s["split"], f"{s['path']}: {s['error']}"))
    if manifest["num_skipped"] > 10:
        rows.append(("  ...", f"{manifest['num_skipped'] - 10} more in manifest.json"))
    for k, v in manifest.get("options", {}).items():
        rows.append((f"option {k}", v))
    for k, v in manifest.get("notes", {}).items():
        rows.append((f"note {k}", _short([str(x) for x in v]) if isinstance(v, list) else v))
    rows += [("sha256", manifest["sha256"]), ("created", manifest["created"]),
             ("version", f"cache format {manifest['version']}, study {manifest.get('study_version')}")]
    return _table(rows)


def _inspect(folder: str, *, show: bool, as_json: bool, verify: bool) -> int:
    """``info`` (``show``: the manifest) and ``verify``: the arrays checked against the manifest,
    with ``verify`` their sha256 too; a cache that fails is one line, exit status 2."""
    try:  # a folder that is not a (whole) cache is the user's
        manifest = check_cache(folder)
    except ValueError as exc:
        raise as_usage_error(exc, build_parser(), FLAG_EXCEPTIONS) from None
    if show:
        print(json.dumps(manifest, indent=2) if as_json else info_table(manifest))
    if verify:
        bad = verify_cache(folder)
        if bad:
            raise UsageError(f"{folder}: {', '.join(bad)} differ{'s' if len(bad) == 1 else ''} from the manifest's sha256; "
                             f"remake the cache: {remake_command(folder, manifest)}")
        counts = ", ".join(f"{s} {c['images']}" for s, c in manifest["counts"].items())
        print(f"checksums: ok ({folder}: {len(manifest['checksums'])} arrays, {counts} images at {manifest['resolution']} px)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        from study.data import get_source, list_proxies, list_sources

        print("sources:")
        print(_table([(f"  {n}", get_source(n).description) for n in list_sources()]))
        print("presets:")
        print(_table([(f"  {n}", PRESETS[n][1]) for n in list_proxies()]))
        return 0
    if args.command in ("info", "verify"):
        return _inspect(args.dir, show=args.command == "info", as_json=getattr(args, "json", False),
                        verify=args.command == "verify" or args.verify)

    from study.data._prepare import PrepareWarning, prepare

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{PROG}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    options = {"classes": args.classes, "label_map": args.label_map,
               "val_split": _fraction(args.val_split) if args.val_split is not None else None, "seed": args.seed}
    with warnings.catch_warnings():
        warnings.simplefilter("always", PrepareWarning)
        try:
            manifest = prepare(args.source, args.root, args.out, resolution=args.res, workers=args.workers,
                               chunk_size=args.chunk_size, progress=not args.no_progress, force=args.force, **options)
        except KeyboardInterrupt:
            print(f"{PROG}: {args.out}.partial keeps the finished chunks; run the same command again to finish", file=sys.stderr)
            raise
        except (ValueError, OSError) as exc:  # the library names parameters (as data); say them as flags
            raise as_usage_error(exc, build_parser(), FLAG_EXCEPTIONS) from None
    counts = ", ".join(f"{s} {c['images']}" for s, c in manifest["counts"].items())
    print(f"{args.out}: {manifest['source']} at {manifest['resolution']} px, {manifest['num_classes']} classes, {counts} images, "
          f"{manifest['num_skipped']} skipped")
    return 0


if __name__ == "__main__":
    run_cli(main, prog=PROG)
