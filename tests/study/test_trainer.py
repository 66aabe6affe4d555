"""study.trainer: real training runs of a tiny ResNet-18 on a tiny synthetic proxy."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import pytest
import torch
from torch import nn

from study.attention import AttentionModule, register_attention
from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.costs import count_params
from study.data import load_proxy
from study.metrics import EpochMetrics, Reporter
from study.models import build_model
from study.trainer import CHECKPOINT_NAME, LRSchedule, build_optimizer, param_groups, read_checkpoint, train

PROXY = ProxySpec(num_classes=10, resolution=16, images_per_class=20, val_per_class=10)
ARCH = ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=10)
EPOCHS = 3
#: what must match exactly between two runs of the same config (not the timings)
EXACT = ("epoch", "top1", "top5", "val_loss", "train_loss", "lr")


def make_config(*, arch: ArchSpec = ARCH, seed: int = 0, **recipe) -> TrialConfig:
    recipe = {"epochs": EPOCHS, "batch_size": 16, "lr": 0.1, "warmup_epochs": 0.5, **recipe}
    return TrialConfig(arch=arch, recipe=Recipe(**recipe), proxy=PROXY, seed=seed)


def exact(history) -> list[tuple]:
    return [tuple(getattr(m, k) for k in EXACT) for m in history]


class Recording(Reporter):
    """Records what the trainer hands over; stops (or raises) at a given epoch."""

    def __init__(self, *, stop_at: int | None = None, raise_at: int | None = None):
        self.starts: list[tuple] = []
        self.reports: list[EpochMetrics] = []
        self.stop_at, self.raise_at = stop_at, raise_at

    def start(self, costs, stages) -> None:
        self.starts.append((costs, stages))

    def report(self, metrics: EpochMetrics) -> bool:
        if metrics.epoch == self.raise_at:
            raise RuntimeError(f"interrupted at epoch {metrics.epoch}")
        self.reports.append(metrics)
        return metrics.epoch == self.stop_at




@pytest.fixture(scope="module")
def data():
    return load_proxy(PROXY)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory):
    """One uninterrupted 3-epoch run with a checkpoint after every epoch."""
    ckpt = tmp_path_factory.mktemp("baseline")
    reporter = Recording()
    lines: list[str] = []
    result = train(make_config(), reporter, device="cpu", data=data, checkpoint_dir=ckpt, log=lines.append)
    return result, reporter, ckpt, lines


# --------------------------------------------------------------------------------------
# a real run


def test_real_run_improves_validation_top1(baseline):
    result, reporter, _, lines = baseline
    assert result.outcome == "complete" and result.message == ""
    tops = [m.top1 for m in result.history]
    assert [m.epoch for m in result.history] == [1, 2, 3]
    assert tops[-1] > tops[0], tops
    assert tops[-1] > 30.0, f"final top-1 {tops[-1]} is not well above chance (10 %)"
    assert result.best.top1 == max(tops)
    for m in result.history:
        assert m.top5 >= m.top1 and 0 <= m.top1 <= 100
        assert m.finite and m.epoch_time_s > 0 and m.images_per_s > 0
    walls = [m.wall_time_s for m in result.history]
    assert walls == sorted(walls)
    # 200 images, batch 16, drop_last: 12 steps of 16 images per epoch
    assert all(m.images_per_s == pytest.approx(192 / m.epoch_time_s) for m in result.history)
    assert sum(line.startswith("epoch ") for line in lines) == 3 and lines[0].startswith("costs: ")


def test_reporter_gets_costs_stages_and_every_epoch(baseline):
    result, reporter, _, _ = baseline
    assert len(reporter.starts) == 1
    costs, stages = reporter.starts[0]
    assert costs is result.costs
    assert costs.params == count_params(build_model(ARCH))
    assert costs.resolution == 16 and costs.macs_224 > costs.macs > 0 and costs.latency_ms > 0
    assert [s["stage"] for s in stages] == [0, 1, 2, 3]
    assert all(s["kind"] == "eca" and s["k"] >= 1 for s in stages)
    assert list(result.stages) == stages
    assert reporter.reports == list(result.history)


def test_lr_reported_follows_the_schedule(baseline):
    result, _, _, _ = baseline
    schedule = LRSchedule.from_recipe(make_config().recipe, steps_per_epoch=12)
    assert [m.lr for m in result.history] == pytest.approx([0.1 * schedule(12 * e - 1) for e in (1, 2, 3)])
    assert result.history[-1].lr < result.history[0].lr


def test_another_seed_gives_another_run(baseline, data):
    result, _, _, _ = baseline
    other = train(make_config(seed=1), Recording(stop_at=1), device="cpu", data=data)
    assert exact(other.history) != exact(result.history[:1])


# --------------------------------------------------------------------------------------
# stopping and divergence


def test_reporter_asking_to_stop_ends_the_run_after_that_epoch(data):
    reporter = Recording(stop_at=1)
    result = train(make_config(), reporter, device="cpu", data=data)
    assert result.outcome == "stopped"
    assert [m.epoch for m in result.history] == [1]
    assert [m.epoch for m in reporter.reports] == [1]
    assert "epoch 1" in result.message


def test_plain_callable_reporter_can_stop(data):
    seen = []
    result = train(make_config(), lambda m: seen.append(m.epoch) or True, device="cpu", data=data)
    assert result.outcome == "stopped" and seen == [1]


def test_huge_lr_diverges_without_an_exception(data):
    reporter = Recording()
    result = train(make_config(lr=1e6, label_smoothing=0.0), reporter, device="cpu", data=data)
    assert result.outcome == "diverged"
    assert "loss became" in result.message and "epoch 1" in result.message
    assert result.history == () and reporter.reports == []
    assert result.best is None and result.extra["diverged_epoch"] == 1
    assert len(reporter.starts) == 1  # costs were still handed over


def test_divergence_is_caught_within_the_epoch(data, monkeypatch):
    from study.trainer import _train

    monkeypatch.setattr(_train, "DIVERGENCE_CHECK_EVERY", 2)
    result = train(make_config(lr=1e6, label_smoothing=0.0), device="cpu", data=data)
    assert result.outcome == "diverged"
    step = int(result.message.split("(step ")[1].split(",")[0])
    assert step < 12 and step % 2 == 0, result.message  # before the end of the 12-step epoch


class _Poison(AttentionModule):
    """Identity, until ``armed``: then it turns its input into NaN while training."""

    armed = False

    def forward(self, x):
        return x * math.nan if (self.training and _Poison.armed) else x


@pytest.fixture
def poison_kind(monkeypatch):
    """Register ``test-poison`` for this test only (the registry is restored afterwards)."""
    from study.attention import _registry
    from study.catalogue import _kinds

    monkeypatch.setattr(_registry, "_REGISTRY", _registry._REGISTRY.copy())
    monkeypatch.setattr(_kinds._CATALOGUE, "runtime", dict(_kinds._CATALOGUE.runtime))
    monkeypatch.setattr(_Poison, "armed", False)
    register_attention("test-poison")(_Poison)
    return "test-poison"


def test_divergence_keeps_the_last_finite_metrics(data, poison_kind):
    class ArmAfterFirstEpoch(Recording):
        def report(self, metrics):
            _Poison.armed = True
            return super().report(metrics)

    arch = dataclasses.replace(ARCH, stages=(ARCH.stages[0], ARCH.stages[1], ARCH.stages[2], {"kind": poison_kind}))
    reporter = ArmAfterFirstEpoch()
    result = train(make_config(arch=arch), reporter, device="cpu", data=data)
    assert result.outcome == "diverged"
    assert [m.epoch for m in result.history] == [1] and result.final.finite
    assert [m.epoch for m in reporter.reports] == [1]  # the diverged epoch is not reported
    assert result.extra["diverged_epoch"] == 2
    assert "epoch 2" in result.message and "metrics of epoch 1" in result.message


# --------------------------------------------------------------------------------------
# checkpoints and resume


def test_checkpoint_after_every_epoch_holds_the_full_state(baseline):
    result, _, ckpt, _ = baseline
    assert sorted(p.name for p in ckpt.iterdir()) == [CHECKPOINT_NAME]  # no temporary file left
    state = read_checkpoint(ckpt)
    assert state["epoch"] == 3 and state["step"] == 36 and state["outcome"] == "complete"
    assert state["config"] == make_config().to_dict()
    assert [EpochMetrics.from_dict(m) for m in state["history"]] == list(result.history)
    assert {"model", "optimizer", "rng", "costs", "stages", "wall_time_s"} <= set(state)
    model = build_model(ARCH)
    model.load_state_dict(state["model"])


def test_resume_after_interruption_reproduces_the_uninterrupted_run(baseline, data, tmp_path):
    result, _, _, _ = baseline
    interrupted = Recording(raise_at=2)
    with pytest.raises(RuntimeError, match="interrupted at epoch 2"):
        train(make_config(), interrupted, device="cpu", data=data, checkpoint_dir=tmp_path)
    assert exact(interrupted.reports) == exact(result.history[:1])  # the same seed reproduces epoch 1
    assert read_checkpoint(tmp_path)["epoch"] == 1  # epoch 2 was never committed

    with pytest.raises(FileExistsError, match="resume"):
        train(make_config(), device="cpu", data=data, checkpoint_dir=tmp_path)

    reporter = Recording()
    resumed = train(make_config(), reporter, device="cpu", data=data, checkpoint_dir=tmp_path, resume=True)
    assert resumed.outcome == "complete"
    assert exact(resumed.history) == exact(result.history)
    assert [m.epoch for m in reporter.reports] == [2, 3] and len(reporter.starts) == 1
    assert reporter.starts[0][0] == interrupted.starts[0][0]  # costs come from the checkpoint
    assert resumed.history[0].wall_time_s <= resumed.history[1].wall_time_s

    # a finished checkpoint gives its result back without training
    again = train(make_config(), Recording(raise_at=1), device="cpu", data=data, checkpoint_dir=tmp_path, resume=True)
    assert again.outcome == "complete" and exact(again.history) == exact(result.history)


def test_resume_refuses_a_checkpoint_of_another_config(baseline, data):
    _, _, ckpt, _ = baseline
    with pytest.raises(ValueError, match=r"different config \(differs in recipe.lr, seed\)"):
        train(make_config(lr=0.05, seed=3), device="cpu", data=data, checkpoint_dir=ckpt, resume=True)


def test_resume_without_a_checkpoint_starts_fresh(data, tmp_path):
    result = train(make_config(epochs=1, warmup_epochs=0.0), device="cpu", data=data, checkpoint_dir=tmp_path / "new", resume=True)
    assert result.outcome == "complete" and read_checkpoint(tmp_path / "new")["epoch"] == 1


# --------------------------------------------------------------------------------------
# input checks


def test_class_count_mismatch_is_a_clear_error(data):
    arch = dataclasses.replace(ARCH, num_classes=7)
    with pytest.raises(ValueError, match=r"num_classes: is 7 but the proxy data has 10 classes"):
        train(make_config(arch=arch), device="cpu", data=data)


def test_bad_device_and_config_are_rejected(data):
    with pytest.raises(ValueError, match="device"):
        train(make_config(), device="tpu:0", data=data)
    with pytest.raises(TypeError, match="config"):
        train(make_config().to_dict(), data=data)


# --------------------------------------------------------------------------------------
# optimizer and schedule


def test_no_weight_decay_on_batchnorm_and_bias():
    model = build_model(ARCH)
    groups = {g["name"]: g for g in param_groups(model, 5e-4)}
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0.0
    no_decay = {id(p) for p in groups["no_decay"]["params"]}
    decay = {id(p) for p in groups["decay"]["params"]}
    assert no_decay | decay == {id(p) for p in model.parameters()} and not no_decay & decay
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert {id(module.weight), id(module.bias)} <= no_decay
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert id(module.weight) in decay
            if module.bias is not None:
                assert id(module.bias) in no_decay

    # behaviour: a step with zero gradients shrinks only the decayed weights
    optimizer = build_optimizer(model, Recipe(lr=0.5, weight_decay=0.1))
    before = {id(p): p.detach().clone() for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p in model.parameters():
        if id(p) in no_decay:
            assert torch.equal(p, before[id(p)])
        elif before[id(p)].abs().sum() > 0:
            assert p.abs().sum() < before[id(p)].abs().sum()
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9


def test_one_dimensional_attention_weights_are_decayed():
    # SE-Var2's per-channel weight is 1-D but is neither a BN parameter nor a bias
    for kind in ("se_var2", "cbam"):
        model = build_model(ArchSpec.uniform("resnet18", kind, stem="lowres", width=0.25, num_classes=5))
        groups = {g["name"]: g for g in param_groups(model, 5e-4)}
        decay = {id(p) for p in groups["decay"]["params"]}
        no_decay = {id(p) for p in groups["no_decay"]["params"]}
        attention = model.stages[0][0].attention
        if kind == "se_var2":
            assert id(attention.weight) in decay
        else:
            assert {id(attention.spatial_bn.weight), id(attention.spatial_bn.bias), id(attention.mlp[0].bias)} <= no_decay
        assert len(decay) + len(no_decay) == len(list(model.parameters()))


def test_cosine_schedule_shape():
    s = LRSchedule.from_recipe(Recipe(epochs=10, warmup_epochs=2), steps_per_epoch=5)
    values = [s(i) for i in range(50)]
    warm, decay = values[:10], values[10:]
    assert warm == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear, reaches the peak
    assert decay[0] == 1.0
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly decreasing
    assert s(10 + 20) == pytest.approx(0.5)  # half-way through the decay
    assert 0 < decay[-1] < 0.01
    assert s(50) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_shape():
    s = LRSchedule.from_recipe(Recipe(epochs=9, warmup_epochs=1, schedule="step", step_every=3, step_factor=0.1), steps_per_epoch=4)
    per_epoch = [s(4 * e + 3) for e in range(9)]
    assert per_epoch == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    assert [s(i) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_schedule_without_warmup_and_bad_arguments():
    s = LRSchedule.from_recipe(Recipe(epochs=2, warmup_epochs=0), steps_per_epoch=3)
    assert s(0) == 1.0
    with pytest.raises(ValueError, match="steps_per_epoch"):
        LRSchedule(total_steps=4, steps_per_epoch=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        LRSchedule(total_steps=4, steps_per_epoch=2, warmup_steps=5)
    with pytest.raises(ValueError, match="schedule"):
        LRSchedule(total_steps=4, steps_per_epoch=2, schedule="linear")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compiled_model_trains(tmp_path):
    """recipe.compile wraps the model in torch.compile (minutes on CPU: C++ kernels). The val
    split is whole evaluation batches (160 = 5 x 32), so the model compiles twice (training,
    then evaluation), not a third time for a last, smaller batch."""
    proxy = dataclasses.replace(PROXY, val_per_class=16)
    config = make_config(compile=True, epochs=2).replace(proxy=proxy)
    result = train(config, device="cpu", data=load_proxy(proxy), checkpoint_dir=tmp_path)
    assert result.outcome == "complete" and result.history[-1].top1 > result.history[0].top1
    model = build_model(ARCH)
    model.load_state_dict(read_checkpoint(tmp_path)["model"])  # the plain module's weights are saved


# --------------------------------------------------------------------------------------
# bf16 autocast and channels-last: on CUDA by default, on any device when the recipe asks


def test_numerics_are_cuda_only_by_default_and_follow_an_explicit_recipe_anywhere():
    from study.trainer import numerics

    last, plain = torch.channels_last, torch.contiguous_format
    assert numerics(Recipe(), "cpu") == (False, plain)
    assert numerics(Recipe(), "cuda") == (True, last)
    assert numerics(Recipe(amp=True, channels_last=True), "cpu") == (True, last)
    assert numerics(Recipe(amp=True), "cpu") == (True, plain)
    assert numerics(Recipe(amp=False, channels_last=False), "cuda") == (False, plain)
    assert Recipe.from_dict(Recipe(amp=True).to_dict()) == Recipe(amp=True) and Recipe().to_dict()["amp"] is None
    with pytest.raises(ValueError, match=r"amp: expected true, false or null \(on CUDA only\), got 'yes'"):
        Recipe(amp="yes")


class _Probe(AttentionModule):
    """Identity that records the dtype and layout of what it sees while training."""

    seen: ClassVar[list] = []

    def forward(self, x):
        if self.training:
            _Probe.seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
        return x


@pytest.fixture
def probe_kind(monkeypatch):
    from study.attention import _registry
    from study.catalogue import _kinds

    monkeypatch.setattr(_registry, "_REGISTRY", _registry._REGISTRY.copy())
    monkeypatch.setattr(_kinds._CATALOGUE, "runtime", dict(_kinds._CATALOGUE.runtime))
    monkeypatch.setattr(_Probe, "seen", [])
    register_attention("test-probe")(_Probe)
    return "test-probe"


@pytest.mark.parametrize("recipe,expected", [({}, (torch.float32, False)),
                                             ({"amp": True, "channels_last": True}, (torch.bfloat16, True))])
def test_amp_and_channels_last_act_on_the_cpu_when_the_recipe_asks(data, probe_kind, recipe, expected):
    arch = dataclasses.replace(ARCH, stages=(*ARCH.stages[:3], {"kind": probe_kind}))
    result = train(make_config(arch=arch, epochs=1, **recipe), device="cpu", data=data)
    assert result.outcome == "complete" and result.final.finite
    assert _Probe.seen and set(_Probe.seen) == {expected}


# --------------------------------------------------------------------------------------
# streaming data and the rank-aware pieces (the data-parallel runs themselves are in
# tests/study/test_train_distributed.py, on Ray)


def test_streaming_the_data_from_host_memory_trains_the_same_run(baseline, data):
    result, _, _, _ = baseline
    streamed = train(make_config(), Recording(stop_at=1), device="cpu", data=data, placement="host")
    assert exact(streamed.history) == exact(result.history[:1])


def test_per_worker_batch_drops_the_remainder_and_needs_a_batch_per_worker():
    from study.trainer import per_worker_batch

    assert per_worker_batch(256, 1) == 256 and per_worker_batch(256, 4) == 64 and per_worker_batch(256, 3) == 85
    with pytest.raises(ValueError, match=r"workers: 5 workers cannot share a global batch of 4 images"):
        per_worker_batch(4, 5)
    with pytest.raises(ValueError, match="workers: must be an integer >= 1"):
        per_worker_batch(4, 0)


def test_distributed_spec_checks_its_rank_and_converts_batchnorm():
    from study.trainer import Distributed, state_digest

    with pytest.raises(ValueError, match=r"rank: must be an integer in \[0, 1\]"):
        Distributed(rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        Distributed(rank=0, world_size=0)
    with pytest.raises(RuntimeError, match="not initialised"):
        Distributed.from_process_group()
    assert Distributed(rank=0, world_size=2).main and not Distributed(rank=1, world_size=2).main
    model = build_model(ARCH)
    before = state_digest(model)
    synced = Distributed.convert_sync_bn(model)
    bns = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    assert state_digest(synced) == before  # the same weights, only the BN class changed
    with torch.no_grad():
        next(synced.parameters()).add_(1.0)
    assert state_digest(synced) != before
