"""The report's machinery: the writer that appends to the markdown and records the files made,
and :class:`ReportContext`, what every section of the report reads (:mod:`analysis.report`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ReportContext", "trials_csv"]


class _Report:
    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out = out
        self.log = log
        self.md: list[str] = []
        self.made: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def step(self, what: str, fn: Callable[[], Any], *, note: str | None = "_Not made: {reason}._") -> bool:
        """Run one item; False (and the reason recorded) when it cannot be made. ``note``
        (formatted with ``reason``) is the line the report shows in its place."""
        t0 = time.perf_counter()
        self.log(f"[report] {what} ...")
        try:
            fn()
        except (ValueError, KeyError) as exc:
            msg = " ".join(str(exc).split())
            self.skipped.append((what, msg))
            self.log(f"[report] {what}: not made ({msg})")
            if note is not None:
                self.md += [note.replace("{reason}", msg), ""]
            return False
        self.log(f"[report] {what}: done ({time.perf_counter() - t0:.1f} s)")
        return True

    def fig(self, fig, name: str, caption: str) -> None:
        from analysis._plots import save_figure

        save_figure(fig, self.out / name)
        self.made += [f"{name}.png", f"{name}.svg"]
        self.md += [f"![{caption}]({name}.png)", ""]

    def csv(self, df: pd.DataFrame, name: str) -> None:
        df.to_csv(self.out / f"{name}.csv", index=False)
        self.made.append(f"{name}.csv")

    def table(self, df: pd.DataFrame, *, floatfmt: str = ".4g", max_rows: int = 30) -> None:
        d = df.head(max_rows)
        cols = [str(c) for c in d.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for _, r in d.iterrows():
            cells = []
            for v in r:
                if isinstance(v, float):
                    cells.append("" if pd.isna(v) else format(v, floatfmt))
                else:
                    cells.append(str(v).replace("|", "/"))
            lines.append("| " + " | ".join(cells) + " |")
        if len(df) > max_rows:
            lines.append(f"\n({len(df) - max_rows} more rows in the CSV)")
        self.md += lines + [""]


def trials_csv(trials: pd.DataFrame) -> pd.DataFrame:
    t = trials.drop(columns=[c for c in ("config", "datetime_start") if c in trials])
    return t


@dataclass(frozen=True)
class ReportContext:
    """What every section of the report reads: the study's frames (``frames``; ``others`` the
    compared studies, ``labels`` one distinct name per study, the study's first), the output
    folder, ``alpha`` and ``seed``, and the writer (``writer``) whose helpers (:meth:`step`,
    :meth:`table`, :meth:`csv`, :meth:`fig`) append to the markdown (``md``) and the files made."""

    frames: Any
    out: Path
    alpha: float
    seed: int
    writer: _Report
    others: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def build(cls, frames: Any, out_dir: str | Path | None = None, *, compare: Sequence[Any] = (), alpha: float = 0.05,
              seed: int = 0, log: Callable[[str], None] | None = print) -> ReportContext:
        """The context of a report of ``frames`` into ``out_dir`` (created; default: the run folder's ``report/``)."""
        from analysis._load import coerce_frames

        fr = coerce_frames(frames)
        out = Path(out_dir) if out_dir is not None else (fr.run_dir or Path("runs") / fr.name) / "report"
        out.mkdir(parents=True, exist_ok=True)
        writer = _Report(out, log or (lambda s: None))
        others = [coerce_frames(c) for c in compare]
        labels = [fr.name]  # one distinct label per study: two run folders may hold studies of one name
        for o in others:
            lab, i = o.name, 2
            while lab in labels:
                lab, i = f"{o.name}-{i}", i + 1
            labels.append(lab)
        return cls(frames=fr, out=out, alpha=alpha, seed=seed, writer=writer, others=tuple(others), labels=tuple(labels))

    @property
    def md(self) -> list[str]:
        return self.writer.md

    @property
    def made(self) -> list[str]:
        return self.writer.made

    @property
    def trials(self) -> pd.DataFrame:
        return self.frames.trials

    @property
    def done(self) -> pd.DataFrame:
        return self.frames.complete

    @property
    def finished(self) -> pd.DataFrame:
        """Complete and pruned trials with a top-1."""
        t = self.trials
        return t[t["state"].isin(["complete", "pruned"]) & t["top1"].notna()] if len(t) else t

    def log(self, line: str) -> None:
        self.writer.log(line)

    def step(self, what: str, fn: Callable[[], Any], *, note: str | None = "_Not made: {reason}._") -> bool:
        return self.writer.step(what, fn, note=note)

    def table(self, df: pd.DataFrame, *, floatfmt: str = ".4g", max_rows: int = 30) -> None:
        self.writer.table(df, floatfmt=floatfmt, max_rows=max_rows)

    def csv(self, df: pd.DataFrame, name: str) -> None:
        self.writer.csv(df, name)

    def fig(self, fig: Any, name: str, caption: str) -> None:
        self.writer.fig(fig, name, caption)

    def json(self, obj: Any, name: str, **kw: Any) -> None:
        (self.out / name).write_text(json.dumps(obj, indent=2, **kw))
        self.writer.made.append(name)
