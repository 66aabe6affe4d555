"""Proxy data on a cluster: a node that cannot see the cache is named before anything starts,
and ``--stage-data`` ships the cache to it (real Ray, real files, a real node that lacks the
path).

The session's two-node loopback cluster shares one filesystem, so this module adds a third
node to it whose processes run in their own mount namespace (``unshare``) with an empty
tmpfs over a ``hidden/`` folder: a cache under ``hidden/`` exists for the head and the first
worker node and does not exist for this node, as on a cluster without a shared filesystem.
It is the only node with 2 CPUs, so a worker or trial that asks for 2 CPUs runs there. The
module is skipped where mount namespaces are not available.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study import train as cli
from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.data import prepare

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("quick_ray_train")


def _unshare() -> list[str] | None:
    """An ``unshare`` prefix that gives a process a private mount namespace, or None."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "--mount", "--propagation", "private"],
                   ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


def _alive() -> dict[str, dict]:
    import ray

    return {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}


@pytest.fixture(scope="module")
def hidden_node(ray_cluster, tmp_path_factory):
    """``(node_id, hidden_dir, stage_dir)``: a third node (2 CPUs) that does not see
    ``hidden_dir`` and stages data into its own ``stage_dir``; removed after the module."""
    prefix = _unshare()
    if prefix is None:
        pytest.skip("no private mount namespace (unshare) on this machine: cannot make a node that lacks a path")
    hidden = tmp_path_factory.mktemp("hidden")
    stage = tmp_path_factory.mktemp("stage-hidden-node")
    ray_bin = Path(sys.executable).with_name("ray")
    ray_bin = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "STUDY_STAGE_DIR": str(stage)}
    script = 'mount -t tmpfs tmpfs "$0" && exec "$1" start --address="$2" --num-cpus=2 --object-store-memory=100000000 ' \
             '--block --disable-usage-stats'
    before = set(_alive())
    proc = subprocess.Popen([*prefix, "sh", "-c", script, str(hidden), ray_bin, ray_cluster.address], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not set(_alive()) - before:
            if proc.poll() is not None:
                pytest.fail(f"the third node did not start: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the third node did not join the cluster within 120 s")
            time.sleep(0.2)
        (node_id,) = set(_alive()) - before
        yield node_id, hidden, stage
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60  # the other tests count the cluster's nodes
        while len(_alive()) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def hidden_cache(hidden_node, tmp_path_factory):
    """A 3-class, 16 px cache under the hidden folder (made with the real prepare)."""
    _, hidden, _ = hidden_node
    tree = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 3)):
        for c in range(3):
            folder = tree / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 60 * c, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    cache = hidden / "cache"
    prepare("imagefolder", tree, cache, resolution=16, workers=1, progress=False)
    return cache


def _config(tmp_path: Path) -> Path:
    config = TrialConfig(arch=ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=3),
                         recipe=Recipe(epochs=1, batch_size=12, lr=0.1, warmup_epochs=0.0),
                         proxy=ProxySpec(resolution=16, num_classes=3), seed=0)
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    return path


def _one_line(code: int, stderr: str, prog: str) -> str:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def _main(main, argv, prog):
    import contextlib
    import io

    from study.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_cli(main, [str(a) for a in argv], prog=prog)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_the_data_check_names_the_node_that_lacks_the_cache(hidden_node, hidden_cache, ray_cluster, tmp_path):
    node_id, _, _ = hidden_node
    assert (hidden_cache / "manifest.json").exists()  # here (and on the two other nodes) it exists
    out = tmp_path / "out"
    code, _, stderr = _main(cli.main, ["--config", _config(tmp_path), "--data", hidden_cache, "--workers", 1, "--cpus-per-worker", 2,
                                       "--address", ray_cluster.address, "--out", out], cli.PROG)
    line = _one_line(code, stderr, cli.PROG)
    assert "--data: node " in line and f"node {node_id[:12]})" in line and f"cannot read the cache {hidden_cache}" in line, line
    assert "no such cache folder" in line and "--stage-data" in line
    assert not out.exists()

    from study.run import main as study_main

    runs = tmp_path / "runs"
    code, _, stderr = _main(study_main, ["--space", "eca_kmap", "--data", hidden_cache, "--address", ray_cluster.address,
                                         "--cpus-per-trial", 2, "--trials", 1, "--epochs", 1, "--out", runs], "python -m study.run")
    line = _one_line(code, stderr, "python -m study.run")
    assert "--data: node " in line and f"node {node_id[:12]})" in line and "cannot read the cache" in line and "--stage-data" in line, line
    assert not runs.exists()


def test_stage_data_makes_the_same_run_succeed(hidden_node, hidden_cache, ray_cluster, tmp_path):
    node_id, _, stage = hidden_node
    out = tmp_path / "out"
    code, stdout, stderr = _main(cli.main, ["--config", _config(tmp_path), "--data", hidden_cache, "--workers", 1,
                                            "--cpus-per-worker", 2, "--stage-data", "--batch-per-worker", 6,
                                            "--address", ray_cluster.address, "--out", out], cli.PROG)
    assert code == 0, stdout + stderr
    assert f"staging {hidden_cache} " in stdout and "to 1 node(s): " in stdout and node_id[:12] in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "complete" and result["extra"]["distributed"]["nodes"] == [node_id]
    saved = TrialConfig.from_json((out / "config.json").read_text())
    assert saved.proxy.data == str(hidden_cache)  # the record keeps the cache's own path, not the node's copy
    assert (saved.recipe.batch_size, saved.recipe.lr) == (6, pytest.approx(0.05))  # --batch-per-worker 6 on 1 worker: lr x 6/12
    (copy,) = [p for p in stage.iterdir() if not p.name.endswith(".partial")]
    assert (copy / "manifest.json").exists() and copy.name.startswith("cache-")

    # once per node: a node that holds a verified copy receives nothing
    from study.cluster import cluster_nodes, stage_cache

    lines: list[str] = []
    (node,) = [n for n in cluster_nodes() if n.node_id == node_id]
    assert stage_cache(str(hidden_cache), [node], log=lines.append) == {node_id: str(copy)} and lines == []


def test_a_study_stages_its_cache_too(hidden_node, hidden_cache, ray_cluster, tmp_path):
    """``study.run --stage-data``: the trial (2 CPUs) runs on the node that lacks the cache,
    from its staged copy."""
    from study.run import main as study_main

    code, stdout, stderr = _main(study_main, ["--space", "eca_kmap", "--data", hidden_cache, "--address", ray_cluster.address,
                                              "--cpus-per-trial", 2, "--trials", 1, "--epochs", 1, "--stage-data",
                                              "--set", "recipe.batch_size=12", "--width", "0.25", "--out", tmp_path / "runs"],
                                 "python -m study.run")
    assert code == 0, stdout + stderr
    assert "1 finished (1 complete" in stdout
