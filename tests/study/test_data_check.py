"""A damaged cache is refused before anything trains (issue 28): every array's header,
dtype, shape and byte size against the manifest, on a real cache written by
``python -m study.data prepare`` from Pillow-made images; ``verify`` checks the sha256 too."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from study.cli import run_cli
from study.data import CacheError, check_cache, load_cache, prepare, remake_command, verify_cache
from study.data.__main__ import PROG as DATA_PROG
from study.data.__main__ import main as data_main

sys.path.insert(0, str(Path(__file__).parent))  # the shared tree builders, whatever pytest's import mode
from _data_trees import image_tree


def _run(main, argv, prog, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv], prog=prog)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _one_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 3-class, 16 px cache written by the real ``python -m study.data prepare`` (in-process)."""
    tmp = tmp_path_factory.mktemp("check")
    root = image_tree(tmp / "tree", ["a", "b", "c"], train=4, val=2)
    out = tmp / "cache"
    with pytest.raises(SystemExit) as exc:
        run_cli(data_main, ["prepare", "--source", "imagefolder", "--root", str(root), "--res", "16", "--out", str(out),
                            "--workers", "1", "--no-progress"], prog=DATA_PROG)
    assert exc.value.code == 0
    return out


@pytest.fixture
def cache(made, tmp_path):
    """A fresh copy of the prepared cache, to damage."""
    return Path(shutil.copytree(made, tmp_path / "cache"))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _cut_images(d: Path) -> None:  # a copy interrupted half-way through the images
    _truncate(d / "train_images.npy", os.path.getsize(d / "train_images.npy") // 2)


def _cut_header(d: Path) -> None:  # ... or in the header: numpy's "EOF: reading array header"
    _truncate(d / "train_images.npy", 90)


def _missing(d: Path) -> None:
    os.remove(d / "val_labels.npy")


def _swapped(d: Path) -> None:  # the val labels copied over the train labels
    shutil.copy(d / "val_labels.npy", d / "train_labels.npy")


def _other_dtype(d: Path) -> None:
    np.save(d / "val_labels.npy", np.load(d / "val_labels.npy").astype(np.int32))


def _trailing(d: Path) -> None:  # two copies appended to one file
    with open(d / "val_images.npy", "ab") as f:
        f.write(b"\0" * 64)


def _not_npy(d: Path) -> None:
    (d / "val_images.npy").write_bytes(b"this is not a NumPy file at all, but long enough to have a header")


@pytest.mark.parametrize("damage, file, problem", [
    (_cut_images, "train_images.npy", "is cut short: "),
    (_cut_header, "train_images.npy", "is cut short in its header (90 bytes)"),
    (_missing, "val_labels.npy", "is missing"),
    (_swapped, "train_labels.npy", "has shape (6,), the manifest says (12,)"),
    (_other_dtype, "val_labels.npy", "holds int32 values, the cache stores int64"),
    (_trailing, "val_images.npy", "has 64 bytes more than"),
    (_not_npy, "val_images.npy", "is not a NumPy array file"),
])
def test_a_damaged_cache_is_refused_in_one_line_naming_the_file_and_the_remake(cache, damage, file, problem, capsys):
    manifest = check_cache(cache)
    damage(cache)
    with pytest.raises(CacheError) as exc:
        check_cache(cache)
    text = str(exc.value)
    assert text.startswith(f"{cache / file} {problem}"), text
    assert text.endswith(remake_command(cache, manifest))
    assert "--source imagefolder" in text and "--res 16" in text and "--force" in text
    with pytest.raises(CacheError):  # never half-read
        load_cache(cache)
    for command in ("info", "verify"):
        code, out, err = _run(data_main, [command, cache], DATA_PROG, capsys)
        assert code == 2 and out == ""
        assert f"{cache / file} {problem}" in _one_line(err, DATA_PROG)


def test_a_whole_cache_passes_and_verify_checks_the_checksums(cache, capsys):
    assert check_cache(cache)["resolution"] == 16
    assert verify_cache(cache) == []
    code, out, _ = _run(data_main, ["verify", cache], DATA_PROG, capsys)
    assert code == 0 and out.startswith("checksums: ok") and "train 12, val 6 images at 16 px" in out
    # one byte changed inside the images: header, dtype, shape and size still match
    with open(cache / "train_images.npy", "r+b") as f:
        f.seek(-10, os.SEEK_END)
        byte = f.read(1)
        f.seek(-10, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    check_cache(cache)
    assert verify_cache(cache) == ["train_images.npy"]
    for argv in (["verify", cache], ["info", cache, "--verify"]):
        code, _, err = _run(data_main, argv, DATA_PROG, capsys)
        assert code == 2
        line = _one_line(err, DATA_PROG)
        assert "train_images.npy differs from the manifest's sha256; remake the cache: python -m study.data prepare" in line


@pytest.mark.parametrize("version, words", [
    (0, "cache format 0 (written by study 0.0.1) is one this version no longer reads (1); remake the cache: "),
    (2, "cache format 2 (written by study 0.0.1) is newer than this version reads (1); upgrade channel-attention-study, "
        "or remake the cache: "),
])
def test_a_cache_of_another_version_is_refused_whole(cache, version, words, capsys):
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "version": version, "study_version": "0.0.1"}))
    with pytest.raises(CacheError, match=r"manifest\.json: " + words.replace("(", r"\(").replace(")", r"\)")):
        load_cache(cache)
    code, _, err = _run(data_main, ["info", cache], DATA_PROG, capsys)
    assert code == 2 and words in _one_line(err, DATA_PROG)


def test_a_manifest_without_its_arrays_is_refused(cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    del manifest["counts"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="manifest.json: the manifest lacks counts; remake the cache: python -m study.data prepare"):
        check_cache(cache)


def test_prepare_again_remakes_a_damaged_cache_of_the_same_inputs(cache, tmp_path):
    manifest = check_cache(cache)
    _cut_images(cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = prepare("imagefolder", manifest["root"], cache, resolution=16, workers=1, progress=False)
    assert any("is cut short" in str(w.message) and "preparing it again" in str(w.message) for w in caught)
    assert again["checksums"] == manifest["checksums"] and verify_cache(cache) == []
    # a damaged cache of other inputs is not replaced without --force
    _cut_images(cache)
    cut = (cache / "train_images.npy").read_bytes()
    with pytest.raises(ValueError, match="holds a cache that cannot be read .* pass `force` to replace it"):
        prepare("imagefolder", manifest["root"], cache, resolution=8, workers=1, progress=False)
    assert (cache / "train_images.npy").read_bytes() == cut  # left as it was


def test_study_train_refuses_a_damaged_data_cache_and_writes_nothing(cache, tmp_path, capsys):
    from study import train as train_cli
    from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig

    config = TrialConfig(arch=ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=3),
                         recipe=Recipe(epochs=1, batch_size=8), proxy=ProxySpec(num_classes=3, resolution=16), seed=0)
    (tmp_path / "config.json").write_text(config.to_json())
    _cut_images(cache)
    code, out, err = _run(train_cli.main, ["--config", tmp_path / "config.json", "--data", cache, "--out", tmp_path / "out"],
                          train_cli.PROG, capsys)
    assert code == 2 and out == ""
    line = _one_line(err, train_cli.PROG)
    assert f"--data: {cache / 'train_images.npy'} is cut short: " in line and "remake the cache: python -m study.data prepare" in line
    assert not (tmp_path / "out").exists()
