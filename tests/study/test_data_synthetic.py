"""The synthetic source: deterministic, balanced, sized by the ProxySpec."""

import pytest
import torch

from study.config import ProxySpec
from study.data import DEFAULT_TRAIN_PER_CLASS, DEFAULT_VAL_PER_CLASS, load_proxy, make_synthetic


def test_deterministic_and_shaped():
    spec = ProxySpec(num_classes=7, resolution=12, images_per_class=5, val_per_class=3, subset_seed=4)
    a, b = load_proxy(spec), load_proxy(spec)
    assert a.source == "synthetic" and a.resolution == 12 and a.num_classes == 7 and len(a.classes) == 7
    assert a.train.images.shape == (35, 12, 12, 3) and a.train.images.dtype == torch.uint8
    assert a.val.images.shape == (21, 12, 12, 3) and a.val.labels.dtype == torch.int64
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.images, b.val.images)
    assert torch.equal(a.train.labels, b.train.labels)
    assert torch.bincount(a.train.labels, minlength=7).tolist() == [5] * 7
    assert torch.bincount(a.val.labels, minlength=7).tolist() == [3] * 7


def test_seed_changes_images_and_val_size_does_not_change_train():
    a = make_synthetic(num_classes=5, resolution=16, train_per_class=4, val_per_class=2, seed=0)
    b = make_synthetic(num_classes=5, resolution=16, train_per_class=4, val_per_class=2, seed=1)
    c = make_synthetic(num_classes=5, resolution=16, train_per_class=4, val_per_class=6, seed=0)
    assert not torch.equal(a.train.images, b.train.images)
    assert torch.equal(a.train.images, c.train.images)
    assert len(a.val) == 10 and len(c.val) == 30 and torch.equal(a.val.labels.bincount(), torch.full((5,), 2))


def test_images_are_not_trivial():
    d = make_synthetic(num_classes=10, resolution=16, train_per_class=20, val_per_class=2, seed=0)
    x = d.train.images.float()
    # real contrast, every channel used, and images of one class differ from each other
    assert 20 < x.std() < 90
    assert all(0 < x[..., c].mean() < 255 for c in range(3))
    same_class = d.train.images[d.train.labels == 0].float()
    assert (same_class[0] - same_class[1]).abs().mean() > 5


def test_sizes_from_spec():
    d = load_proxy(ProxySpec(num_classes=4, resolution=8))
    assert len(d.train) == 4 * DEFAULT_TRAIN_PER_CLASS and len(d.val) == 4 * DEFAULT_VAL_PER_CLASS
    d = load_proxy(ProxySpec(num_classes=4, resolution=8, images_per_class=0.5))
    assert len(d.train) == 4 * round(0.5 * DEFAULT_TRAIN_PER_CLASS)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="train_per_class"):
        make_synthetic(train_per_class=0)
