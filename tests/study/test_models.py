"""study.models: exact parameter counts, per-stage attention, stems, widths, psi input."""

from __future__ import annotations

import pytest
import torch

from study.attention import AttentionModule, list_attention, psi, released_k
from study.config import ArchSpec, AttentionSpec, ConfigError
from study.models import StageInfo, build_model, describe_stages, list_backbones, make_divisible, num_stages, released_arch, stage_sizes

BACKBONES = ["mobilenetv2", "resnet101", "resnet18", "resnet34", "resnet50"]


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _attention_modules(stage: torch.nn.Module) -> list[AttentionModule]:
    return [m for m in stage.modules() if isinstance(m, AttentionModule)]


def test_registry_listing_and_stage_counts():
    assert list_backbones() == BACKBONES
    assert list_backbones("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    assert list_backbones("resnet1*") == ["resnet101", "resnet18"]
    assert list_backbones("vgg*") == []
    assert [num_stages(b) for b in BACKBONES] == [7, 4, 4, 4, 4]
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet152' \(valid backbones: mobilenetv2, resnet101"):
        num_stages("resnet152")


@pytest.mark.parametrize(
    "backbone,attention,expected",
    [
        ("resnet18", "none", 11_689_512),
        ("resnet34", "none", 21_797_672),
        ("resnet50", "none", 25_557_032),
        ("resnet101", "none", 44_549_160),
        ("mobilenetv2", "none", 3_504_872),
        ("resnet50", {"kind": "se", "r": 16}, 28_088_024),
        ("resnet50", {"kind": "se", "r": 16, "bias": False}, 28_071_976),
        ("resnet50", {"kind": "eca", "k": 3}, 25_557_080),
        ("resnet50", {"kind": "eca", "gamma": 2, "b": 1}, 25_557_118),
    ],
)
def test_exact_parameter_counts(backbone, attention, expected):
    assert _params(build_model(ArchSpec.uniform(backbone, attention))) == expected


def test_stage_info_of_resnet50_and_mobilenetv2():
    model = build_model(ArchSpec.uniform("resnet50", "eca"))
    assert [(s.stage, s.channels, s.planes, s.blocks, s.k) for s in model.stage_info] == [
        (0, 256, 64, 3, 5), (1, 512, 128, 4, 5), (2, 1024, 256, 6, 5), (3, 2048, 512, 3, 7)
    ]
    assert model.stage_info[3].to_dict() == {"stage": 3, "channels": 2048, "planes": 512, "blocks": 3, "kind": "eca", "k": 7, "gamma": 2,
                                             "b": 1, "rule": "paper"}
    for info, stage in zip(model.stage_info, model.stages):
        mods = _attention_modules(stage)
        assert len(mods) == info.blocks and all(m.k == info.k and m.channels == info.channels for m in mods)
    mb = describe_stages(ArchSpec.uniform("mobilenetv2", "none"))
    assert [s.channels for s in mb] == [16, 24, 32, 64, 96, 160, 320]
    assert [s.blocks for s in mb] == [1, 2, 3, 4, 3, 3, 1]


def test_mixed_stages_from_the_json_form():
    arch = {
        "backbone": "resnet50", "stem": "imagenet", "width": 1.0, "num_classes": 1000,
        "stages": [{"kind": "eca", "k": 3}, {"kind": "eca", "gamma": 2, "b": 1}, {"kind": "se", "r": 16}, {"kind": "none"}],
    }
    model = build_model(arch)
    assert [s.to_dict() for s in model.stage_info] == [
        {"stage": 0, "channels": 256, "planes": 64, "blocks": 3, "kind": "eca", "k": 3},
        {"stage": 1, "channels": 512, "planes": 128, "blocks": 4, "kind": "eca", "k": 5, "gamma": 2, "b": 1, "rule": "paper"},
        {"stage": 2, "channels": 1024, "planes": 256, "blocks": 6, "kind": "se", "r": 16, "bias": True},
        {"stage": 3, "channels": 2048, "planes": 512, "blocks": 3, "kind": "none"},
    ]
    kinds = [{m.kind for m in _attention_modules(stage)} for stage in model.stages]
    assert kinds == [{"eca"}, {"eca"}, {"se"}, {"none"}]  # "none" is an identity module
    assert describe_stages(arch) == model.stage_info
    assert _params(model) == 25_557_032 + 3 * 3 + 4 * 5 + 6 * (2 * 1024 * 64 + 64 + 1024)


def test_stage_info_round_trips_through_its_dict():
    for info in describe_stages(ArchSpec.uniform("resnet18", {"kind": "cbam", "r": 8})):
        assert StageInfo.from_dict(info.to_dict()) == info


@pytest.mark.parametrize("psi_input,expected", [("channels", (5, 5, 5, 7)), ("planes", (3, 5, 5, 5))])
def test_psi_input_chooses_the_C_that_psi_sees(psi_input, expected):
    arch = ArchSpec.uniform("resnet50", {"kind": "eca", "gamma": 2, "b": 1}, psi_input=psi_input)
    infos = describe_stages(arch)
    C = [s.channels if psi_input == "channels" else s.planes for s in infos]
    assert tuple(s.k for s in infos) == expected == tuple(psi(c) for c in C)
    model = build_model(arch)
    assert [m.k for m in _attention_modules(model.stages[0])] == [expected[0]] * 3
    assert all(m.channels == 256 for m in _attention_modules(model.stages[0]))  # acts on the block output
    # an explicit k is never overridden, whatever psi_input says
    fixed = ArchSpec(backbone="resnet50", stages=tuple(AttentionSpec.of("eca", k=k) for k in released_k("resnet50")), psi_input=psi_input)
    assert tuple(s.k for s in describe_stages(fixed)) == (3, 5, 5, 7)


def test_released_arch_presets():
    arch = released_arch("resnet50")
    assert [s.to_dict() for s in arch.stages] == [{"kind": "eca", "k": k} for k in (3, 5, 5, 7)]
    assert _params(build_model(arch)) == 25_557_032 + 3 * 3 + 4 * 5 + 6 * 5 + 3 * 7
    small = describe_stages(released_arch("mobilenetv2", stem="lowres", width=0.5))
    assert [s.k for s in small] == [1, 1, 1, 1, 3, 3, 3] and small[4].channels == 48  # explicit k, kept at any width
    with pytest.raises(ValueError, match="unknown backbone"):
        released_arch("resnet152")


def test_width_scales_every_stage():
    assert [s.channels for s in describe_stages(ArchSpec.uniform("resnet18", "none", width=0.5))] == [32, 64, 128, 256]
    assert [s.channels for s in describe_stages(ArchSpec.uniform("resnet50", "none", width=1.5))] == [384, 768, 1536, 3072]
    mb = describe_stages(ArchSpec.uniform("mobilenetv2", "none", width=0.75))
    assert [s.channels for s in mb] == [make_divisible(c * 0.75) for c in (16, 24, 32, 64, 96, 160, 320)] == [16, 24, 24, 48, 72, 120, 240]
    assert make_divisible(16 * 0.25) == 8 and make_divisible(37) == 40


def test_attention_sits_after_the_last_bn_on_the_residual_branch():
    for backbone, last_bn in (("resnet18", "bn2"), ("resnet50", "bn3"), ("mobilenetv2", None)):
        model = build_model(ArchSpec.uniform(backbone, "se_var1", stem="lowres", width=0.25, num_classes=4)).eval()
        block = model.stages[1][0]
        bn = getattr(block, last_bn) if last_bn else block.conv[-1]
        assert isinstance(bn, torch.nn.BatchNorm2d)
        seen = {}
        bn.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("bn", o))
        block.attention.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("attn_in", i[0]))
        model(torch.randn(1, 3, 32, 32))
        assert seen["attn_in"] is seen["bn"], backbone


def test_stems():
    for backbone in ("resnet18", "resnet50"):
        lowres = build_model(ArchSpec.uniform(backbone, "none", stem="lowres", width=0.25))
        imagenet = build_model(ArchSpec.uniform(backbone, "none", stem="imagenet", width=0.25))
        assert lowres.stem[0].kernel_size == (3, 3) and lowres.stem[0].stride == (1, 1)
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in lowres.stem)
        assert imagenet.stem[0].kernel_size == (7, 7) and isinstance(imagenet.stem[-1], torch.nn.MaxPool2d)
        x = torch.randn(2, 3, 32, 32)
        assert lowres.forward_features(x).shape[-1] == 4 and imagenet.forward_features(x).shape[-1] == 1
    mb_low = build_model(ArchSpec.uniform("mobilenetv2", "none", stem="lowres", width=0.25))
    mb_net = build_model(ArchSpec.uniform("mobilenetv2", "none", width=0.25))
    assert mb_low.stem[0].stride == (1, 1) and mb_net.stem[0].stride == (2, 2)
    with pytest.raises(ValueError, match="stem: must be one of imagenet, lowres, got 'cifar'"):
        build_model(ArchSpec.uniform("resnet18", "none", stem="cifar"))


@pytest.mark.parametrize(
    "arch,match",
    [
        ({"backbone": "resnet18", "stages": [{"kind": "none"}] * 3}, r"backbone 'resnet18' has 4 stages, so stages needs 4 entries, got 3"),
        ({"backbone": "mobilenetv2", "stages": [{"kind": "none"}] * 4}, r"has 7 stages"),
        ({"backbone": "resnet18", "stages": [{"kind": "none"}] * 3 + [{"kind": "eca", "k": 2}]},
         r"stages\[3\]: attention 'eca': k must be an odd"),
        ({"backbone": "resnet18", "stages": [{"kind": "se", "ratio": 4}] * 4}, r"stages\[0\]: attention 'se': unknown parameter 'ratio'"),
        ({"backbone": "resnet18", "stages": [{"kind": "sk"}] * 4}, r"unknown attention kind 'sk'"),
        ({"backbone": "resnet18", "stages": [{"kind": "se", "channels": 8}] * 4},
         r"stages\[0\]: attention 'se': unknown parameter 'channels'"),
        ({"backbone": "vgg", "stages": []}, r"unknown backbone 'vgg'"),
    ],
)
def test_invalid_architectures_raise_value_errors(arch, match):
    with pytest.raises(ValueError, match=match):
        build_model(arch)
    with pytest.raises(ValueError, match=match):
        describe_stages(arch)


def test_se_gc_default_groups_resolve_per_stage_and_explicit_groups_stay_strict():
    # default 16 -> the largest divisor of C not above 16, recorded per stage
    infos = describe_stages(ArchSpec.uniform("mobilenetv2", "se_gc", width=0.25))
    assert [(s.channels, s.params["groups"]) for s in infos] == [(8, 8), (8, 8), (8, 8), (16, 16), (24, 12), (40, 10), (80, 16)]
    model = build_model(ArchSpec.uniform("mobilenetv2", "se_gc", width=0.25))
    assert [m.conv.groups for m in _attention_modules(model.stages[4])] == [12] * 3
    with pytest.raises(ConfigError, match=r"stages\[0\]: attention 'se_gc': groups must be an integer >= 1 dividing channels=8, got 16"):
        describe_stages(ArchSpec.uniform("mobilenetv2", {"kind": "se_gc", "groups": 16}, width=0.25))


# registry-driven smoke test: every attention kind in every stage of every backbone
def _fitting(kind: str, side: int) -> dict:
    """Per-stage parameters that fit a side x side map: the global parametric GE gather
    covers the map; BAM's dilation (default 4) must stay below the side."""
    if kind in ("ge_theta", "ge_theta_plus"):
        return {"size": side}
    if kind == "bam":
        return {"dilation": min(4, side - 1)}
    return {}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kind", list_attention())
def test_every_kind_in_every_stage_of_every_backbone(kind, backbone):
    torch.manual_seed(0)
    base = ArchSpec.uniform(backbone, "none", stem="lowres", width=0.25, num_classes=10)
    sizes = stage_sizes(base, 32)
    model = build_model(base.with_stages([AttentionSpec.of(kind, **_fitting(kind, h)) for h, _ in sizes]))
    assert all(s.kind == kind for s in model.stage_info)
    n_attn = sum(len(_attention_modules(stage)) for stage in model.stages)
    assert n_attn == sum(s.blocks for s in model.stage_info)  # one module per block ("none": identity)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_stage_sizes_are_the_maps_each_stage_attends_to():
    assert stage_sizes(ArchSpec.uniform("resnet50", "none"), 224) == ((56, 56), (28, 28), (14, 14), (7, 7))
    assert stage_sizes(ArchSpec.uniform("resnet18", "none", stem="lowres", width=0.25), 32) == ((32, 32), (16, 16), (8, 8), (4, 4))
    assert stage_sizes({"backbone": "mobilenetv2", "stages": [{"kind": "ge_theta"}] * 7, "stem": "lowres"}, 32) == (
        (32, 32), (16, 16), (8, 8), (4, 4), (4, 4), (2, 2), (2, 2)
    )
    with pytest.raises(ValueError, match="resolution: must be an integer >= 1"):
        stage_sizes(ArchSpec.uniform("resnet18", "none"), 0)


def _meta_pass_sizes(backbone: str, stem: str, width: float, res: int) -> tuple[tuple[int, int], ...]:
    """The maps each stage's attention sees, seen by a shape-only forward pass on the meta device."""
    arch = ArchSpec.uniform(backbone, "none", stem=stem, width=width)
    with torch.device("meta"):
        model = build_model(arch).eval()
    seen = {}
    hooks = [stage[-1].attention.register_forward_hook(lambda m, args, out, i=i: seen.__setitem__(i, tuple(args[0].shape[2:])))
             for i, stage in enumerate(model.stages)]
    try:
        with torch.no_grad():
            model.forward_features(torch.empty(1, 3, res, res, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return tuple(seen[i] for i in range(len(seen)))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_plans_arithmetic_gives_the_maps_the_built_model_has(backbone):
    """stage_sizes is arithmetic on the plan (no torch); the built backbone agrees."""
    for stem in ("imagenet", "lowres"):
        for width in (0.25, 1.0):
            for res in (7, 16, 31, 32, 33, 64, 224):
                arch = ArchSpec.uniform(backbone, "none", stem=stem, width=width)
                assert stage_sizes(arch, res) == _meta_pass_sizes(backbone, stem, width, res), (stem, width, res)


def test_map_dependent_parameters_fail_at_forward_time_with_one_line():
    model = build_model(ArchSpec.uniform("resnet18", {"kind": "bam", "dilation": 4}, stem="lowres", width=0.25, num_classes=4))
    with pytest.raises(ValueError, match=r"attention 'bam': dilation must be an integer in \[1, 3\] on a 4x4 feature map"):
        model(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("res", [32, 64, 224])
@pytest.mark.parametrize("stem", ["imagenet", "lowres"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_and_stem_runs_forward_and_backward(backbone, stem, res):
    torch.manual_seed(0)
    model = build_model(ArchSpec.uniform(backbone, "eca", stem=stem, width=0.25, num_classes=5))
    batch = 1 if res == 224 else 2
    out = model(torch.randn(batch, 3, res, res))
    assert out.shape == (batch, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.stem[0].weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "mobilenetv2"])
def test_one_seed_gives_one_backbone_whatever_the_attention(backbone):
    """Common random numbers: attention modules draw from a stream of their own (seed,
    stage, block), so networks built from one seed share every backbone tensor and differ
    only in their attention; one kind at one place starts from the same weights in any
    network; another seed gives another backbone."""

    def build(stages, seed=7):
        torch.manual_seed(seed)
        return build_model(ArchSpec(backbone=backbone, stem="lowres", width=0.25, stages=tuple(stages)), 32).state_dict()

    n = num_stages(backbone)
    nets = {
        "none": build([AttentionSpec("none")] * n),
        "eca5": build([AttentionSpec.of("eca", k=5)] * n),
        "eca3": build([AttentionSpec.of("eca", k=3)] * n),
        "mixed": build([AttentionSpec.of("se", r=8), *[AttentionSpec.of("cbam")] * (n - 2), AttentionSpec.of("eca", k=5)]),
    }
    backbone_keys = [k for k in nets["none"] if ".attention." not in k]
    assert len(backbone_keys) > 20
    for name, sd in nets.items():
        assert all(torch.equal(sd[k], nets["none"][k]) for k in backbone_keys), name
    last = [k for k in nets["eca5"] if k.startswith(f"stages.{n - 1}.") and ".attention." in k]
    assert last and all(torch.equal(nets["eca5"][k], nets["mixed"][k]) for k in last)
    other = build([AttentionSpec("none")] * n, seed=8)
    assert not all(torch.equal(other[k], nets["none"][k]) for k in backbone_keys)
