"""python -m study.train: one TrialConfig trained end to end, with metrics, checkpoints,
resume, refusal to overwrite and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from study import train as cli
from study.cli import run_cli
from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.metrics import MetricsWriter
from study.trainer import CHECKPOINT_NAME, read_checkpoint

CONFIG = TrialConfig(
    arch=ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=10),
    recipe=Recipe(epochs=2, batch_size=16, lr=0.1, warmup_epochs=0.5),
    proxy=ProxySpec(num_classes=10, resolution=16, images_per_class=20, val_per_class=10),
    seed=0,
)
EXACT = ("epoch", "top1", "top5", "val_loss", "train_loss", "lr")
OUTPUTS = {"config.json", "metrics.csv", "metrics.json", "result.json", CHECKPOINT_NAME}




def write_config(path: Path, config: TrialConfig = CONFIG) -> Path:
    path.write_text(config.to_json())
    return path


def exact(rows) -> list[tuple]:
    return [tuple(r[k] for k in EXACT) for r in rows]


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI as its entry point does; return its one stderr line (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        run_cli(cli.main, list(argv), prog=cli.PROG)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{cli.PROG}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The real entry point, in a subprocess: an uninterrupted 2-epoch run."""
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp / "config.json")
    out = tmp / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "study.train", "--config", str(config), "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    return proc, out


def test_end_to_end_writes_metrics_checkpoint_and_result(reference):
    proc, out = reference
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("epoch 1/2 ") for line in lines) and any(line.startswith("epoch 2/2 ") for line in lines)
    assert any(line.startswith("complete: 2 of 2 epochs; final top1") for line in lines), proc.stdout
    assert OUTPUTS <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    assert TrialConfig.from_json((out / "config.json").read_text()) == CONFIG
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    with open(out / "metrics.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == list(rows[0])
    assert [float(r["top1"]) for r in csv_rows] == [r["top1"] for r in rows]

    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "complete" and result["epochs_run"] == 2
    assert result["history"] == rows and result["final"] == rows[-1]
    assert result["config"] == CONFIG.to_dict()
    assert result["costs"]["params"] > 0 and result["costs"]["macs_224"] > result["costs"]["macs"]
    assert [s["kind"] for s in result["stages"]] == ["eca"] * 4

    state = read_checkpoint(out)
    assert state["epoch"] == 2 and state["outcome"] == "complete" and state["history"] == rows


def test_refuses_to_overwrite_a_run_with_a_checkpoint(reference, capsys):
    _, out = reference
    before = (out / CHECKPOINT_NAME).stat().st_mtime_ns
    line = cli_error(capsys, "--config", str(out / "config.json"), "--out", str(out))
    assert "already holds a checkpoint (epoch 2 of 2)" in line and "--resume" in line
    assert (out / CHECKPOINT_NAME).stat().st_mtime_ns == before


def test_resume_after_interruption_gives_the_uninterrupted_result(reference, tmp_path, monkeypatch, capsys):
    _, ref_out = reference
    config = write_config(tmp_path / "config.json")
    out = tmp_path / "out"
    report = MetricsWriter.report

    def interrupt_at_epoch_2(self, metrics):
        report(self, metrics)  # metrics.json gets epoch 2, the checkpoint does not
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(MetricsWriter, "report", interrupt_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--config", str(config), "--out", str(out)])
    assert read_checkpoint(out)["epoch"] == 1
    assert [r["epoch"] for r in json.loads((out / "metrics.json").read_text())] == [1, 2]
    monkeypatch.undo()

    capsys.readouterr()
    assert cli.main(["--config", str(config), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from epoch 1 of 2" in printed and "epoch 1/2 " not in printed and "epoch 2/2 " in printed

    ref_rows = json.loads((ref_out / "metrics.json").read_text())
    rows = json.loads((out / "metrics.json").read_text())
    assert exact(rows) == exact(ref_rows)
    with open(out / "metrics.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "complete" and exact(result["history"]) == exact(ref_rows)


def test_resume_of_a_finished_run_returns_its_result(reference, tmp_path, capsys):
    _, ref_out = reference
    out = tmp_path / "done"
    shutil.copytree(ref_out, out)
    assert cli.main(["--config", str(out / "config.json"), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "is finished (complete after epoch 2)" in printed and "epoch 1/2" not in printed
    assert json.loads((out / "result.json").read_text())["history"] == json.loads((ref_out / "result.json").read_text())["history"]


def test_resume_with_another_config_is_refused(reference, tmp_path, capsys):
    _, ref_out = reference
    out = tmp_path / "other"
    shutil.copytree(ref_out, out)
    line = cli_error(capsys, "--config", str(out / "config.json"), "--out", str(out), "--resume", "--epochs", "3")
    assert "different config (differs in recipe.epochs)" in line
    assert TrialConfig.from_json((out / "config.json").read_text()) == CONFIG  # kept


def test_default_out_folder_is_derived_from_the_config(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path / "config.json")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--config", str(config), "--epochs", "1"]) == 0
    one_epoch = CONFIG.replace(recipe=Recipe(**{**CONFIG.recipe.to_dict(), "epochs": 1}))
    out = tmp_path / "runs" / "train" / cli.derive_name(one_epoch)
    assert out.name.startswith("resnet18-eca-synthetic16-s0-")
    assert OUTPUTS <= {p.name for p in out.iterdir()}
    assert cli.derive_name(one_epoch) != cli.derive_name(CONFIG)


def test_diverged_run_exits_3_with_its_result(tmp_path, capsys):
    config = write_config(tmp_path / "config.json", CONFIG.replace(recipe=Recipe(epochs=1, batch_size=16, lr=1e6, label_smoothing=0.0)))
    assert cli.main(["--config", str(config), "--out", str(tmp_path / "out")]) == 3  # study.cli.EXIT_FAILED; 1 is a bug
    out, err = capsys.readouterr()
    assert "diverged: 0 of 1 epochs" in out
    assert err.strip().splitlines()[-1].startswith(f"{cli.PROG}: the run diverged: ") and err.strip().endswith("(exit status 3)")
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["outcome"] == "diverged" and result["history"] == [] and "loss became" in result["message"]


def test_data_dir_trains_on_a_prepared_cache(tmp_path, capsys):
    from study.data import prepare

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for c in range(3):
            folder = tmp_path / "tree" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 60 * c, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    prepare("imagefolder", tmp_path / "tree", tmp_path / "cache", resolution=16, workers=1, progress=False)
    config = CONFIG.replace(arch=ArchSpec.uniform("resnet18", "none", stem="lowres", width=0.25, num_classes=3),
                            recipe=Recipe(epochs=1, batch_size=6, warmup_epochs=0.0),
                            proxy=ProxySpec(resolution=16, num_classes=3))
    path = write_config(tmp_path / "config.json", config)
    out = tmp_path / "out"
    assert cli.main(["--config", str(path), "--data", str(tmp_path / "cache"), "--out", str(out)]) == 0
    saved = TrialConfig.from_json((out / "config.json").read_text())
    assert saved.proxy.source == "cache" and saved.proxy.data == str(tmp_path / "cache")
    assert json.loads((out / "result.json").read_text())["outcome"] == "complete"


@pytest.fixture(scope="module")
def cache3(tmp_path_factory):
    """A 3-class, 16 px cache prepared from real image files (JPEG and PNG)."""
    from study.data import prepare

    sys.path.insert(0, str(Path(__file__).parent))  # the shared tree builders, whatever pytest's import mode
    from _data_trees import image_tree

    tmp = tmp_path_factory.mktemp("cache3")
    image_tree(tmp / "tree", ["ant", "bee", "cat"], train=4, val=2)
    prepare("imagefolder", tmp / "tree", tmp / "cache", resolution=16, workers=1, progress=False)
    return tmp / "cache"


def _hand_written(path: Path, num_classes: int, **proxy) -> Path:
    """A config as a user writes it: no proxy class count (the default is 100)."""
    arch = {"backbone": "resnet18", "stem": "lowres", "width": 0.25, "num_classes": num_classes, "stages": [{"kind": "eca", "k": 3}] * 4}
    path.write_text(json.dumps({"arch": arch, "recipe": {"epochs": 1, "batch_size": 6, "warmup_epochs": 0},
                                **({"proxy": proxy} if proxy else {})}))
    return path


def test_data_gives_the_class_count_and_resolution_unless_the_config_sets_it(cache3, tmp_path, capsys):
    config = _hand_written(tmp_path / "c.json", 3)
    assert cli.main(["--config", str(config), "--data", str(cache3), "--out", str(tmp_path / "a")]) == 0
    saved = TrialConfig.from_json((tmp_path / "a" / "config.json").read_text()).proxy
    assert (saved.source, saved.data, saved.num_classes, saved.resolution) == ("cache", str(cache3), 3, 16)
    assert json.loads((tmp_path / "a" / "result.json").read_text())["outcome"] == "complete"
    # a resolution the config sets is kept (the cache is resized down on load)
    config = _hand_written(tmp_path / "c8.json", 3, resolution=8)
    assert cli.main(["--config", str(config), "--data", str(cache3), "--out", str(tmp_path / "b")]) == 0
    assert TrialConfig.from_json((tmp_path / "b" / "config.json").read_text()).proxy.resolution == 8


def test_data_for_another_class_count_is_one_line(cache3, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = cli_error(capsys, "--config", str(_hand_written(tmp_path / "c.json", 10)), "--data", str(cache3))
    assert f"--data: the cache {cache3} holds 3 classes, but the config's architecture has num_classes 10" in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (lambda d: ["--config", str(d / "missing.json")], "cannot read config"),
        (lambda d: ["--config", str(d / "bad.json")], "not valid JSON"),
        (lambda d: ["--config", str(d / "unknown.json")], "unknown key 'colour'"),
        (lambda d: ["--config", str(d / "good.json"), "--epochs", "0"], "--epochs: epochs: must be >= 1"),
        (lambda d: ["--config", str(d / "good.json"), "--epochs", "two"], "--epochs: invalid int value"),
        (lambda d: ["--config", str(d / "good.json"), "--data", str(d / "nowhere")], "--data: "),
        (lambda d: ["--config", str(d / "good.json"), "--data", str(d)], "not a complete cache"),
        (lambda d: ["--config", str(d / "good.json"), "--device", "tpu"], "--device: invalid choice"),
        (lambda d: ["--config", str(d / "good.json"), "--out", str(d / "good.json")], "is not a folder"),
        (lambda d: [], "one of the arguments --config --batch is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, make_args, expected):
    monkeypatch.chdir(tmp_path)  # the default --out is relative: bad input must create nothing there
    write_config(tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text(json.dumps({**CONFIG.to_dict(), "colour": "red"}))
    line = cli_error(capsys, *make_args(tmp_path))
    assert expected in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    line = cli_error(capsys, "--config", str(write_config(tmp_path / "c.json")), "--device", "cuda")
    assert "--device cuda: CUDA is not available" in line


def test_a_config_the_trainer_refuses_creates_nothing(tmp_path, capsys):
    """A config whose architecture does not fit its proxy's maps is refused before --out is made."""
    from study.config import AttentionSpec

    bad = CONFIG.replace(arch=CONFIG.arch.with_stages([AttentionSpec.of("ge_theta", size=5)] * 4))
    line = cli_error(capsys, "--config", str(write_config(tmp_path / "c.json", bad)), "--out", str(tmp_path / "out"))
    assert "size must equal the side of the square feature map" in line, line
    assert not (tmp_path / "out").exists()
