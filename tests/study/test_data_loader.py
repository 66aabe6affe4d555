"""DeviceLoader: shapes, normalization, determinism, and the augmentations' geometry."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from study.data import IMAGENET_MEAN, IMAGENET_STD, DeviceLoader, Split, list_augments, make_synthetic


@pytest.fixture(scope="module")
def split():
    return make_synthetic(num_classes=5, resolution=16, train_per_class=9, val_per_class=2, seed=0).train  # 45 images


def _denorm(x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean) * 255


def test_eval_is_the_centre_view_in_order(split):
    loader = DeviceLoader(split, batch_size=16, device="cpu", train=False, seed=0)
    assert len(loader) == 3 and not loader.drop_last
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(16, 3, 16, 16), (16, 3, 16, 16), (13, 3, 16, 16)]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.is_contiguous()
    assert torch.equal(y, split.labels)
    assert torch.allclose(_denorm(x), split.images.permute(0, 3, 1, 2).float(), atol=1e-3)


def test_train_shuffles_drops_last_and_is_deterministic(split):
    a = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=3)
    b = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=3)
    c = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=4)
    assert len(a) == 5 and a.num_samples == 40
    ea, eb, ec = list(a), list(b), list(c)
    assert len(ea) == 5 and all(x.shape == (8, 3, 16, 16) for x, _ in ea)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(ea, eb))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(ea, ec))
    # the next iteration is the next epoch; set_epoch goes back to any epoch
    second = list(a)
    assert not torch.equal(second[0][0], ea[0][0])
    a.set_epoch(0)
    assert torch.equal(list(a)[0][0], ea[0][0])
    a.set_epoch(1)
    assert torch.equal(list(a)[0][0], second[0][0])


def test_every_image_once_per_epoch(split):
    loader = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=0, drop_last=False)
    y = torch.cat([y for _, y in loader])
    assert torch.equal(torch.sort(y).values, torch.sort(split.labels).values)


def test_flip_gives_the_image_or_its_mirror():
    images = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    labels = torch.arange(32)
    loader = DeviceLoader(Split(images, labels), batch_size=32, device="cpu", train=True, seed=0, augment="flip")
    (x, y), = list(loader)
    pix = _denorm(x).round()
    ref = images[y].permute(0, 3, 1, 2).float()
    same = (pix - ref).abs().amax((1, 2, 3)) < 0.5
    mirror = (pix - ref.flip(3)).abs().amax((1, 2, 3)) < 0.5
    assert bool((same | mirror).all()) and same.any() and mirror.any()


def test_crop_flip_is_a_reflect_padded_crop():
    images = torch.randint(0, 256, (12, 16, 16, 3), dtype=torch.uint8)
    labels = torch.arange(12)
    loader = DeviceLoader(Split(images, labels), batch_size=12, device="cpu", train=True, seed=1, augment="crop_flip")
    assert loader.pad == 2
    (x, y), = list(loader)
    pix = _denorm(x).round()
    shifted = 0
    for out, i in zip(pix, y):
        padded = F.pad(images[i].permute(2, 0, 1).float()[None], (2, 2, 2, 2), mode="reflect")[0]
        views = [v for oy, ox in itertools.product(range(5), range(5)) for v in
                 (padded[:, oy:oy + 16, ox:ox + 16], padded[:, oy:oy + 16, ox:ox + 16].flip(2))]
        hits = [k for k, v in enumerate(views) if (v - out).abs().max() < 0.5]
        assert hits, "output is not a reflect-padded crop (or its mirror) of its image"
        shifted += hits[0] // 2 != 12
    assert shifted > 0


@pytest.mark.parametrize("augment", list_augments())
def test_every_augment_runs_and_is_seeded(split, augment):
    a = DeviceLoader(split, batch_size=16, device="cpu", train=True, seed=5, augment=augment)
    b = DeviceLoader(split, batch_size=16, device="cpu", train=True, seed=5, augment=augment)
    xa, xb = next(iter(a))[0], next(iter(b))[0]
    assert xa.shape == (16, 3, 16, 16) and torch.isfinite(xa).all() and torch.equal(xa, xb)


def test_channels_last_output(split):
    loader = DeviceLoader(split, batch_size=4, device="cpu", train=True, seed=0, memory_format=torch.channels_last)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_small_split_still_gives_a_batch(split):
    tiny = split.subset(torch.arange(3))
    loader = DeviceLoader(tiny, batch_size=8, device="cpu", train=True, seed=0)
    assert len(loader) == 1 and next(iter(loader))[0].shape[0] == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 4, "augment": "cutmix"}, "augment.*crop_flip"),
])
def test_bad_arguments_are_named(split, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeviceLoader(split, device="cpu", train=True, seed=0, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", ["none", "rrc_flip"])
def test_host_resident_split_on_cuda_gives_the_cpu_batches_while_the_gpu_is_busy(split, augment, monkeypatch):
    """A split kept in pinned host memory is staged through pinned buffers copied
    asynchronously; a buffer must not be refilled while its copy is still queued behind
    GPU work (the consumer's _sleep stands in for a training step)."""
    import study.data._loader as loader_module

    monkeypatch.setattr(loader_module, "DEVICE_FRACTION", 0.0)  # never on the device
    gpu = DeviceLoader(split, batch_size=4, device="cuda", train=True, seed=3, augment=augment, drop_last=False)
    assert not gpu.on_device
    cpu = DeviceLoader(split, batch_size=4, device="cpu", train=True, seed=3, augment=augment, drop_last=False)
    got = []
    for x, y in gpu:
        torch.cuda._sleep(20_000_000)  # keep the stream busy so later copies queue up
        got.append((x.clone(), y.clone()))
    torch.cuda.synchronize()
    for (x, y), (xc, yc) in zip(got, cpu, strict=True):
        assert torch.equal(y.cpu(), yc)
        torch.testing.assert_close(x.cpu(), xc, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------
# data-parallel shards and streaming from host memory


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("augment", list_augments())
@pytest.mark.parametrize("drop_last", [True, False])
def test_two_shards_together_are_the_one_process_batches(split, augment, drop_last):
    """Rank r of 2 with batch b takes its slice of every global batch of 2b, with the
    augmentation one process draws for that global batch: concatenated, the ranks' batches
    are the one-process batches of 2b, bit for bit."""
    one = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=3, augment=augment, drop_last=drop_last)
    ranks = [DeviceLoader(split, batch_size=4, device="cpu", train=True, seed=3, augment=augment, drop_last=drop_last,
                          rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # every rank takes the same number of steps
    for epoch in (1, 2):
        for loader in (one, *ranks):
            loader.set_epoch(epoch)
        for (x, y), (x0, y0), (x1, y1) in zip(_batches(one), _batches(ranks[0]), _batches(ranks[1]), strict=True):
            assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
    assert ranks[0].num_samples + ranks[1].num_samples == one.num_samples


def test_validation_shards_partition_the_split_without_padding(split):
    ranks = [DeviceLoader(split, batch_size=4, device="cpu", train=False, rank=r, world_size=3) for r in range(3)]
    ys = [torch.cat([y for _, y in loader]) for loader in ranks]
    assert [len(y) for y in ys] == [15, 15, 15] and sum(r.num_samples for r in ranks) == len(split)
    assert torch.equal(torch.cat(ys), split.labels)  # each image exactly once, in order
    odd = split.subset(torch.arange(44))
    sizes = [DeviceLoader(odd, batch_size=4, device="cpu", train=False, rank=r, world_size=3).num_samples for r in range(3)]
    assert sizes == [15, 15, 14]


def test_a_global_batch_too_small_to_share_is_an_error(split):
    tiny = split.subset(torch.arange(3))
    with pytest.raises(ValueError, match="cannot be shared by 4 workers"):
        DeviceLoader(tiny, batch_size=2, device="cpu", train=True, rank=0, world_size=4)


@pytest.mark.parametrize("augment", ["crop_flip", "rrc_flip", "none"])
def test_streaming_from_host_memory_gives_the_resident_batches(split, augment):
    """placement='host' forces the streaming path (on the CPU with unpinned staging buffers,
    on CUDA with pinned ones and asynchronous copies): the same batches, bit for bit."""
    resident = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=2, augment=augment, drop_last=False)
    streamed = DeviceLoader(split, batch_size=8, device="cpu", train=True, seed=2, augment=augment, drop_last=False,
                            placement="host")
    assert resident.placement == "device" and streamed.placement == "host" and not streamed.on_device
    for _ in range(2):  # two epochs: the two staging buffers are reused
        for (x, y), (xs, ys) in zip(_batches(resident), _batches(streamed), strict=True):
            assert torch.equal(x, xs) and torch.equal(y, ys)
    ev = [DeviceLoader(split, batch_size=16, device="cpu", train=False, placement=p) for p in ("device", "host")]
    for (x, y), (xs, ys) in zip(*map(_batches, ev), strict=True):
        assert torch.equal(x, xs) and torch.equal(y, ys)


def test_placement_follows_free_device_memory():
    from study.data import choose_placement
    from study.data._loader import DEVICE_FRACTION

    assert DEVICE_FRACTION == 0.5
    assert choose_placement(100, 1000) == "device" and choose_placement(500, 1000) == "device"
    assert choose_placement(501, 1000) == "host" and choose_placement(1, 0) == "host"


@pytest.mark.parametrize("kwargs, match", [
    ({"world_size": 0}, "world_size"),
    ({"rank": 2, "world_size": 2}, r"rank: expected an integer in \[0, 1\]"),
    ({"placement": "gpu"}, "placement: must be one of auto, device, host"),
])
def test_bad_shard_and_placement_arguments_are_named(split, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeviceLoader(split, batch_size=4, device="cpu", train=True, **kwargs)
