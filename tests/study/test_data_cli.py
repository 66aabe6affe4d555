"""python -m study.data: prepare and info end to end, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import run_cli
from study.data.__main__ import PROG, main

sys.path.insert(0, str(Path(__file__).parent))  # the shared tree builders, whatever pytest's import mode
from _data_trees import corrupt, image_tree


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv, prog=PROG)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_prepare_and_info_in_a_real_process(tmp_path):
    root = image_tree(tmp_path / "tree", ["a", "b"], train=3, val=1)
    corrupt(root / "val" / "b" / "zz.jpg")
    out = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-m", "study.data", "prepare", "--source", "imagefolder", "--root", str(root),
                        "--res", "8", "--out", str(out), "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "imagefolder at 8 px, 2 classes, train 6, val 2 images, 1 skipped" in r.stdout
    assert "warning: skipped 1 unreadable image(s)" in r.stderr and "zz.jpg" in r.stderr
    assert "decode train" in r.stderr  # the progress bar
    r = subprocess.run([sys.executable, "-m", "study.data", "info", str(out), "--verify"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("source") and "imagefolder" in line for line in lines)
    assert any(line.startswith("train images") and "6" in line for line in lines)
    assert any("zz.jpg" in line for line in lines) and "checksums: ok" in r.stdout


@pytest.mark.parametrize("argv, message", [
    (["prepare", "--source", "imagenet-downsampled", "--root", "{tmp}", "--res", "32", "--out", "{tmp}/c"],
     "--label-map: source imagenet-downsampled needs"),
    (["prepare", "--source", "imagefolder", "--root", "{tmp}/none", "--res", "32", "--out", "{tmp}/c"],
     "--root {tmp}/none: no such folder"),
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "32", "--out", "{tmp}/c"], "no val/ folder"),
    # the library names its parameters; the command line says them as flags
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "32", "--out", "{tmp}/c"], "pass --val-split FRACTION"),
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "8", "--out", "{tmp}/c", "--val-split", "0.5",
      "--label-map", "x.txt"], "--label-map: does not apply to source 'imagefolder' (it takes --val-split, --seed)"),
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "8", "--out", "{tmp}", "--val-split", "0.5"],
     "--out {tmp}: exists and is not a cache"),
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "32", "--out", "{tmp}/c", "--val-split", "1.5"],
     "--val-split: expected a fraction"),
    (["prepare", "--source", "imagefolder", "--root", "{tree}", "--res", "4", "--out", "{tmp}/c", "--val-split", "0.5"],
     "--res: must be an integer in [8, 1024]"),
    (["prepare", "--source", "synthetic", "--root", "{tmp}", "--res", "32", "--out", "{tmp}/c"], "invalid choice: 'synthetic'"),
    (["info", "{tmp}/nothing"], "no such cache folder"),
    (["info", "{tmp}/half"], "interrupted prepare"),
    (["info", "{tmp}"], "not a complete cache"),
])
def test_one_line_errors(tmp_path, capsys, argv, message):
    tree = image_tree(tmp_path / "tree", ["a"], train=2, with_val=False)
    (tmp_path / "half.partial").mkdir()
    fmt = {"tmp": str(tmp_path), "tree": str(tree)}
    code, out, err = _run([a.format(**fmt) for a in argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ") and message.format(**fmt) in lines[0]
    assert "Traceback" not in err
