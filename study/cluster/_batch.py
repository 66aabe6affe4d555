"""Many exported configs as one job: every entry of an export ``index.json``
(``python -m analysis.export``) trained on the Ray cluster, as many at once as it holds.

Each entry trains with :func:`study.cluster.train_distributed` (so each may be multi-worker)
in its own thread, into its own folder ``<out root>/<config file stem>/`` (default root: the
``train`` folder beside the export folder, ``runs/NAME/train/``). How many run at once is
what the cluster's resources allow: the workers that fit on its nodes at once divided by the
workers of one training; Ray places them. An entry whose config is invalid, whose data no
node can read, or whose training fails, fails alone with its reason; the others train. A
finished run (``result.json`` present and complete, written last) is left alone by
``resume``; a run with only a checkpoint continues from it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.cli import EXIT_FAILED
from study.cluster._launch import TrainingFailed, check_resources, prepare_data, train_distributed
from study.cluster._nodes import cluster_nodes
from study.config import TrialConfig, load_config
from study.metrics import OUTCOMES, TrialResult
from study.validate import ConfigError

if TYPE_CHECKING:
    from study.cluster._launch import Scaling

__all__ = ["BatchEntry", "EntryOutcome", "read_index", "train_batch", "finished_run", "format_table"]


@dataclass(frozen=True)
class BatchEntry:
    """One config of an export index: its name (the config file's stem), the config file,
    its output folder, the config (None when it cannot be read: ``error`` says why) and the
    index's own fields (``proxy_top1``, ``selected_by``, ...)."""

    name: str
    file: Path
    out: Path
    config: TrialConfig | None
    error: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EntryOutcome:
    """What became of one entry: ``status`` is ``"skipped"`` (finished before),
    ``"complete"``, ``"diverged"``, ``"stopped"`` or ``"failed"``."""

    entry: BatchEntry
    status: str = "pending"
    result: TrialResult | None = None
    reason: str = ""
    #: the config error behind a failure, its field as data (a CLI says it as its flag)
    error: ConfigError | None = None
    seconds: float = 0.0
    #: epochs in the run's checkpoint when it failed (``--resume`` continues from there)
    checkpointed: int = 0


def _failed(o: EntryOutcome, exc: BaseException) -> None:
    """``o`` failed of ``exc``: its reason in one line, and the config error itself, if it is one."""
    o.status, o.reason = "failed", " ".join(str(exc).split())
    o.error = exc if isinstance(exc, ConfigError) else None


def read_index(path: str | Path, *, out_root: str | Path | None = None) -> list[BatchEntry]:
    """The entries of an export ``index.json``. ValueError (naming ``batch``) when the index
    is missing, not JSON, not a list of objects with a ``file``, or empty; an entry whose
    config file is missing or invalid comes back with its ``error``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("batch", f"cannot read the index {p} ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("batch", f"{p} is not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("batch", f"{p} is not an export index (a non-empty list of entries with a 'file', "
                         "as python -m analysis.export writes)")
    root = Path(out_root) if out_root is not None else p.resolve().parent.parent / "train"
    entries, names = [], set()
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not item["file"]:
            raise ConfigError("batch", f"entry {i} of {p} has no 'file' naming its config")
        file = (p.parent / item["file"]) if not Path(item["file"]).is_absolute() else Path(item["file"])
        name = Path(item["file"]).stem
        if name in names:
            raise ConfigError("batch", f"{p} names {item['file']!r} twice")
        names.add(name)
        try:
            config, error = load_config(file), None
        except ValueError as exc:
            config, error = None, " ".join(str(exc).split())
        entries.append(BatchEntry(name=name, file=file, out=root / name, config=config, error=error, meta=item))
    return entries


def finished_run(out: Path, config: TrialConfig | None) -> dict[str, Any] | None:
    """The ``result.json`` of a finished run of ``config`` in ``out``, or None when there is
    none; ValueError when it is the result of another config."""
    path = out / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("outcome") not in OUTCOMES:
        return None
    if config is not None and result.get("config") != config.to_dict():
        raise ConfigError("out", f"{out} holds the result of another config")
    return result


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def batch_status(outcomes: Sequence[EntryOutcome]) -> tuple[int, str | None]:
    """How a batch ended, as an exit status and, when it is not 0, the line that says why:
    0 when every run completed (or had before), :data:`~study.cli.EXIT_FAILED` when one
    failed, diverged or stopped, the line naming the first of them and its reason."""
    bad = [o for o in outcomes if o.status not in ("complete", "skipped")
           or (o.result is not None and o.result.outcome != "complete")]
    if not bad:
        return 0, None
    first = bad[0]
    reason = " ".join((first.reason or first.status).split())
    return EXIT_FAILED, (f"{len(bad)} of {len(outcomes)} runs did not complete; first: {first.entry.name} "
                         f"{first.status}: {reason[:300]}")


def format_table(outcomes: Sequence[EntryOutcome]) -> str:
    """The closing table: config, outcome, final and best top-1, epochs (of a failed run:
    those in its checkpoint), time, the proxy top-1 that selected it, and the reason of a
    failure."""
    rows = [("config", "outcome", "top-1", "best", "epochs", "time", "proxy top-1", "")]
    for o in outcomes:
        r, e = o.result, o.entry
        epochs_total = e.config.recipe.epochs if e.config is not None else None
        final = r.final if r is not None else None
        best = r.best if r is not None else None
        proxy = e.meta.get("proxy_top1")
        rows.append((
            e.name,
            o.status,
            f"{final.top1:.2f}" if final else "-",
            f"{best.top1:.2f}" if best else "-",
            f"{r.epochs_run if r is not None else o.checkpointed}/{epochs_total if epochs_total else '?'}",
            _hms(o.seconds) if o.seconds else "-",
            f"{proxy:.2f}" if isinstance(proxy, (int, float)) else "-",
            o.reason,
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(7)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row[:7], widths)) + (f"  {row[7]}" if row[7] else "")
                     for row in rows).rstrip()


def train_batch(
    entries: Sequence[BatchEntry],
    *,
    scaling: Scaling,
    resume: bool = False,
    log: Callable[[str], Any] = print,
    write: Callable[[Path, TrialResult], Any] | None = None,
) -> list[EntryOutcome]:
    """Train every entry (on the connected Ray cluster), ``scaling`` (a
    :class:`study.cluster.Scaling`) for each; returns one :class:`EntryOutcome` per entry,
    in index order.

    Entries with an ``error`` fail with it. A run folder that already holds a checkpoint or
    a result needs ``resume`` (ValueError before anything starts, naming ``resume``); with
    it, finished runs are skipped and the others continue from their checkpoint. ``write``
    writes a finished run's ``config.json``, metrics and ``result.json`` (result last).
    """
    outcomes = [EntryOutcome(e) for e in entries]
    todo = _entries_to_train(outcomes, resume=resume)
    check_resources(scaling)
    staged = _check_data(todo, scaling, log=log)
    slots = _slots(len(todo), scaling)
    skipped = sum(o.status == "skipped" for o in outcomes)
    log(f"batch: {len(entries)} configs: {len(todo)} to train ({slots} at once, {scaling.workers} worker(s) each), "
        f"{skipped} finished before, {sum(o.status == 'failed' for o in outcomes)} failed")

    work: queue.Queue[EntryOutcome] = queue.Queue()
    for o in todo:
        work.put(o)
    lock = threading.Lock()

    def slot() -> None:
        while True:
            try:
                o = work.get_nowait()
            except queue.Empty:
                return
            _train_entry(o, scaling=scaling, staged=staged[o.entry.name], write=write, log=log, lock=lock)

    threads = [threading.Thread(target=slot, name=f"batch slot {i}", daemon=True) for i in range(slots)]
    for t in threads:
        t.start()
    for t in threads:  # join with a timeout so that Ctrl-C reaches this thread
        while t.is_alive():
            t.join(timeout=0.5)
    return outcomes


def _entries_to_train(outcomes: list[EntryOutcome], *, resume: bool) -> list[EntryOutcome]:
    """The outcomes whose entries are to train; the others are marked here: ``failed``
    (no config, or an unreadable run folder, or one of another config) or ``skipped``
    (finished before, with its result). A run folder that holds a checkpoint without
    ``resume`` is refused before anything starts (:func:`study.trainer.resume_point`)."""
    from study.trainer import CheckpointExists, resume_point  # torch: only when a batch starts

    todo: list[EntryOutcome] = []
    for o in outcomes:
        e = o.entry
        if e.error is not None or e.config is None:
            o.status, o.reason = "failed", e.error or "no config"
            continue
        try:
            resume_point(e.out if e.out.is_dir() else None, e.config, resume=resume, field="out", of=e.name)
            done = finished_run(e.out, e.config)
        except CheckpointExists:
            raise
        except ValueError as exc:
            _failed(o, exc)
            continue
        if done is not None and not resume:
            raise ConfigError("resume", f"{e.out} already holds a finished run of {e.name}; pass {{resume}} to skip finished runs "
                              "and continue the others", refs=["resume"])
        if done is not None:
            o.status, o.result = "skipped", TrialResult.from_dict(done)
            continue
        todo.append(o)
    return todo


def _check_data(todo: list[EntryOutcome], scaling: Scaling, *, log: Callable[[str], Any]) -> dict[str, dict[str, str] | None]:
    """Check (or stage) the data of every entry in ``todo`` once per cache; the staged
    copies by entry name. Entries whose data no node reads fail alone and leave ``todo``."""
    by_path: dict[str, tuple[str, Any]] = {}
    staged: dict[str, dict[str, str] | None] = {}
    for o in list(todo):
        proxy = o.entry.config.proxy
        key = str(Path(proxy.data).resolve()) if proxy.source == "cache" and proxy.data else ""
        if key not in by_path:
            try:
                by_path[key] = ("ok", prepare_data(o.entry.config, scaling, log=log))
            except ValueError as exc:
                by_path[key] = ("error", exc)
        kind, value = by_path[key]
        if kind == "error":
            _failed(o, value)
            todo.remove(o)
        else:
            staged[o.entry.name] = value
    return staged


def _slots(entries: int, scaling: Scaling) -> int:
    """How many of ``entries`` trainings run at once: the workers that fit on the cluster's
    nodes at once divided by the workers of one training (at least 1; 0 for no entry)."""
    c, g = float(scaling.cpus_per_worker), float(scaling.gpus_per_worker)
    room = sum(min(int(n.cpus // c) if c else 10**9, int(n.gpus // g) if g else 10**9) for n in cluster_nodes())
    return max(1, min(entries, room // scaling.workers)) if entries else 0


def _train_entry(o: EntryOutcome, *, scaling: Scaling, staged: dict[str, str] | None, write: Callable[[Path, TrialResult], Any] | None,
                 log: Callable[[str], Any], lock: threading.Lock) -> None:
    """Train one entry (:func:`study.cluster.train_distributed`, resuming its folder) and
    record what became of it in ``o``: its result, or ``failed`` with the reason and the
    epochs in its checkpoint. Its progress lines go to ``log`` prefixed with its name."""
    from study.trainer import read_checkpoint

    e = o.entry
    started = time.monotonic()

    def say(line: str) -> None:
        if line.startswith(("epoch ", "workers restarted", "resuming", "staging")) or "diverged" in line:
            with lock:
                log(f"[{e.name}] {line}")

    with lock:
        log(f"[{e.name}] started -> {e.out}")
    try:
        result = train_distributed(e.config, e.out, scaling=scaling, resume=True, log=say, staged=staged, check=False)
        if write is not None:
            write(e.out, result)
        o.result, o.status = result, result.outcome
        o.reason = result.message if result.outcome != "complete" else ""
    except (TrainingFailed, ValueError, OSError) as exc:
        _failed(o, exc)
    except Exception as exc:
        o.status, o.reason = "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if o.status == "failed":
        try:
            state = read_checkpoint(e.out)
            o.checkpointed = int(state["epoch"]) if state else 0
        except (OSError, ValueError):
            pass
    o.seconds = time.monotonic() - started
    with lock:
        final = o.result.final if o.result is not None else None
        log(f"[{e.name}] {o.status}" + (f": top1 {final.top1:.2f} after {o.result.epochs_run} epochs" if final else "")
            + (f" ({o.reason})" if o.reason else "") + f" in {_hms(o.seconds)}")
