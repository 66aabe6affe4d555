"""imagenet-downsampled: batch files (npz and pickle), plane-by-plane rows, map_clsloc labels."""

import pickle

import numpy as np
import pytest
import torch

from study.config import ProxySpec
from study.data import imagenet100_classes, load_proxy, prepare, read_label_map

WNIDS = imagenet100_classes()
# a small devkit-style map: 1-based labels in the devkit's (not sorted) order, some classes outside the 100
MAP = [("n09999993", "not_in_100"), (WNIDS[50], "fifty"), (WNIDS[2], "two"), ("n09999994", "other"), (WNIDS[99], "last")]


def _rows(images):  # NHWC -> one row per image, all R, then all G, then all B
    return images.transpose(0, 3, 1, 2).reshape(images.shape[0], -1)


def _write(tmp_path, side=8, n=20, seed=0, pickled=False):
    rng = np.random.default_rng(seed)
    root = tmp_path / "ds"
    root.mkdir()
    (tmp_path / "map_clsloc.txt").write_text("".join(f"{w} {i} {name}\n" for i, (w, name) in enumerate(MAP, 1)))
    truth = {}
    for name in ("train_data_batch_1", "train_data_batch_2", "val_data"):
        images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
        labels = rng.integers(1, len(MAP) + 1, n)  # 1-based
        truth[name] = (images, labels)
        if pickled and name == "train_data_batch_2":
            with open(root / name, "wb") as f:
                pickle.dump({"data": _rows(images), "labels": labels.tolist(), "mean": np.zeros(3)}, f)
        else:
            np.savez(root / f"{name}.npz", data=_rows(images), labels=labels)
    return root, tmp_path / "map_clsloc.txt", truth


def _expected(truth, names):
    images = np.concatenate([truth[n][0] for n in names])
    labels = np.concatenate([truth[n][1] for n in names])
    wnid = np.array([MAP[label - 1][0] for label in labels])
    keep = np.isin(wnid, WNIDS)
    return images[keep], np.array([WNIDS.index(w) for w in wnid[keep]])


def test_label_map_and_pixel_layout(tmp_path):
    root, label_map, truth = _write(tmp_path, pickled=True)
    m = prepare("imagenet-downsampled", root, tmp_path / "c", resolution=8, label_map=str(label_map), progress=False)
    assert m["classes"] == WNIDS and m["notes"]["native_resolution"] == 8
    d = load_proxy(ProxySpec(source="cache", data=str(tmp_path / "c"), resolution=8))
    for split, names in (("train", ["train_data_batch_1", "train_data_batch_2"]), ("val", ["val_data"])):
        images, labels = _expected(truth, names)
        got = getattr(d, split)
        assert set(labels.tolist()) <= {2, 50, 99} and len(labels) > 0
        assert torch.equal(got.labels, torch.from_numpy(labels))
        assert torch.equal(got.images, torch.from_numpy(images))


def test_downsampled_to_a_lower_resolution(tmp_path):
    root, label_map, truth = _write(tmp_path, side=16, n=8)
    m = prepare("imagenet-downsampled", root, tmp_path / "c", resolution=8, label_map=str(label_map), progress=False)
    assert m["resolution"] == 8 and "16 px -> 8 px" in m["resize"]
    with pytest.raises(ValueError, match="resolution: 32 px asked.*16 px"):
        prepare("imagenet-downsampled", root, tmp_path / "d", resolution=32, label_map=str(label_map), progress=False)


def test_label_map_is_required_and_checked(tmp_path):
    root, label_map, _ = _write(tmp_path, n=4)
    with pytest.raises(ValueError, match="label_map: source imagenet-downsampled needs .*map_clsloc.txt"):
        prepare("imagenet-downsampled", root, tmp_path / "c", resolution=8, progress=False)
    short = tmp_path / "short.txt"
    short.write_text("".join(f"{w} {i} x\n" for i, (w, _) in enumerate(MAP[:3], 1)))
    with pytest.raises(ValueError, match="label [45] is not in `label_map`"):
        prepare("imagenet-downsampled", root, tmp_path / "c", resolution=8, label_map=str(short), progress=False)
    assert not (tmp_path / "c").exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("kit_fox 1 n02119789\n")
    with pytest.raises(ValueError, match="expected 'WNID LABEL NAME'"):
        read_label_map(bad)
    assert read_label_map(label_map)[2] == WNIDS[50]
