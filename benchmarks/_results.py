"""Where a benchmark's figures live: one JSON file per benchmark under ``benchmarks/results/``.

Every benchmark ends with :func:`write_result`, so a figure in the docs is the figure its
command printed: ``docs/benchmarks.md`` is generated from these files
(``python benchmarks/docs_table.py``), never typed. A result records the command line that
produced it, when, on which machine, the headline figures (the ones the docs table shows,
each a short label -> number or short string) and whatever detail the benchmark keeps.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "write_result", "read_results", "machine"]

#: the folder of the committed results, one ``<benchmark>.json`` each
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where the figures were measured: CPU count, platform, torch and its device, and the
    load average (1 min) when the benchmark wrote its result."""
    out: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):  # on a shared machine the load says what a timing can stand for
        out["load_average"] = round(os.getloadavg()[0], 1)
    try:
        import torch

        out["torch"] = torch.__version__
        out["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # a benchmark that does not need torch still records the rest
        pass
    return out


def write_result(name: str, *, goal: str, headline: dict[str, Any], detail: Any = None, folder: Path | str | None = None,
                 argv: list[str] | None = None) -> Path:
    """Write ``<folder>/<name>.json`` (default folder :data:`RESULTS`) and return its path.

    ``goal`` says in a line what the figures are held against (e.g. "ECA <= 5 % over none");
    ``headline`` holds the figures the docs table shows; ``detail`` anything else worth keeping
    (rows, per-seed figures). The command is the script and its arguments as run.
    """
    folder = Path(folder) if folder is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    args = sys.argv if argv is None else argv
    script = Path(args[0]).name if args else f"{name}.py"
    result = {
        "benchmark": name,
        "command": " ".join(["python", f"benchmarks/{script}", *args[1:]]),
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "goal": goal,
        "headline": headline,
        "detail": detail,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def read_results(folder: Path | str | None = None) -> list[dict[str, Any]]:
    """Every result in ``folder`` (default :data:`RESULTS`), by benchmark name."""
    folder = Path(folder) if folder is not None else RESULTS
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
