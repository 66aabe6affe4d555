"""Attention parameters that depend on the feature map (BAM's dilation, Gather-Excite's global
``size``) resolve per stage from the resolution when left at their default, as the reductions
resolve from C; explicit values stay strict. Every kind with its defaults trains in every stage
of every backbone at 32 and 64 px, through the path ``python -m study.train`` takes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from study import train as train_cli
from study.attention import create_attention, get_attention, list_attention, resolve_attention
from study.config import ArchSpec, AttentionSpec, ConfigError, ProxySpec, Recipe, TrialConfig
from study.costs import measure_costs
from study.data import load_proxy
from study.models import build_model, describe_stages, list_backbones, stage_sizes
from study.trainer import build_optimizer, train, trial_model

BACKBONES = ["mobilenetv2", "resnet101", "resnet18", "resnet34", "resnet50"]
RESOLUTIONS = (32, 64)


def _config(backbone: str, kind: str, res: int, **recipe) -> TrialConfig:
    return TrialConfig(
        arch=ArchSpec.uniform(backbone, kind, stem="lowres", width=0.25, num_classes=2),
        recipe=Recipe(**{"epochs": 1, "batch_size": 2, "lr": 0.01, "warmup_epochs": 0.0, **recipe}),
        proxy=ProxySpec(num_classes=2, resolution=res, images_per_class=2, val_per_class=1),
    )


def test_the_backbones_here_are_all_registered_ones():
    assert sorted(list_backbones()) == BACKBONES


@pytest.mark.parametrize("kind", list_attention())
def test_only_the_map_parameters_depend_on_the_feature_map(kind):
    """Registry-driven: a known map changes the resolved parameters of a kind only in its
    ``MAP_PARAMS`` (those must be parameters of the kind), and only while they are left at
    their default."""
    cls = get_attention(kind)
    assert set(cls.MAP_PARAMS) <= set(cls.PARAMS)
    if kind in ("ge_theta", "ge_theta_plus"):
        unknown = cls.resolve(64, size=8)
    else:
        unknown = cls.resolve(64)
    known = cls.resolve(64, feature_map=(8, 8))
    assert {k: v for k, v in known.items() if k not in cls.MAP_PARAMS} == {k: v for k, v in unknown.items() if k not in cls.MAP_PARAMS}
    explicit = {name: unknown[name] for name in cls.MAP_PARAMS}
    assert cls.resolve(64, feature_map=(8, 8), **explicit) == unknown  # an explicit value is kept as given
    for name in cls.MAP_PARAMS:  # a map parameter is one: some map gives it a value of its own
        assert any(cls.resolve(64, feature_map=(s, s))[name] != unknown[name] for s in (2, 3, 4, 5, 14, 56)), name


def test_bam_dilation_is_the_papers_4_where_it_fits_else_the_largest_that_does():
    assert resolve_attention("bam", 64, feature_map=(8, 8))[1] == {"r": 16, "dilation": 4}
    assert [resolve_attention("bam", 64, feature_map=(s, s))[1]["dilation"] for s in (5, 4, 3, 2)] == [4, 3, 2, 1]
    assert resolve_attention("bam", 64)[1]["dilation"] == 4  # map unknown: the paper's value, checked at forward time
    with pytest.raises(ValueError, match=r"^attention 'bam': no dilation fits a 1x1 feature map"):
        resolve_attention("bam", 64, feature_map=(1, 1))


def test_gather_excite_global_size_is_the_maps_side():
    assert resolve_attention("ge_theta", 8, feature_map=(7, 7))[1] == {"extent": 0, "size": 7}
    assert resolve_attention("ge_theta_plus", 64, feature_map=(4, 4))[1] == {"extent": 0, "size": 4, "r": 16}
    assert resolve_attention("ge_theta", 8, feature_map=(7, 7), extent=4)[1] == {"extent": 4, "size": None}
    assert resolve_attention("ge_theta_minus", 8, feature_map=(7, 7))[1] == {"extent": 0}
    m = create_attention("ge_theta", 8, feature_map=(5, 5))
    assert m.gather[0].kernel_size == (5, 5)
    assert m(torch.randn(2, 8, 5, 5)).shape == (2, 8, 5, 5)
    with pytest.raises(ValueError, match=r"^attention 'ge_theta': size is required with extent=0 when the feature map is not known"):
        resolve_attention("ge_theta", 8)
    with pytest.raises(ValueError, match=r"^attention 'ge_theta': the global gather \(extent=0\) needs a square feature map, got 4x6"):
        resolve_attention("ge_theta", 8, feature_map=(4, 6))
    with pytest.raises(ValueError, match=r"^feature_map: expected \(H, W\), two integers >= 1, got \(0, 3\)"):
        resolve_attention("ge_theta", 8, feature_map=(0, 3))


def test_defaults_resolve_per_stage_from_the_resolution_and_are_recorded():
    arch = ArchSpec.uniform("resnet18", "bam", stem="lowres", width=0.25)
    assert [s.params["dilation"] for s in describe_stages(arch, 32)] == [4, 4, 4, 3]  # maps 32, 16, 8, 4
    assert [s.params["dilation"] for s in describe_stages(arch, 64)] == [4, 4, 4, 4]
    assert [s.params["dilation"] for s in describe_stages(arch)] == [4, 4, 4, 4]  # no resolution: the paper's
    model = build_model(arch, 32)
    assert model.resolution == 32
    assert [b.attention.spatial[3].dilation for st in model.stages for b in st] == [(4, 4)] * 6 + [(3, 3)] * 2
    ge = ArchSpec.uniform("mobilenetv2", "ge_theta_plus", stem="lowres", width=0.25)
    assert [s.params["size"] for s in describe_stages(ge, 32)] == [h for h, _ in stage_sizes(ge, 32)] == [32, 16, 8, 4, 4, 2, 2]


@pytest.mark.parametrize(
    "stage3,match",
    [
        ({"kind": "bam", "dilation": 4}, r"^stages\[3\]: attention 'bam': dilation must be an integer in \[1, 3\] on a 4x4 feature map"),
        ({"kind": "ge_theta", "size": 8},
         r"^stages\[3\]: attention 'ge_theta': size must equal the side of the square feature map .* \(this one is 4x4\), got size=8"),
        ({"kind": "ge_theta_minus", "extent": 4},
         r"^stages\[3\]: attention 'ge_theta_minus': extent must be 0 \(global\) or a power of two in \[2, 2\] on a 4x4"),
    ],
)
def test_explicit_values_stay_strict_and_fail_with_one_line_before_anything_is_built(stage3, match):
    arch = ArchSpec.uniform("resnet18", "none", stem="lowres", width=0.25)
    arch = arch.with_stages([AttentionSpec("none")] * 3 + [AttentionSpec.from_dict(stage3)])
    for call in (lambda: describe_stages(arch, 32), lambda: build_model(arch, 32)):
        with pytest.raises(ConfigError, match=match) as info:
            call()
        assert "\n" not in str(info.value)
    describe_stages(arch, 64)  # the same values fit the 8x8 map at 64 px


def test_bam_on_a_1x1_map_is_a_one_line_error_naming_the_stage():
    with pytest.raises(ConfigError, match=r"^stages\[3\]: attention 'bam': no dilation fits a 1x1 feature map"):
        build_model(ArchSpec.uniform("resnet18", "bam", width=0.25), 32)  # the ImageNet stem: 8, 4, 2, 1 at 32 px


def test_macs_at_224_of_a_gather_fitted_to_the_proxy_are_those_of_the_arch_built_for_224():
    arch = ArchSpec.uniform("resnet18", "ge_theta", stem="lowres", width=0.25, num_classes=10)
    costs = measure_costs(build_model(arch, 32), 32, latency=False)
    assert costs.resolution == 32 and costs.macs < costs.macs_224
    assert costs.macs_224 == measure_costs(arch, 224, latency=False).macs
    explicit = arch.with_stages([AttentionSpec.of("ge_theta", size=h) for h, _ in stage_sizes(arch, 32)])  # as attention_nas writes it
    assert measure_costs(explicit, 32, latency=False).macs_224 == costs.macs_224


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kind", list_attention())
def test_every_kind_with_its_defaults_trains_in_every_stage_of_every_backbone(kind, backbone, res):
    """One SGD step of the model ``train`` builds for the config (``trial_model``), at the
    proxy's resolution, with every stage at the kind's defaults."""
    config = _config(backbone, kind, res)
    model = trial_model(config)
    sides = [h for h, _ in stage_sizes(config.arch, res)]
    for info, side in zip(model.stage_info, sides):
        assert info.kind == kind
        if kind == "bam":
            assert info.params["dilation"] == min(4, side - 1)
        if kind in ("ge_theta", "ge_theta_plus"):
            assert info.params["size"] == side
    x, y = torch.randn(2, 3, res, res), torch.tensor([0, 1])
    with torch.no_grad():  # evaluation first: after one step on a batch of 2 the running statistics can be far
        assert torch.isfinite(model.eval()(x)).all()  # off (GE-theta's BN sees two gathered values), not a fault
    model.train()
    optimizer = build_optimizer(model, config.recipe)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def tiny_data():
    return {res: load_proxy(_config("resnet18", "none", res).proxy) for res in RESOLUTIONS}


@pytest.mark.parametrize("kind", list_attention())
def test_every_kind_with_its_defaults_completes_a_trial_with_its_costs(kind, tiny_data):
    """``study.trainer.train`` end to end (costs at the proxy resolution and at 224 px, one
    epoch, evaluation), resnet18 at 32 px and mobilenetv2 at 64 px."""
    for backbone, res in (("resnet18", 32), ("mobilenetv2", 64)):
        config = _config(backbone, kind, res)
        result = train(config, device="cpu", data=tiny_data[res])
        assert result.outcome == "complete", result.message
        assert result.costs.resolution == res and result.costs.macs_224 > result.costs.macs > 0
        assert [s["kind"] for s in result.stages] == [kind] * len(config.arch.stages)


@pytest.mark.parametrize("kind,recorded", [("bam", ("dilation", [4, 4, 4, 3])), ("ge_theta", ("size", [32, 16, 8, 4])),
                                           ("ge_theta_plus", ("size", [32, 16, 8, 4]))])
def test_the_train_cli_trains_the_defaults_at_the_default_proxy_resolution(kind, recorded, tmp_path, capsys):
    """The issue's case: ``{"kind": KIND}`` in every stage of a lowres ResNet-18 at 32 px."""
    path = tmp_path / "config.json"
    path.write_text(_config("resnet18", kind, 32).to_json())
    assert train_cli.main(["--config", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "complete: 1 of 1 epochs" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    name, values = recorded
    assert [s[name] for s in result["stages"]] == values
