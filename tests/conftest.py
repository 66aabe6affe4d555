"""Shared fixtures: one real Ray cluster for the whole session, and the PostgreSQL server.

``ray_cluster``: a two-node Ray cluster on this machine (a head and a worker node on
loopback, one CPU each, via Ray's own ``ray.cluster_utils.Cluster``), this pytest process
connected to it as a driver; started on first use, shut down at the end of the session.
It runs with token authentication and a token made for it, as every local Ray the harness
starts (:func:`study.cluster.local_cluster_auth`): the processes a test starts inherit it.
Only the runner and ``study.run`` tests use it: nobody else's tests need Ray.

``postgres_url``: ``postgresql://postgres@127.0.0.1:5432/test`` (override with
``STUDY_TEST_POSTGRES``); skipped when the server is unreachable, except in CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os

import pytest

#: flags that shrink a study to seconds: 10 classes at 16 px, 20 training images a class,
#: width 0.25, batch 32 (tests add --epochs, --trials)
TINY_FLAGS = ("--proxy", "synthetic-small", "--width", "0.25", "--set", "recipe.batch_size=32", "--set", "recipe.warmup_epochs=0")

POSTGRES_URL = os.environ.get("STUDY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite: the models here are tiny, and on a shared
    2-core machine OpenMP threads that spin-wait for each other made single test files
    4-10x slower. (Ray trials set their own thread count from --cpus-per-trial.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_flags() -> tuple[str, ...]:
    return TINY_FLAGS


@pytest.fixture(scope="session")
def ray_cluster():
    """A real two-node Ray cluster (head + worker, 1 CPU each), connected; yields its address."""
    import ray
    from ray.cluster_utils import Cluster

    from study.cluster import local_cluster_auth

    local_cluster_auth()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
        shutdown_at_exit=True,
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def quick_ray_train():
    """Ray Train settings that only shorten the tests of a module that uses this fixture: its
    controller polls the workers every 0.5 s instead of 2 s (quicker start, end and failure
    detection), and no preemption watcher (no spot instances on a loopback cluster: one
    process less per run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        mp.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        yield


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL server's URL; a failure (not a skip) in CI when it is absent."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=5).close()
    except Exception as exc:  # psycopg2.OperationalError and friends
        message = f"PostgreSQL at {POSTGRES_URL} is not reachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL storage path must be tested)")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def mem_path(tmp_path):
    """A temporary folder in memory (/dev/shm) where there is one, else ``tmp_path``: the
    SQLite commits of a simulated study (runners.simulate_study) are most of its time."""
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="study-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tiny_settings(tmp_path):
    """``tiny_settings(**changes)``: StudySettings of a seconds-long study in ``tmp_path`` (its
    folder ``tmp_path/<name>``; the studies of a test share one storage)."""
    from runners import StudySettings
    from study.config import Recipe
    from study.data import proxy_preset

    def make(**changes):
        base = dict(
            name="tiny",
            space="eca_kmap",
            storage=f"sqlite:///{tmp_path / 'study.db'}",
            trials=3,
            runner="local",
            width=0.25,
            proxy=proxy_preset("synthetic-small"),
            recipe=Recipe(epochs=2, batch_size=32, warmup_epochs=0),
            seed=0,
            pruner="none",
        )
        base.update(changes)
        base.setdefault("run_dir", str(tmp_path / base["name"]))
        return StudySettings(**base)

    return make
