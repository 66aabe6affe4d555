"""A run's exit status says how it ended (issue 28): 0 when it ended as asked with a finished
trial, 3 when failed trials stopped it, 4 when no trial of the study has finished, the last
line naming the first failure; a damaged ``--data`` cache is refused before anything trains
(exit 2, nothing created, a resumed study's record unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from study.cli import EXIT_FAILED, EXIT_NOTHING_FINISHED, run_cli
from study.run import main

REPO = Path(__file__).resolve().parents[2]
PROG = "python -m study.run"
sys.path.insert(0, str(REPO / "tests" / "study"))  # the shared image-tree builder
from _data_trees import image_tree  # noqa: E402

#: a user space whose trial ``number`` fails in training when it is in ``FAIL`` (every trial with
#: ``FAIL = None``): its classifier has 2 outputs for a 10-class proxy
SPACE = '''
import dataclasses
from search_spaces import Budget, make_config
from study.config import AttentionSpec
FAIL = {fail}
def define(trial, *, backbone, width=None, **settings):
    """ECA with one k everywhere; some trials fail in training."""
    k = trial.suggest_categorical("k", [3, 5])
    config = make_config([AttentionSpec.of("eca", k=k)] * 4, backbone=backbone, width=width or 0.25, **settings)
    if FAIL is None or trial.number in FAIL:
        config = config.replace(arch=dataclasses.replace(config.arch, num_classes=2))
    return config
define.budget = Budget(trials=1, epochs=1)
if {grid}:
    define.grid = lambda **settings: {{"k": [3, 5]}}
'''


def _space(tmp_path: Path, fail, *, grid: bool = False) -> str:
    f = tmp_path / f"space_{abs(hash(str(fail)))}_{grid}.py"
    f.write_text(SPACE.format(fail=fail, grid=grid))
    return f"{f}:define"


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv], prog=PROG)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _last(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_a_run_that_failed_trials_stopped_exits_3_in_a_real_process(tmp_path, tiny_flags):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("STUDY_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "study.run", "--space", _space(tmp_path, None), "--runner", "local",
                           "--trials", "1", "--out", str(tmp_path / "runs"), "--name", "failing", *tiny_flags],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == EXIT_FAILED == 3, proc.stdout + proc.stderr
    assert "0 finished (0 complete, 0 pruned), 3 failed" in proc.stdout and "no completed trial" in proc.stdout
    last = _last(proc.stderr)
    assert last.startswith(f"{PROG}: the run stopped: 3 trials failed in it (a run stops after max(3, 1 runs) = 3 failures), "
                           "and no trial of the study has finished; first failure: trial 0: "), proc.stderr
    study = optuna.load_study(study_name="failing", storage=f"sqlite:///{tmp_path / 'runs' / 'failing' / 'study.db'}")
    error = study.trials[0].user_attrs["error"].strip().splitlines()[-1]  # the error line of the recorded traceback
    assert "arch.num_classes: is 2 but the proxy data has 10 classes" in error and last.endswith(f"trial 0: {error} (exit status 3)"), last
    assert "Traceback" not in proc.stderr
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3  # the record has every failure


def test_a_run_with_no_finished_trial_exits_4(tmp_path, capsys, tiny_flags):
    """A grid of two points, both failing: fewer failures than stop a run, the grid is done, nothing finished."""
    code, out, err = _cli(["--space", _space(tmp_path, None, grid=True), "--runner", "local", "--trials", "2",
                           "--out", tmp_path / "runs", *tiny_flags], capsys)
    assert code == EXIT_NOTHING_FINISHED == 4, out + err
    assert "stopped: the grid is exhausted" in out
    last = _last(err)
    assert last.startswith(f"{PROG}: no trial of the study has finished (2 trials failed); first failure: trial 0: "
                           "study.validate.ConfigError: arch.num_classes: is 2 but"), last
    assert last.endswith("(exit status 4)")


def test_failed_trials_within_the_budget_still_exit_0(tmp_path, capsys, tiny_flags):
    code, out, err = _cli(["--space", _space(tmp_path, (0,)), "--runner", "local", "--trials", "2", "--epochs", "1",
                           "--out", tmp_path / "runs", *tiny_flags], capsys)
    assert code == 0, out + err
    assert "2 finished (2 complete, 0 pruned), 1 failed" in out and "exit status" not in err


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from study.data import prepare

    tmp = tmp_path_factory.mktemp("cache")
    root = image_tree(tmp / "tree", ["a", "b", "c"], train=6, val=2)
    prepare("imagefolder", root, tmp / "cache", resolution=16, workers=1, progress=False)
    return tmp / "cache"


def _cut(cache: Path, tmp_path: Path) -> Path:
    import shutil

    damaged = Path(shutil.copytree(cache, tmp_path / "damaged"))
    with open(damaged / "train_images.npy", "r+b") as f:
        f.truncate(90)
    return damaged


def test_a_damaged_data_cache_trains_nothing_and_creates_nothing(cache, tmp_path, capsys, tiny_flags):
    damaged = _cut(cache, tmp_path)
    for runner in ("ray", "local"):  # refused while the flags are resolved: no Ray is started
        code, out, err = _cli(["--space", "eca_kmap", "--data", damaged, "--runner", runner, "--trials", "1", "--epochs", "1",
                               "--out", tmp_path / "runs"], capsys)
        assert code == 2 and out == ""
        line = err.strip()
        assert line.startswith(f"{PROG}: error: --data: {damaged / 'train_images.npy'} is cut short in its header (90 bytes)")
        assert "remake the cache: python -m study.data prepare --source imagefolder" in line and "\n" not in line
        assert not (tmp_path / "runs").exists()


def test_a_resumed_study_on_a_damaged_cache_is_refused_and_its_record_unchanged(cache, tmp_path, capsys, tiny_flags):
    import shutil

    data = Path(shutil.copytree(cache, tmp_path / "data"))
    base = ["--space", "eca_kmap", "--data", data, "--runner", "local", "--epochs", "1", "--width", "0.25", "--out", tmp_path / "runs",
            "--name", "k", "--set", "recipe.batch_size=8", "--set", "recipe.warmup_epochs=0", "--pruner", "none"]
    code, out, err = _cli([*base, "--trials", "1"], capsys)
    assert code == 0, out + err
    db = tmp_path / "runs" / "k" / "study.db"
    before = db.read_bytes()
    settings = json.loads((tmp_path / "runs" / "k" / "settings.json").read_text())
    with open(data / "val_images.npy", "r+b") as f:  # the cache cut short after the study began
        f.truncate(os.path.getsize(data / "val_images.npy") - 100)
    code, out, err = _cli(["--name", "k", "--resume", "--out", tmp_path / "runs", "--trials", "3"], capsys)
    assert code == 2, out + err
    assert f"{data / 'val_images.npy'} is cut short: " in err and "remake the cache" in err and len(err.strip().splitlines()) == 1
    assert db.read_bytes() == before  # nothing trained, nothing recorded
    assert json.loads((tmp_path / "runs" / "k" / "settings.json").read_text()) == settings
