"""prepare: decode a file source once into a cache (see :mod:`study.data._cache`).

Crash safety: everything is written into ``DIR.partial``; ``state.json`` there records
which chunks of which split are decoded (each chunk is flushed to its memory-mapped file
before it is recorded). The manifest is written last and ``DIR.partial`` is renamed to
``DIR`` in one step, so a folder named ``DIR`` is always complete. Running the same
command after an interruption reuses the finished chunks (the inputs' signature must
match; otherwise the stale partial folder is discarded and the job starts over).

Parallelism: chunks are decoded on threads of this process, never in forked or spawned
processes. Pillow releases the GIL while it decodes, converts and resizes, so threads
scale like processes here (``benchmarks/prepare_throughput.py`` measures both), and a
thread pool is safe in a process that already runs Ray, torch's thread pools or a
notebook kernel: forking such a process can deadlock its children on a lock another
thread held (a futex wait), and forked children inherit Ray's signal handlers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm import tqdm

from study.data._cache import CACHE_FORMAT, CACHE_VERSION, MANIFEST, SPLITS, _resize, array_files, partial_path, sha256_file
from study.data._check import check_cache
from study.data._decode import decode_chunk, quiet_decoding
from study.data._listing import ArrayListing, FileListing
from study.data._registry import ProxySource, get_source, list_sources
from study.io import write_json
from study.validate import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["prepare", "PrepareWarning", "STATE"]

STATE = "state.json"


class PrepareWarning(UserWarning):
    """Something was skipped while preparing a cache (named in the manifest)."""


def _signature(source: str, root: Path, resolution: int, listing: FileListing | ArrayListing) -> str:
    text = json.dumps({"source": source, "root": str(root), "resolution": resolution, **listing.signature()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _version() -> str:
    try:
        return version("channel-attention-study")
    except Exception:
        return "unknown"


def _progress(total: int, desc: str, enabled: bool, initial: int = 0) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="img", file=sys.stderr, disable=not enabled, dynamic_ncols=True, leave=True)


#: ``decode(tasks, workers)``: :func:`study.data.decode_chunk` of every task, yielded as each finishes
Decoder = Callable[[list[tuple[int, list[str], int]], int], Iterator[tuple[int, np.ndarray, list[tuple[int, str]]]]]


def decode_parallel(tasks: list[tuple[int, list[str], int]], workers: int) -> Iterator[tuple[int, np.ndarray, list[tuple[int, str]]]]:
    """``decode_chunk`` of every task on ``workers`` threads, yielded as each finishes.

    At most ``2 * workers`` chunks are in flight, so decoded chunks never pile up in memory
    faster than they are written. When the consumer closes the generator (an exception,
    Ctrl-C, a raising ``on_chunk``), the chunks not yet started are cancelled and the
    running ones finish before the close returns: no decoding thread outlives the prepare.
    """
    todo = iter(tasks)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="study-prepare")
    try:
        running = {pool.submit(decode_chunk, t) for t in itertools.islice(todo, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = next(todo, None)
                if task is not None:
                    running.add(pool.submit(decode_chunk, task))
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_split(split: str, items: list[tuple[str, int]], partial: Path, state: dict[str, Any], *, resolution: int,
                  workers: int, chunk_size: int, progress: bool,
                  on_chunk: Callable[[str, int, int], None] | None, decode: Decoder) -> None:
    n = len(items)
    tmp = partial / f"{split}_images.decoding.npy"
    st = state["splits"].setdefault(split, {"done": False, "chunks": [], "skipped": []})
    if st["chunks"] and not tmp.exists():
        st["chunks"], st["skipped"] = [], []
    # chunk ids are only meaningful with the chunk size that made them: a rerun keeps it
    chunk_size = st.setdefault("chunk_size", chunk_size)
    mm = open_memmap(tmp, mode="r+" if tmp.exists() else "w+", dtype=np.uint8, shape=(n, resolution, resolution, 3))
    if mm.shape != (n, resolution, resolution, 3):
        raise ValueError(f"{tmp}: unexpected shape {mm.shape}; delete {partial} and prepare again")
    starts = list(range(0, n, chunk_size))
    done = set(st["chunks"])
    tasks = [(cid, [p for p, _ in items[lo:lo + chunk_size]], resolution) for cid, lo in enumerate(starts) if cid not in done]
    already = sum(min(chunk_size, n - starts[c]) for c in done)
    state_path = partial / STATE

    def record(cid: int, arr: np.ndarray, errors: list[tuple[int, str]], bar: tqdm) -> None:
        lo = starts[cid]
        mm[lo:lo + arr.shape[0]] = arr
        mm.flush()
        for i, msg in errors:
            st["skipped"].append({"split": split, "index": lo + i, "path": items[lo + i][0], "error": msg})
        st["chunks"].append(cid)
        write_json(state_path, state)
        bar.update(arr.shape[0])
        if on_chunk is not None:
            on_chunk(split, cid, len(starts))

    with _progress(n, f"decode {split}", progress, initial=already) as bar, quiet_decoding():
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                record(*decode_chunk(task), bar)
        else:
            with contextlib.closing(decode(tasks, min(workers, len(tasks)))) as results:
                for result in results:
                    record(*result, bar)
    mm = None  # release the memory map: record() is done with it

    # compact: drop the slots of skipped images, write the final arrays
    img_name, lab_name = array_files(split)
    skipped = sorted(s["index"] for s in st["skipped"])
    labels = np.array([lab for _, lab in items], dtype=np.int64)
    if skipped:
        keep = np.setdiff1d(np.arange(n), np.array(skipped, dtype=np.int64))
        if keep.size == 0:
            raise ConfigError("split", about=str(split),
                              reason=f"every image was unreadable (first: {st['skipped'][0]['path']}: {st['skipped'][0]['error']})")
        src = np.load(tmp, mmap_mode="r")
        dst = open_memmap(partial / img_name, mode="w+", dtype=np.uint8, shape=(keep.size, resolution, resolution, 3))
        for lo in range(0, keep.size, 8192):
            dst[lo:lo + 8192] = src[keep[lo:lo + 8192]]
        dst.flush()
        del src, dst
        os.remove(tmp)
        labels = labels[keep]
    else:
        os.replace(tmp, partial / img_name)
    np.save(partial / lab_name, labels)
    st["done"] = True
    st["count"] = int(labels.shape[0])
    write_json(state_path, state)


def _array_split(split: str, listing: ArrayListing, partial: Path, state: dict[str, Any], *, resolution: int, progress: bool,
                 on_chunk: Callable[[str, int, int], None] | None) -> None:
    images, labels = listing.load(split)
    if labels.shape[0] == 0:
        raise ConfigError("split", about=str(split), reason=f"none of its images belong to the selected {len(listing.classes)} classes")
    if resolution != listing.resolution:
        images = _resize(torch.from_numpy(images), resolution).numpy()
    img_name, lab_name = array_files(split)
    with _progress(images.shape[0], f"write {split}", progress) as bar:
        dst = open_memmap(partial / img_name, mode="w+", dtype=np.uint8, shape=images.shape)
        for lo in range(0, images.shape[0], 8192):
            dst[lo:lo + 8192] = images[lo:lo + 8192]
            bar.update(min(8192, images.shape[0] - lo))
        dst.flush()
        del dst
    np.save(partial / lab_name, labels.astype(np.int64))
    state["splits"][split] = {"done": True, "chunks": [], "skipped": [], "count": int(labels.shape[0])}
    write_json(partial / STATE, state)
    if on_chunk is not None:
        on_chunk(split, 0, 1)


def prepare(source: str, root: str | Path, out: str | Path, *, resolution: int, workers: int | None = None,
            chunk_size: int = 256, progress: bool = True, force: bool = False,
            on_chunk: Callable[[str, int, int], None] | None = None, decode: Decoder | None = None,
            **options: Any) -> dict[str, Any]:
    """Decode ``source`` under ``root`` once into a cache folder ``out``; returns the manifest.

    Args:
        source: a file source (``imagefolder``, ``imagenet100``, ``imagenet-downsampled``).
        root: the source's folder.
        out: the cache folder to create.
        resolution: side of the square images, in pixels (8-1024).
        workers: decoding threads (default: all CPUs); 1 decodes in the calling thread.
        chunk_size: images per task (and per resumable step); a resumed split keeps the
            chunk size it was started with.
        progress: show a tqdm progress bar on stderr.
        force: rebuild even if ``out`` already holds a complete cache.
        on_chunk: called as ``on_chunk(split, chunk_id, num_chunks)`` after each chunk is
            safely on disk (progress reporting; raising from it interrupts the prepare).
        decode: how the chunks of a file source are decoded with ``workers``: ``decode(tasks,
            workers)`` yields :func:`study.data.decode_chunk`'s results as they finish
            (default :func:`decode_parallel`, threads; ``benchmarks/prepare_throughput.py``
            passes process pools).
        **options: source options (``classes``, ``label_map``, ``val_split``, ``seed``).

    A corrupt or unreadable image is skipped, counted and named in the manifest
    (``skipped``), with a :class:`PrepareWarning`. If ``out`` is already a complete cache
    of the same inputs it is left as is.
    """
    src = get_source(source)
    options, workers = _checked_arguments(source, src, options, resolution=resolution, chunk_size=chunk_size,
                                          workers=workers)
    root = Path(root).resolve()
    out = Path(out)
    listing = src.scan(root, **options)
    if isinstance(listing, ArrayListing) and resolution > listing.resolution:
        raise ConfigError("resolution", f"{resolution} px asked, but the {source} files hold {listing.resolution} px images")
    signature = _signature(source, root, resolution, listing)
    existing = _existing_cache(out, signature, force=force)
    if existing is not None:
        return existing

    partial = partial_path(out)
    state = _partial_state(partial, signature)
    for split in SPLITS:
        if state["splits"].get(split, {}).get("done"):
            continue
        if isinstance(listing, FileListing):
            _decode_split(split, listing.splits[split], partial, state, resolution=resolution, workers=workers,
                          chunk_size=chunk_size, progress=progress, on_chunk=on_chunk, decode=decode or decode_parallel)
        else:
            _array_split(split, listing, partial, state, resolution=resolution, progress=progress, on_chunk=on_chunk)

    manifest = _manifest(partial, state, listing, source=source, root=root, options=options, resolution=resolution,
                         signature=signature)
    write_json(partial / MANIFEST, manifest)
    os.remove(partial / STATE)
    _swap_in(partial, out)
    skipped = manifest["skipped"]
    if skipped:
        first = ", ".join(s["path"] for s in skipped[:3])
        warnings.warn(f"skipped {len(skipped)} unreadable image(s), named in {out / MANIFEST}: {first}{' ...' if len(skipped) > 3 else ''}",
                      PrepareWarning, stacklevel=2)
    return manifest


def _checked_arguments(source: str, src: ProxySource, options: dict[str, Any], *, resolution: Any, chunk_size: Any,
                       workers: Any) -> tuple[dict[str, Any], int]:
    """:func:`prepare`'s arguments checked (ValueError naming the bad one): the source's
    options that are set, and the number of decoding threads (default: all CPUs)."""
    if src.generated:
        raise ConfigError("source",
            f"{source!r} generates its images and needs no prepare (file sources: {', '.join(list_sources(generated=False))})")
    for key, value in options.items():
        if value is not None and key not in src.options:
            takes = ", ".join("{" + o + "}" for o in src.options) or "no options"
            raise ConfigError(key, f"does not apply to source {source!r} (it takes {takes})", refs=list(src.options))
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 1024:
        raise ConfigError("resolution", f"must be an integer in [8, 1024], got {resolution!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError("chunk_size", f"must be an integer >= 1, got {chunk_size!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be an integer >= 1, got {workers!r}")
    return options, workers


def _existing_cache(out: Path, signature: str, *, force: bool) -> dict[str, Any] | None:
    """The manifest of the whole cache of the same inputs already in ``out`` (None when
    ``out`` is absent, to be replaced with ``force``, or a damaged cache of the same inputs,
    which is prepared again with a :class:`PrepareWarning`); ValueError when ``out`` is not
    a cache, or without ``force`` a cache of other inputs or one this version cannot check."""
    if not out.exists():
        return None
    if not (out / MANIFEST).exists():
        raise ConfigError("out", about=str(out), reason="exists and is not a cache; choose another folder or remove it")
    if force:
        return None
    try:
        existing = check_cache(out)
    except ValueError as exc:  # damaged, incomplete, or of another version
        try:
            same = json.loads((out / MANIFEST).read_text()).get("signature") == signature
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            raise ConfigError("out", about=str(out), reason=f"holds a cache that cannot be read ({' '.join(str(exc).split())}); "
                             f"pass {{force}} to replace it", refs=["force"]) from None
        warnings.warn(f"{getattr(exc, 'what', exc)}; preparing it again", PrepareWarning, stacklevel=3)
        return None
    if existing.get("signature") == signature:
        return existing
    raise ConfigError("out", about=str(out), reason=f"already holds a cache of other inputs ({existing.get('source')}, "
                     f"{existing.get('resolution')} px); pass {{force}} to replace it", refs=["force"])


def _partial_state(partial: Path, signature: str) -> dict[str, Any]:
    """The state of the partial folder, created (and its state written): an interrupted
    run's state when it has the same ``signature``, else a fresh one (a stale partial
    folder is removed first)."""
    state: dict[str, Any] = {"signature": signature, "splits": {}}
    if partial.exists():
        try:
            old = json.loads((partial / STATE).read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None and old.get("signature") == signature:
            state = old
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / STATE, state)
    return state


def _manifest(partial: Path, state: dict[str, Any], listing: FileListing | ArrayListing, *, source: str, root: Path,
              options: dict[str, Any], resolution: int, signature: str) -> dict[str, Any]:
    """The manifest of the finished splits in ``partial``: the inputs, per-class counts,
    the skipped files (in file order), per-file and overall checksums."""
    # chunks finish in any order when decoded in parallel: list the skipped files in file order
    skipped = [s for split in SPLITS for s in sorted(state["splits"][split]["skipped"], key=lambda s: s["index"])]
    counts = {}
    for split in SPLITS:
        labels = np.load(partial / array_files(split)[1])
        counts[split] = {"images": int(labels.shape[0]), "per_class": np.bincount(labels, minlength=len(listing.classes)).tolist()}
    checksums = {name: sha256_file(partial / name) for split in SPLITS for name in array_files(split)}
    overall = hashlib.sha256("".join(f"{k}={v};" for k, v in sorted(checksums.items())).encode()).hexdigest()
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "source": source,
        "root": str(root),
        "options": options,
        "resolution": resolution,
        "resize": "shorter side to resolution, centre crop (bicubic, antialiased)" if isinstance(listing, FileListing)
        else ("as stored" if resolution == listing.resolution else f"{listing.resolution} px -> {resolution} px, bilinear antialiased"),
        "layout": "NHWC uint8 RGB; labels int64; label i = classes[i]",
        "num_classes": len(listing.classes),
        "classes": listing.classes,
        "counts": counts,
        "skipped": skipped,
        "num_skipped": len(skipped),
        "notes": listing.notes,
        "checksums": checksums,
        "sha256": overall,
        "signature": signature,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "study_version": _version(),
    }


def _swap_in(partial: Path, out: Path) -> None:
    """Rename the finished ``partial`` folder to ``out``; an ``out`` already there (a
    forced rebuild) is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(partial, out)
        shutil.rmtree(old)
    else:
        os.replace(partial, out)
