"""Proxy data on a Ray cluster: every node that runs a trial or a worker must read the cache.

Two ways, checked before anything starts:

- the cache lies on a shared filesystem at the same path on every node:
  :func:`check_cache_on_nodes` runs one tiny task on each node that can run a worker
  (pinned there with ``NodeAffinitySchedulingStrategy``) and raises an error that names the
  nodes that cannot read it;
- ``stage_data``: :func:`stage_cache` ships the cache once per node through Ray's object
  store (in chunks) to that node's local disk (``$STUDY_STAGE_DIR`` there, default
  ``<tmp>/study-stage``), verifies it against the manifest's checksums and returns the local
  folder of every node; a node that holds a verified copy already receives nothing. Meant
  for proxies of a few GB (in100-32/64).

Nodes are the alive ones whose resources can hold one worker (``cpus`` and ``gpus``); nodes
that join later (autoscaling) are not checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.data._check import check_cache
from study.validate import ConfigError

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.remote_function import RemoteFunction

__all__ = ["Node", "cluster_nodes", "nodes_for", "check_cache_on_nodes", "stage_cache", "prepare_cache", "STAGE_DIR_ENV",
           "CHUNK_BYTES"]

#: the node-local staging folder, read on each node (default ``<tmp>/study-stage``)
STAGE_DIR_ENV = "STUDY_STAGE_DIR"
#: bytes per object-store chunk when a cache is shipped
CHUNK_BYTES = 64 << 20
#: seconds to wait for a node's probe or staging task
PROBE_TIMEOUT_S = 120.0
STAGE_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Node:
    """An alive Ray node: its id, address and host name, and its total CPUs and GPUs."""

    node_id: str
    address: str
    hostname: str
    cpus: float
    gpus: float

    def __str__(self) -> str:
        return f"{self.hostname} ({self.address}, node {self.node_id[:12]})"


def cluster_nodes() -> list[Node]:
    """The alive nodes of the connected Ray cluster."""
    import ray

    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        r = n.get("Resources", {})
        out.append(Node(node_id=n["NodeID"], address=n.get("NodeManagerAddress", "?"),
                        hostname=n.get("NodeManagerHostname", "?"), cpus=float(r.get("CPU", 0.0)), gpus=float(r.get("GPU", 0.0))))
    return out


def nodes_for(cpus: float, gpus: float) -> list[Node]:
    """The alive nodes that can hold one worker needing ``cpus`` CPUs and ``gpus`` GPUs."""
    return [n for n in cluster_nodes() if n.cpus >= cpus and n.gpus >= gpus and (n.cpus > 0 or n.gpus > 0)]


def _on(node: Node, fn: RemoteFunction, **options: Any) -> Any:
    """``fn`` (a remote function) pinned to ``node``, using no CPU."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return fn.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False), **options)


def _gather(refs: dict[Node, ObjectRef], timeout: float) -> dict[Node, Any]:
    """Each node's answer; an exception (or no answer within ``timeout``) as its text."""
    import ray

    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    done = set(ready)
    out: dict[Node, Any] = {}
    for node, ref in refs.items():
        if ref not in done:
            out[node] = RuntimeError(f"no answer within {timeout:g} s")
            continue
        try:
            out[node] = ray.get(ref)
        except Exception as exc:
            out[node] = RuntimeError(" ".join(str(getattr(exc, "cause", None) or exc).split())[-300:])
    return out


# ------------------------------------------------------------------------- on each node


def _probe_cache(path: str) -> str | None:
    """On a node: None when the cache at ``path`` is readable and whole (every array matches
    the manifest: :func:`study.data.check_cache`), else why not."""
    try:
        check_cache(path)
    except Exception as exc:
        return " ".join(str(exc).split())
    return None


def _stage_root() -> Path:
    return Path(os.environ.get(STAGE_DIR_ENV) or os.path.join(tempfile.gettempdir(), "study-stage"))


def _staged_copy(key: str) -> str | None:
    """On a node: the folder of a complete staged copy named ``key``, or None."""
    folder = _stage_root() / key
    return str(folder) if _probe_cache(str(folder)) is None else None


def _write_staged(key: str, chunks: dict[str, list[ObjectRef]], checksums: dict[str, str]) -> str:
    """On a node: write the shipped files into ``<stage root>/<key>.partial``, verify the
    arrays' sha256 against the manifest, rename to ``<stage root>/<key>``; its path."""
    import ray

    from study.data._cache import sha256_file

    root = _stage_root()
    final = root / key
    if _probe_cache(str(final)) is None:
        return str(final)
    partial = root / f"{key}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name, refs in chunks.items():
            with open(partial / name, "wb") as f:
                for ref in refs:
                    f.write(ray.get(ref))
        for name, digest in checksums.items():
            if sha256_file(partial / name) != digest:
                raise ConfigError(name, "the shipped copy does not match the manifest's sha256")
        try:
            partial.rename(final)
        except OSError:  # another task on this node finished first, or a damaged copy is in the way
            if _probe_cache(str(final)) is not None:
                broken = root / f"{key}.broken-{os.getpid()}"
                final.rename(broken)
                shutil.rmtree(broken, ignore_errors=True)
                partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return str(final)


# ------------------------------------------------------------------------- the driver side


def check_cache_on_nodes(path: str, nodes: list[Node]) -> None:
    """Every node in ``nodes`` must read the cache at ``path`` (the same path); ValueError
    naming the nodes that cannot (and why) otherwise."""
    import ray

    probe = ray.remote(_probe_cache)
    answers = _gather({n: _on(n, probe).remote(path) for n in nodes}, PROBE_TIMEOUT_S)
    bad = [(n, a) for n, a in answers.items() if a is not None]
    if bad:
        node, reason = bad[0]
        more = f" (and {len(bad) - 1} more of the {len(nodes)} nodes)" if len(bad) > 1 else f" ({len(bad)} of {len(nodes)} nodes)"
        raise ConfigError("data", f"node {node} cannot read the cache {path}: {reason}{more}; every node that runs a worker needs "
                         f"it at the same path (a shared filesystem), or pass {{stage_data}} to ship it to each node's local disk",
                             refs=["stage_data"])


def stage_cache(path: str, nodes: list[Node], *, log: Callable[[str], Any] | None = None) -> dict[str, str]:
    """Ship the cache at ``path`` (readable here) to every node in ``nodes`` that lacks a
    verified copy; returns ``{node_id: local folder}`` for every node."""
    import ray

    from study.data._cache import MANIFEST, read_manifest

    manifest = read_manifest(path)
    checksums = dict(manifest.get("checksums", {}))
    key = f"{Path(path).name}-{manifest.get('sha256', '')[:16] or 'cache'}"
    have = _gather({n: _on(n, ray.remote(_staged_copy)).remote(key) for n in nodes}, PROBE_TIMEOUT_S)
    staged = {n.node_id: a for n, a in have.items() if isinstance(a, str)}
    missing = [n for n in nodes if n.node_id not in staged]
    if not missing:
        return staged
    files = [MANIFEST, *checksums]
    size = sum((Path(path) / name).stat().st_size for name in files)
    if log:
        log(f"staging {path} ({size / 2**20:.1f} MiB) to {len(missing)} node(s): {', '.join(map(str, missing))}")
    chunks: dict[str, list[ObjectRef]] = {}
    for name in files:  # into the object store once; each node pulls the chunks it writes
        refs = []
        with open(Path(path) / name, "rb") as f:
            while block := f.read(CHUNK_BYTES):
                refs.append(ray.put(block))
        chunks[name] = refs or [ray.put(b"")]
    write = ray.remote(_write_staged)
    answers = _gather({n: _on(n, write, max_retries=0).remote(key, chunks, checksums) for n in missing}, STAGE_TIMEOUT_S)
    bad = [(n, a) for n, a in answers.items() if not isinstance(a, str)]
    if bad:
        node, reason = bad[0]
        raise ConfigError("stage_data", f"could not stage {path} on node {node}: {reason} "
                         f"(the node's staging folder is ${STAGE_DIR_ENV}, default <tmp>/study-stage)")
    staged.update({n.node_id: a for n, a in answers.items()})
    return staged


def prepare_cache(path: str, *, cpus: float, gpus: float, stage: bool,
                  log: Callable[[str], Any] | None = None) -> dict[str, str] | None:
    """Before a run: with ``stage``, ship the cache at ``path`` to every node that can hold
    a worker of ``cpus`` CPUs and ``gpus`` GPUs and return ``{node_id: local folder}``;
    without, check that each of them reads it at ``path`` and return None."""
    nodes = nodes_for(cpus, gpus)
    if not nodes:
        return None
    if stage:
        return stage_cache(path, nodes, log=log)
    check_cache_on_nodes(path, nodes)
    return None
