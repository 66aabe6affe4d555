"""Full-training results read like a study, so that proxy fidelity can close the loop.

``python -m study.train`` writes ``config.json`` and ``result.json`` into its output folder.
:func:`load_trained` reads one such folder, a folder of them (``runs/train/``), or an export
``index.json`` (:mod:`analysis.export`) whose configs were trained (each entry's output
folder: its ``out`` when the entry names one, else the folder ``study.train --batch`` writes,
``runs/NAME/train/<config stem>/``, else the one ``study.train --config`` derives under
``runs/train/``), into a :class:`StudyFrames` with one
complete "trial" per finished run: ``top1`` its best validation top-1, ``top1_last`` the
final one. Export switches the stem (and the recipe and class count), so these frames are
matched with a study by the network - backbone, width and attention per stage - not by the
whole architecture (:func:`analysis.config_key` with ``what="net"``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from analysis._load import StudyFrames, config_key, summarize_kinds
from study.cluster import read_index
from study.storage import is_storage_url
from study.train import DEFAULT_ROOT, derive_name

__all__ = ["load_trained", "is_study_folder", "TRAINED"]

#: ``StudyFrames.settings["kind"]`` of frames read from full-training runs
TRAINED = "trained"


def is_study_folder(path: str | Path) -> bool:
    """A run folder of a study (``settings.json`` or ``study.db``), or a storage URL."""
    text = str(path)
    if is_storage_url(text):
        return True
    p = Path(text)
    return p.is_dir() and ((p / "settings.json").is_file() or (p / "study.db").is_file())


def _run_folders(path: Path) -> list[Path]:
    if path.is_file() and path.suffix == ".json":
        try:
            entries = read_index(path)  # each entry's ``out``: the folder study.train --batch writes
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("batch: ")) from None
        out = []
        for e in entries:
            if e.meta.get("out"):
                out.append(Path(e.meta["out"]))
                continue
            if e.config is None:
                raise ValueError(f"{path}: entry {e.name}: {e.error}")
            name = derive_name(e.config)
            out += [c for c in (e.out, DEFAULT_ROOT / name, path.parent / name) if (c / "result.json").is_file()][:1]
        return out
    if (path / "result.json").is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if (p / "result.json").is_file())
    raise FileNotFoundError(f"{path}: no such folder or export index")


def load_trained(path: str | Path) -> StudyFrames:
    """Read full-training runs (see the module doc); a ValueError when none finished."""
    path = Path(path)
    rows = []
    for i, folder in enumerate(_run_folders(path)):
        try:
            res = json.loads((folder / "result.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{folder / 'result.json'}: cannot read ({exc})") from None
        cfg = res.get("config") or {}
        best, final = res.get("best") or {}, res.get("final") or {}
        kinds = [s.get("kind") if isinstance(s, dict) else s for s in cfg.get("arch", {}).get("stages", [])]
        rows.append({"number": i, "state": "complete" if res.get("outcome") == "complete" else "failed", "outcome": res.get("outcome"),
                     "top1": float(best.get("top1", math.nan)), "top1_last": float(final.get("top1", math.nan)),
                     "epochs": res.get("epochs_run"), "params": (res.get("costs") or {}).get("params"),
                     "backbone": cfg.get("arch", {}).get("backbone"), "width": cfg.get("arch", {}).get("width"),
                     "attention": summarize_kinds(kinds), "pattern": ",".join(map(str, kinds)), "folder": str(folder),
                     "config": cfg, "key": config_key(cfg, what="net")})
    if not rows:
        raise ValueError(f"{path}: no finished study.train run (no result.json) found")
    trials = pd.DataFrame(rows)
    return StudyFrames(trials=trials, epochs=pd.DataFrame(columns=["trial", "epoch", "state", "top1"]),
                       name=path.stem if path.is_file() else path.name,
                       storage=str(path), objectives=("top1",), directions=("maximize",), run_dir=None, settings={"kind": TRAINED})
