"""study.trainer's data-parallel context: one process alone is the null context
(:class:`SingleProcess`), and it trains exactly as a real one-process gloo group does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.data import load_proxy
from study.trainer import Distributed, SingleProcess, state_digest, train
from study.trainer._distributed import as_context

CONFIG = TrialConfig(
    arch=ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=4),
    recipe=Recipe(epochs=2, batch_size=16, lr=0.1, warmup_epochs=0.5),
    proxy=ProxySpec(num_classes=4, resolution=16, images_per_class=16, val_per_class=5),
    seed=0,
)
EXACT = ("epoch", "top1", "top5", "val_loss", "train_loss", "lr")


def exact(history) -> list[tuple]:
    return [tuple(getattr(m, k) for k in EXACT) for m in history]


def test_the_null_context_is_rank_0_of_1_with_identity_reductions():
    ctx = SingleProcess()
    assert (ctx.rank, ctx.world_size, ctx.sync_bn, ctx.main) == (0, 1, False, True)
    assert isinstance(as_context(None), SingleProcess) and as_context(ctx) is ctx
    group = Distributed(rank=0, world_size=2)
    assert as_context(group) is group
    cpu = torch.device("cpu")
    assert ctx.all_sum([torch.tensor(2.5), torch.tensor(3, dtype=torch.int64), 4.0], cpu) == [2.5, 3.0, 4.0]
    assert ctx.broadcast_flag(True, cpu) is True and ctx.broadcast_flag(False, cpu) is False
    assert ctx.any_rank(torch.tensor(True), cpu) and not ctx.any_rank(False, cpu)
    assert ctx.any_nonfinite(torch.tensor(float("nan"))) and ctx.any_nonfinite(torch.tensor(float("inf")))
    assert not ctx.any_nonfinite(torch.tensor(1.0))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = state_digest(model)
    assert ctx.convert_model(model) is model and ctx.wrap(model, cpu) is model
    ctx.sync_buffers(model)
    assert state_digest(model) == before
    assert ctx.gather_strings("abc") == ["abc"] and ctx.result_extra(model, 16) == {}
    lines: list[str] = []
    ctx.announce(lines.append, global_batch=17, worker_batch=17, lr=0.1)
    assert lines == []
    assert repr(ctx) == "SingleProcess()"


def test_a_real_group_announces_its_layout_and_converts_batchnorm_only_with_sync_bn():
    lines: list[str] = []
    Distributed(rank=0, world_size=2).announce(lines.append, global_batch=33, worker_batch=16, lr=0.1)
    assert lines == ["data-parallel: 2 workers x 16 images = global batch 32 "
                     "(recipe.batch_size 33: the remainder of 1 is dropped), lr 0.1"]
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert Distributed(rank=0, world_size=2).convert_model(model) is model
    synced = Distributed(rank=0, world_size=2, sync_bn=True).convert_model(model)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())


@pytest.fixture
def gloo_group_of_one(tmp_path):
    """A real ``torch.distributed`` gloo process group of this process alone."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield Distributed.from_process_group()
    finally:
        dist.destroy_process_group()


def test_the_null_context_trains_exactly_as_a_one_process_gloo_group(gloo_group_of_one, tmp_path):
    data = load_proxy(CONFIG.proxy)
    alone = train(CONFIG, device="cpu", data=data, checkpoint_dir=tmp_path / "alone")
    lines: list[str] = []
    grouped = train(CONFIG, device="cpu", data=data, checkpoint_dir=tmp_path / "group", log=lines.append,
                    distributed=gloo_group_of_one)
    assert alone.outcome == grouped.outcome == "complete"
    assert exact(grouped.history) == exact(alone.history) and len(alone.history) == 2
    assert alone.costs.params == grouped.costs.params and alone.stages == grouped.stages
    assert "distributed" not in alone.extra  # the one-process result records no group
    record = grouped.extra["distributed"]
    assert (record["workers"], record["worker_batch"], record["global_batch"]) == (1, 16, 16)
    from study.trainer import read_checkpoint

    a, g = read_checkpoint(tmp_path / "alone"), read_checkpoint(tmp_path / "group")
    assert a["world_size"] == g["world_size"] == 1 and a["step"] == g["step"]
    assert all(torch.equal(a["model"][k], g["model"][k]) for k in a["model"])
    assert record["rank_digests"] == [state_digest(_loaded(a["model"]))]
    assert any(line.startswith("data-parallel: 1 workers x 16 images = global batch 16") for line in lines)


def _loaded(state: dict) -> nn.Module:
    """A module whose state dict is ``state`` (for its digest)."""
    from study.trainer import trial_model

    model = trial_model(CONFIG)
    model.load_state_dict(state)
    return model
