"""prepare: imagefolder and imagenet100 trees decoded into a cache; skips; interruptions."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from study.config import ProxySpec
from study.data import PrepareWarning, imagenet100_classes, load_proxy, prepare, read_manifest, verify_cache

sys.path.insert(0, str(Path(__file__).parent))  # the shared tree builders, whatever pytest's import mode
from _data_trees import COLOURS, corrupt, image_tree

CLASSES = ["cat", "dog", "eel"]


def _close(pixels, colour, tol=12):
    return np.abs(np.asarray(pixels, dtype=np.int64) - np.asarray(colour)).max() <= tol


def test_imagefolder_cache_round_trip(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=4, val=2)
    bad = corrupt(root / "train" / "dog" / "broken.jpg")
    with pytest.warns(PrepareWarning, match="skipped 1 unreadable"):
        m = prepare("imagefolder", root, tmp_path / "cache", resolution=12, workers=2, chunk_size=3, progress=False)
    assert m["classes"] == CLASSES and m["resolution"] == 12 and m["source"] == "imagefolder"
    assert m["counts"]["train"] == {"images": 12, "per_class": [4, 4, 4]}
    assert m["counts"]["val"]["images"] == 6
    assert m["num_skipped"] == 1 and m["skipped"][0]["path"] == str(bad) and "Error" in m["skipped"][0]["error"]
    assert set(m["checksums"]) == {"train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"}
    assert read_manifest(tmp_path / "cache")["sha256"] == m["sha256"] and verify_cache(tmp_path / "cache") == []
    d = load_proxy(ProxySpec(source="cache", data=str(tmp_path / "cache"), resolution=12, num_classes=3))
    assert d.classes == CLASSES and d.train.images.shape == (12, 12, 12, 3) and d.source == "imagefolder"
    # shorter side resized, centre crop: the black margins are gone, every image is its class colour
    for img, lab in zip(d.train.images, d.train.labels):
        assert _close(img.reshape(-1, 3).float().mean(0), COLOURS[lab], tol=6)
        assert _close(img[6, 0], COLOURS[lab], tol=40) and _close(img[6, -1], COLOURS[lab], tol=40)
    assert torch.equal(d.val.labels, torch.tensor([0, 0, 1, 1, 2, 2]))


def test_cache_selection_on_load(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=4, val=2)
    prepare("imagefolder", root, tmp_path / "c", resolution=16, workers=1, progress=False)
    base = dict(source="cache", data=str(tmp_path / "c"), num_classes=3)
    small = load_proxy(ProxySpec(**base, resolution=8, images_per_class=2, val_per_class=1, subset_seed=1))
    assert small.resolution == 8 and small.train.images.shape == (6, 8, 8, 3)
    assert torch.bincount(small.train.labels).tolist() == [2, 2, 2] and len(small.val) == 3
    again = load_proxy(ProxySpec(**base, resolution=8, images_per_class=2, val_per_class=1, subset_seed=1))
    assert torch.equal(small.train.images, again.train.images)
    half = load_proxy(ProxySpec(**base, resolution=16, images_per_class=0.5))
    assert torch.bincount(half.train.labels).tolist() == [2, 2, 2]
    two = load_proxy(ProxySpec(**{**base, "num_classes": 2}, resolution=16))
    assert two.classes == CLASSES[:2] and set(two.train.labels.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="resolution: 32 px asked.*16 px"):
        load_proxy(ProxySpec(**base, resolution=32))
    with pytest.raises(ValueError, match="num_classes: 100 asked.*3 classes"):
        load_proxy(ProxySpec(source="cache", data=str(tmp_path / "c"), resolution=16))


def test_missing_val_is_an_error_unless_a_split_is_asked(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=5, with_val=False)
    with pytest.raises(ValueError, match="no val/ folder.*`val_split`"):
        prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=1, progress=False)
    m = prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=1, progress=False, val_split=0.4, seed=3)
    assert m["counts"]["train"]["per_class"] == [3, 3, 3] and m["counts"]["val"]["per_class"] == [2, 2, 2]
    assert m["notes"]["val_split"] == {"fraction": 0.4, "seed": 3, "from": "train"}
    with pytest.raises(ValueError, match="label_map: does not apply to source 'imagefolder'"):
        prepare("imagefolder", root, tmp_path / "d", resolution=8, label_map="x.txt")


def test_imagenet100_filters_and_labels_by_sorted_wnid(tmp_path):
    wnids = imagenet100_classes()
    present = [wnids[70], wnids[3], wnids[41]]          # a few of the 100, not in sorted order
    others = ["n09999991", "n09999992"]                 # ImageNet-1K classes outside the 100
    root = image_tree(tmp_path / "imagenet", present + others, train=2, val=1)
    m = prepare("imagenet100", root, tmp_path / "c", resolution=8, workers=1, progress=False)
    assert m["classes"] == wnids and m["num_classes"] == 100
    per = m["counts"]["train"]["per_class"]
    assert per[3] == per[41] == per[70] == 2 and sum(per) == 6
    assert len(m["notes"]["classes_without_train_images"]) == 97
    d = load_proxy(ProxySpec(source="cache", data=str(tmp_path / "c"), resolution=8))
    assert d.classes[3] == wnids[3] and sorted(set(d.train.labels.tolist())) == [3, 41, 70]
    for img, lab in zip(d.train.images, d.train.labels):  # label 70 carries the colour of present[0]
        assert _close(img.reshape(-1, 3).float().mean(0), COLOURS[[70, 3, 41].index(int(lab))], tol=8)
    # another class list
    (tmp_path / "mine.txt").write_text(f"# my classes\n{others[1]}\n{wnids[70]}  some name\n")
    m2 = prepare("imagenet100", root, tmp_path / "c2", resolution=8, workers=1, progress=False, classes=str(tmp_path / "mine.txt"))
    assert m2["classes"] == sorted([others[1], wnids[70]]) and m2["counts"]["train"]["per_class"] == [2, 2]


def test_interrupted_prepare_never_looks_complete_and_resumes(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=6, val=2)
    out = tmp_path / "cache"
    reference = prepare("imagefolder", root, tmp_path / "ref", resolution=8, workers=1, chunk_size=4, progress=False)
    calls = []

    def crash_after_two(split, chunk, total):
        calls.append((split, chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare("imagefolder", root, out, resolution=8, workers=1, chunk_size=4, progress=False, on_chunk=crash_after_two)
    assert not out.exists() and (tmp_path / "cache.partial").is_dir()
    state = json.loads((tmp_path / "cache.partial" / "state.json").read_text())
    assert len(state["splits"]["train"]["chunks"]) == 2
    with pytest.raises(ValueError, match="interrupted prepare.*again"):
        load_proxy(ProxySpec(source="cache", data=str(out), resolution=8, num_classes=3))
    resumed = []
    m = prepare("imagefolder", root, out, resolution=8, workers=1, chunk_size=4, progress=False,
                on_chunk=lambda *a: resumed.append(a))
    # 18 train images in chunks of 4: the two finished chunks were kept
    assert [a[:2] for a in resumed] == [("train", 2), ("train", 3), ("train", 4), ("val", 0), ("val", 1)]
    assert m["checksums"] == reference["checksums"]
    assert out.is_dir() and not (tmp_path / "cache.partial").exists()
    # the same command once more: nothing to do; other inputs need --force
    assert prepare("imagefolder", root, out, resolution=8, workers=1, progress=False)["created"] == m["created"]
    with pytest.raises(ValueError, match="`force`"):
        prepare("imagefolder", root, out, resolution=10, workers=1, progress=False)
    assert prepare("imagefolder", root, out, resolution=10, workers=1, progress=False, force=True)["resolution"] == 10


def test_resume_with_another_chunk_size_still_decodes_every_image(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=6, val=2)
    out = tmp_path / "cache"
    reference = prepare("imagefolder", root, tmp_path / "ref", resolution=8, workers=1, chunk_size=4, progress=False)

    def crash_after_two(split, chunk, total):
        if chunk == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare("imagefolder", root, out, resolution=8, workers=1, chunk_size=2, progress=False, on_chunk=crash_after_two)
    # chunks 0 and 1 of size 2 are done (images 0..3); chunk ids of size 5 would claim 0..9
    m = prepare("imagefolder", root, out, resolution=8, workers=1, chunk_size=5, progress=False)
    assert m["checksums"] == reference["checksums"]


def _first_chunk_last(task):
    """decode_chunk, but chunk 0 finishes after the others (runs in the pool workers)."""
    from study.data._decode import decode_chunk

    if task[0] == 0:
        time.sleep(1.0)
    return decode_chunk(task)


def test_manifest_lists_skipped_files_in_order_whatever_the_workers(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "tree", ["a"], train=0, val=2)
    for i in range(4):  # train/a/0.jpg .. 3.jpg: 0 and 3 are corrupt, in chunks 0 and 1 (size 2)
        (corrupt if i in (0, 3) else lambda p: Image.new("RGB", (9, 9)).save(p))(root / "train" / "a" / f"{i}.jpg")
    monkeypatch.setattr("study.data._prepare.decode_chunk", _first_chunk_last)
    with pytest.warns(PrepareWarning):
        parallel = prepare("imagefolder", root, tmp_path / "p", resolution=8, workers=2, chunk_size=2, progress=False)
    with pytest.warns(PrepareWarning):
        serial = prepare("imagefolder", root, tmp_path / "s", resolution=8, workers=1, chunk_size=2, progress=False)
    assert [s["path"] for s in parallel["skipped"]] == [str(root / "train" / "a" / f"{i}.jpg") for i in (0, 3)]
    assert parallel["skipped"] == serial["skipped"] and parallel["checksums"] == serial["checksums"]


def test_stale_partial_of_other_inputs_is_discarded(tmp_path):
    root = image_tree(tmp_path / "tree", CLASSES, train=2, val=1)
    partial = tmp_path / "c.partial"
    partial.mkdir()
    (partial / "state.json").write_text(json.dumps({"signature": "something else", "splits": {"train": {"done": True}}}))
    (partial / "junk.npy").write_bytes(b"x")
    m = prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=1, progress=False)
    assert m["counts"]["train"]["images"] == 6 and not partial.exists()
    assert not (tmp_path / "c" / "junk.npy").exists()


def test_corrupt_only_split_is_an_error(tmp_path):
    root = tmp_path / "t"
    corrupt(root / "train" / "a" / "x.jpg")
    image_tree(root, ["a"], train=0, val=1)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="every image was unreadable"):
        prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=1, progress=False)
    assert not (tmp_path / "c").exists()


def test_killed_prepare_process_is_finished_by_a_rerun(tmp_path):
    """SIGKILL a real prepare process mid-way, then run the same prepare again."""
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("val", 4)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n // 3):
                Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(root / split / c / f"{i}.jpg")
    out = tmp_path / "cache"
    code = (f"from study.data import prepare; prepare('imagefolder', {str(root)!r}, {str(out)!r}, resolution=8, "
            f"workers=1, chunk_size=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    state = tmp_path / "cache.partial" / "state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(json.loads(state.read_text())["splits"]["train"]["chunks"]) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "prepare finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = len(json.loads(state.read_text())["splits"]["train"]["chunks"])
    assert 3 <= done < 120
    resumed = []
    m = prepare("imagefolder", root, out, resolution=8, workers=1, chunk_size=1, progress=False,
                on_chunk=lambda *a: resumed.append(a))
    assert len([a for a in resumed if a[0] == "train"]) == 120 - done
    reference = prepare("imagefolder", root, tmp_path / "ref", resolution=8, workers=2, chunk_size=7, progress=False)
    assert m["checksums"] == reference["checksums"] and m["counts"]["train"]["images"] == 120


def test_interrupted_parallel_prepare_leaves_no_thread_and_resumes(tmp_path):
    """Decoding threads stop with the prepare that started them, and the rerun finishes the job."""
    import threading

    root = image_tree(tmp_path / "tree", CLASSES, train=8, val=2)
    reference = prepare("imagefolder", root, tmp_path / "ref", resolution=8, workers=1, chunk_size=2, progress=False)

    recorded: list[int] = []

    def stop_at_third(split, chunk, total):
        recorded.append(chunk)
        if len(recorded) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=3, chunk_size=2, progress=False, on_chunk=stop_at_third)
    assert [t.name for t in threading.enumerate() if t.name.startswith("study-prepare")] == []
    state = json.loads((tmp_path / "c.partial" / "state.json").read_text())
    assert not (tmp_path / "c").exists() and sorted(state["splits"]["train"]["chunks"]) == sorted(recorded)
    m = prepare("imagefolder", root, tmp_path / "c", resolution=8, workers=3, chunk_size=2, progress=False)
    assert m["checksums"] == reference["checksums"]



def test_parallel_decoding_keeps_the_callers_warnings(tmp_path):
    """Pillow's per-file warnings stay quiet, prepare's own warning always comes, and the
    process's warning filters are as they were: the decoding threads never enter
    ``warnings.catch_warnings`` themselves (interleaved, that left "ignore all" installed)."""
    root = image_tree(tmp_path / "tree", CLASSES, train=6, val=2)
    rng = np.random.default_rng(0)
    for i in range(12):  # large enough that the threads' decodes (GIL released) overlap
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(root / "train" / "cat" / f"big{i}.png")
    corrupt(root / "train" / "dog" / "broken.jpg")
    pal = Image.fromarray(np.full((28, 40, 3), 90, dtype=np.uint8)).convert("P")
    pal.save(root / "train" / "eel" / "palette.png", transparency=b"\x00" * 8)  # "Palette images with Transparency ..."
    before, interval = list(warnings.filters), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads hand the GIL over constantly: every interleaving comes up
    try:
        for i in range(8):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m = prepare("imagefolder", root, tmp_path / f"c{i}", resolution=8, workers=3, chunk_size=1, progress=False)
            assert [w.category for w in caught] == [PrepareWarning], [str(w.message) for w in caught]
            assert m["num_skipped"] == 1 and m["counts"]["train"]["images"] == 31
            assert warnings.filters == before
    finally:
        sys.setswitchinterval(interval)

# a process that runs Ray (its threads, its signal handlers) and busy torch intra-op threads,
# then prepares the same tree over and over with parallel decoding
_PREPARE_UNDER_RAY = r"""
import json, sys, threading, time
import ray, torch
from study.data import prepare

root, out, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
assert ray.get(ray.remote(lambda: 1).remote()) == 1
torch.set_num_threads(2)
stop = threading.Event()

def busy():
    a = torch.randn(192, 192)
    while not stop.is_set():
        a = torch.tanh(a @ a)

spinner = threading.Thread(target=busy, daemon=True)
spinner.start()
sums, seconds = [], []
for i in range(times):
    t = time.perf_counter()
    sums.append(prepare("imagefolder", root, f"{out}/{i}", resolution=8, workers=2, chunk_size=2, progress=False)["sha256"])
    seconds.append(time.perf_counter() - t)
stop.set()
spinner.join()
ray.shutdown()
print(json.dumps({"sums": sums, "seconds": seconds}))
"""


def test_prepare_in_a_process_running_ray_and_torch_threads(tmp_path):
    """No fork of a threaded process: 10 parallel prepares next to Ray and busy torch threads
    finish (no deadlocked child), give the serial cache, and print no signal dumps (forked
    children inherited Ray's SIGTERM handler and dumped their stacks when the pool closed)."""
    root = image_tree(tmp_path / "tree", CLASSES, train=4, val=2)
    reference = prepare("imagefolder", root, tmp_path / "ref", resolution=8, workers=1, progress=False)["sha256"]
    try:
        proc = subprocess.run([sys.executable, "-c", _PREPARE_UNDER_RAY, str(root), str(tmp_path / "out"), "10"],
                              check=False, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"prepare hung in a process running Ray: {(exc.stderr or b'')[-2000:]!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SIGTERM received" not in proc.stderr and "*** " not in proc.stderr, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["sums"] == [reference] * 10
