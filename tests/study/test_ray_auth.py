"""Ray's token authentication, handled on purpose (issue 28), against real clusters: a head
started with ``RAY_AUTH_MODE=token`` and its own token, reached by ``python -m study.run
--address`` with the token (a study runs) and refused in one line without it, with a wrong
one, or with a token file that cannot be read; and the local Ray the harness starts runs
quietly with a token made for it, writing nothing to the home folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROG = "python -m study.run"
SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

#: a head node with token authentication, alive until its stdin closes
HEAD = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    print(cluster.address, flush=True)
    sys.stdin.read()
    cluster.shutdown()
""")


def _env(home: Path, **ray: str) -> dict[str, str]:
    """This process's environment without any Ray authentication setting (the suite's own
    cluster sets some), a home folder of its own, and ``ray``'s settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "STUDY_DEBUG"}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **ray}


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    home = tmp_path_factory.mktemp("head-home")
    proc = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=SECRET))
    try:
        address = proc.stdout.readline().strip()
        if not address:
            pytest.fail(f"the authenticated head did not start: {proc.stderr.read()[-2000:]}")
        yield address
    finally:
        proc.stdin.close()  # the head shuts its cluster down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # a study on one CPU (25 s); the default run connects with the token below (right_token)
def test_a_study_reaches_an_authenticated_cluster_with_its_token(head, tmp_path, tiny_flags):
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    proc = subprocess.run([sys.executable, "-m", "study.run", "--space", "eca_kmap", "--address", head, "--trials", "1",
                           "--epochs", "1", "--quiet", "--out", str(tmp_path / "runs"), *tiny_flags],
                          capture_output=True, text=True, timeout=240,
                          env=_env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 finished (1 complete, 0 pruned)" in proc.stdout
    assert proc.stderr == "", proc.stderr  # not a line of Ray's


def test_without_the_token_the_study_is_one_line_and_creates_nothing(head, tmp_path, tiny_flags):
    proc = subprocess.run([sys.executable, "-m", "study.run", "--space", "eca_kmap", "--address", head, "--trials", "1",
                           "--epochs", "1", "--out", str(tmp_path / "runs"), *tiny_flags],
                          capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"{PROG}: error: --address: the Ray cluster at {head!r} requires a token (Ray's token authentication) and none was "
        "sent (RAY_AUTH_MODE is not set here): set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN, a file "
        "named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)")
    assert not (tmp_path / "runs").exists()


#: init_ray against the head under several settings, in one process: one line per case
CASES = textwrap.dedent("""
    import os, sys
    from study.cluster import init_ray
    address, tmp = sys.argv[1], sys.argv[2]
    cases = {
        "wrong": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
        "none": {"RAY_AUTH_MODE": "token"},
        "unreadable": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": tmp + "/no-such-file"},
        "home": {"RAY_AUTH_MODE": "token"},
        "right_token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": tmp + "/token"},  # last: it stays connected
    }
    open(tmp + "/token", "w").write(sys.argv[3] + "\\n")
    for name, env in cases.items():
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            os.environ.pop(key, None)
        os.environ.update(env)
        if name == "home":  # Ray's last place: ~/.ray/auth_token
            os.makedirs(tmp + "/.ray", exist_ok=True)
            open(tmp + "/.ray/auth_token", "w").write("a-stale-token\\n")
        try:
            init_ray(address)
            import ray
            print(name, "connected:", ray.get(ray.remote(lambda: 6 * 7).remote()))
        except ValueError as exc:
            print(name, exc)
""")


def test_the_right_token_connects_and_a_wrong_missing_or_unreadable_one_is_one_line_each(head, tmp_path):
    proc = subprocess.run([sys.executable, "-c", CASES, head, str(tmp_path), SECRET], capture_output=True, text=True, timeout=120,
                          env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    said = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert said["wrong"] == (f"address: the Ray cluster at {head!r} refused the token from RAY_AUTH_TOKEN: it is not that "
                             "cluster's token; give the cluster's token in RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, "
                             "or ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)")
    assert said["none"].startswith(f"address: RAY_AUTH_MODE=token here but there is no token to send to the Ray cluster at "
                                   f"{head!r}: give the cluster's token in RAY_AUTH_TOKEN, ")
    assert said["unreadable"] == (f"address: RAY_AUTH_TOKEN_PATH={tmp_path}/no-such-file: cannot read the token file "
                                  "(No such file or directory)")
    assert said["home"].startswith(f"address: the Ray cluster at {head!r} refused the token from {tmp_path}/.ray/auth_token: ")
    assert said["right_token"] == "connected: 42"  # the cluster's token from a file: a task ran on it
    assert proc.stderr == "", proc.stderr  # Ray's own retries and warnings are not shown


def test_the_local_ray_of_a_run_is_quiet_and_writes_no_token(tmp_path):
    script = ("import os\nfrom study.cluster import init_ray\nimport ray\nassert init_ray(None)\n"
              "print(os.environ['RAY_AUTH_MODE'], len(os.environ['RAY_AUTH_TOKEN']), ray.get(ray.remote(lambda: 6 * 7).remote()))\n"
              "ray.shutdown()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["token", "64", "42"]  # token authentication, a 256-bit token, and a task ran
    assert proc.stderr == "", proc.stderr  # Ray 2.59+ warned "Token authentication is enabled for this Ray cluster..."
    assert not (tmp_path / ".ray").exists()  # Ray's default would have written ~/.ray/auth_token


def test_an_unreadable_token_file_is_one_line_before_a_local_ray_starts(tmp_path, monkeypatch):
    from study.cluster import local_cluster_auth

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match=r"^RAY_AUTH_TOKEN_PATH=.*/absent: cannot read the token file \(No such file or directory\)$"):
        local_cluster_auth()  # (Ray's C++ side would abort the process)
    assert "RAY_AUTH_MODE" not in os.environ  # nothing set
