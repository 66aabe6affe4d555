"""study.attention: registry, every module's contract, ECA's definition, psi."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from study.attention import (
    ATTENTION_PARAMS,
    AttentionModule,
    create_attention,
    get_attention,
    list_attention,
    psi,
    register_attention,
    released_k,
    resolve_attention,
)
from study.attention import _registry
from study.config import AttentionSpec




KINDS = ["cbam", "coord", "eca", "eca_ns", "none", "se", "se_gc", "se_var1", "se_var2", "se_var3"]


def _h(C: int, r: int) -> int:
    return max(1, C // r)


def _k(C: int) -> int:  # psi with the defaults gamma=2, b=1 for the powers of two used below
    return {16: 3, 128: 5, 2048: 7}[C]


# Each kind's parameter count with its default parameters, written from the papers.
FORMULAS = {
    "none": lambda C: 0,
    "se": lambda C: 2 * C * _h(C, 16) + _h(C, 16) + C,
    "se_var1": lambda C: 0,
    "se_var2": lambda C: C,
    "se_var3": lambda C: C * C,
    "se_gc": lambda C: C * C // 16,
    "eca": lambda C: _k(C),
    "eca_ns": lambda C: C * _k(C),
    "cbam": lambda C: 2 * C * _h(C, 16) + _h(C, 16) + C + 2 * 7 * 7 + 2,
    "coord": lambda C: 3 * C * max(8, C // 32) + 3 * max(8, C // 32) + 2 * C,
}

SHAPES = [(16, 56), (128, 7), (2048, 1)]  # (C, H=W): C from 16 to 2048, 1x1 .. 56x56


def test_registry_lists_every_kind_and_every_kind_has_a_formula():
    assert list_attention() == KINDS
    assert set(FORMULAS) == set(list_attention())
    assert set(ATTENTION_PARAMS) == set(list_attention())
    assert ATTENTION_PARAMS["se"] == {"r": 16, "bias": True}
    assert ATTENTION_PARAMS["eca"] == {"k": None, "gamma": 2, "b": 1, "rule": "paper"}


@pytest.mark.parametrize("C,H", SHAPES, ids=[f"C{c}-{h}x{h}" for c, h in SHAPES])
@pytest.mark.parametrize("kind", KINDS)
def test_module_contract(kind, C, H):
    torch.manual_seed(0)
    m = create_attention(kind, C)
    assert isinstance(m, AttentionModule) and m.kind == kind
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == FORMULAS[kind](C)
    assert type(m).expected_params(C) == n_params
    x = torch.randn(2, C, H, H, requires_grad=True)
    out = m(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _band(C: int, rows: torch.Tensor) -> torch.Tensor:
    """The ECA paper's W_k (eq. (6)): row i holds k weights on columns i-(k-1)/2 .. i+(k-1)/2."""
    k = rows.shape[1]
    p = (k - 1) // 2
    W = torch.zeros(C, C, dtype=rows.dtype)
    for i in range(C):
        for j in range(k):
            col = i + j - p
            if 0 <= col < C:
                W[i, col] = rows[i, j]
    return W


@pytest.mark.parametrize("params", [{"k": 5}, {"k": 1}, {"gamma": 2, "b": 1}, {"gamma": 1, "b": 0}])
def test_eca_equals_band_matrix_definition(params):
    torch.manual_seed(1)
    C = 32
    m = create_attention("eca", C, **params)
    x = torch.randn(3, C, 4, 5)
    w = m.conv.weight.detach().reshape(-1)
    assert w.numel() == m.k
    W = _band(C, w.expand(C, -1))
    y = x.mean(dim=(2, 3))
    expected = x * torch.sigmoid(y @ W.T)[:, :, None, None]
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)
    as_conv1d = torch.sigmoid(m.conv(y.unsqueeze(1))).squeeze(1)  # the authors' formulation
    torch.testing.assert_close(m(x), x * as_conv1d[:, :, None, None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_eca_ns_equals_band_matrix_with_unshared_weights(k):
    torch.manual_seed(2)
    C = 24
    m = create_attention("eca_ns", C, k=k)
    x = torch.randn(3, C, 3, 3)
    W = _band(C, m.weight.detach())
    expected = x * torch.sigmoid(x.mean(dim=(2, 3)) @ W.T)[:, :, None, None]
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)
    assert len({tuple(r.tolist()) for r in m.weight}) == C  # each channel has its own weights


def test_se_equals_its_definition_and_reduced_width_never_below_one():
    torch.manual_seed(3)
    m = create_attention("se", 16, r=32)
    assert m.fc1.out_features == 1  # 16 // 32 == 0 -> 1 channel, no rounding up to 8
    assert create_attention("se", 96, r=16).fc1.out_features == 6
    x = torch.randn(2, 16, 5, 5)
    y = x.mean(dim=(2, 3))
    expected = x * torch.sigmoid(m.fc2(torch.relu(m.fc1(y))))[:, :, None, None]
    torch.testing.assert_close(m(x), expected)
    assert sum(p.numel() for p in create_attention("se", 256, bias=False).parameters()) == 2 * 256 * 16


def test_cbam_equals_channel_then_spatial_attention():
    torch.manual_seed(4)
    m = create_attention("cbam", 32, r=4).eval()
    with torch.no_grad():
        m.spatial_bn.running_mean.fill_(0.1)
        m.spatial_bn.running_var.fill_(2.0)
    x = torch.randn(2, 32, 6, 5)
    fc1, fc2 = m.mlp[0], m.mlp[2]
    mlp = lambda v: fc2(torch.relu(fc1(v)))  # noqa: E731
    xc = x * torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
    s = torch.nn.functional.conv2d(torch.cat([xc.mean(1, keepdim=True), xc.amax(1, keepdim=True)], 1), m.spatial.weight, padding=3)
    bn = m.spatial_bn
    s = (s - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(m(x), xc * torch.sigmoid(s))


def test_coord_equals_pooling_along_each_axis():
    torch.manual_seed(5)
    C, H, W = 64, 6, 4
    m = create_attention("coord", C, r=4).eval()  # mip = max(8, 64 // 4) = 16
    assert m.conv1.out_channels == 16
    x = torch.randn(2, C, H, W)
    conv = lambda layer, v: torch.einsum("oc,nchw->nohw", layer.weight[:, :, 0, 0], v) + layer.bias[None, :, None, None]  # noqa: E731
    bn = m.bn1
    y = conv(m.conv1, torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2))
    y = (y - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps) * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    y = y * torch.clamp(y + 3, 0, 6) / 6  # h-swish
    a_h = torch.sigmoid(conv(m.conv_h, y[:, :, :H]))  # (N, C, H, 1)
    a_w = torch.sigmoid(conv(m.conv_w, y[:, :, H:])).transpose(2, 3)  # (N, C, 1, W)
    torch.testing.assert_close(m(x), x * a_h * a_w, rtol=1e-5, atol=1e-6)


def test_explicit_k_is_never_overridden_and_psi_k_is_exposed():
    assert create_attention("eca", 64, k=9).k == 9
    assert create_attention("eca", 2048, k=1).k == 1
    m = create_attention("eca", 256)
    assert m.k == 5 and m.params == {"k": 5, "gamma": 2, "b": 1, "rule": "paper"}
    assert create_attention("eca", 64, gamma=4, b=0).k == 1
    assert create_attention("eca", 64, gamma=4, b=0, rule="timm").k == 3
    assert create_attention("eca_ns", 2048).k == 7


def test_create_attention_accepts_specs_and_dicts():
    a = create_attention(AttentionSpec.of("se", r=4), 64)
    b = create_attention({"kind": "se", "r": 4}, 64)
    assert a.params == b.params == {"r": 4, "bias": True}
    assert create_attention({"kind": "se", "r": 4}, 64, r=8).params["r"] == 8  # keyword wins
    assert resolve_attention("eca", 1024) == ("eca", {"k": 5, "gamma": 2, "b": 1, "rule": "paper"})


def test_se_gc_default_groups_is_the_largest_divisor_not_above_16():
    assert [resolve_attention("se_gc", C)[1]["groups"] for C in (8, 16, 24, 40, 7, 2048)] == [8, 16, 12, 10, 7, 16]
    assert resolve_attention("se_gc", 24, groups=8)[1] == {"groups": 8}  # explicit: kept, strict


@pytest.mark.parametrize(
    "kind,channels,params,match",
    [
        ("eca", 64, {"k": 4}, r"k must be an odd integer >= 1, got 4"),
        ("eca", 64, {"k": 0}, r"k must be an odd integer >= 1"),
        ("eca", 64, {"k": 3, "gamma": 2}, r"either k or gamma/b"),
        ("eca", 64, {"k": 3, "rule": "timm"}, r"either k or gamma/b"),
        ("eca", 64, {"gamma": 0}, r"gamma must be a finite number > 0"),
        ("eca", 64, {"b": float("nan")}, r"b must be a finite number"),
        ("eca", 64, {"rule": "round"}, r"rule must be one of paper, timm"),
        ("eca_ns", 64, {"k": 2}, r"k must be an odd integer"),
        ("se", 64, {"r": 0}, r"r must be an integer >= 1"),
        ("se", 64, {"bias": "yes"}, r"bias must be true or false"),
        ("se", 64, {"reduction": 8}, r"unknown parameter 'reduction' \(valid parameters: r, bias\)"),
        ("se_var1", 64, {"r": 8}, r"unknown parameter 'r' \(valid parameters: none\)"),
        ("se_gc", 24, {"groups": 16}, r"groups must be an integer >= 1 dividing channels=24"),
        ("cbam", 64, {"kernel_size": 4}, r"kernel_size must be an odd integer"),
        ("coord", 64, {"r": -1}, r"r must be an integer >= 1"),
        ("se", 0, {}, r"channels: must be an integer >= 1"),
        ("se", 64, {"channels": 8}, r"unknown parameter 'channels' \(valid parameters: r, bias\)"),
        ("eca", 64, {"channels": 8}, r"unknown parameter 'channels'"),
        ("attn", 64, {}, r"unknown attention kind 'attn' \(valid kinds: cbam, coord, eca, eca_ns, none, se,"),
    ],
)
def test_eager_validation_names_parameter_and_range(kind, channels, params, match):
    with pytest.raises(ValueError, match=match):
        create_attention(kind, channels, **params)
    if kind != "attn":  # resolving without building validates identically
        with pytest.raises(ValueError, match=match):
            resolve_attention(kind, channels, **params)


def test_register_attention_adds_a_kind(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    monkeypatch.setattr(_registry, "_PARAMS", dict(_registry._PARAMS))

    @register_attention("scale_test")
    class Scale(AttentionModule):
        """A learnable scalar gate, for the test."""

        PARAMS = {"init": 1.0}

        def __init__(self, channels, **params):
            super().__init__(channels, **params)
            self.s = nn.Parameter(torch.tensor(float(self.params["init"])))

        def forward(self, x):
            return x * self.s

    assert "scale_test" in list_attention() and get_attention("scale_test") is Scale
    m = create_attention("scale_test", 8, init=2.0)
    x = torch.ones(1, 8, 2, 2)
    assert torch.equal(m(x), 2 * x)
    with pytest.raises(ValueError, match="already registered"):
        register_attention("scale_test")(type("Other", (AttentionModule,), {}))
    with pytest.raises(TypeError):
        register_attention("not_a_module")(int)


# ----------------------------------------------------------------------------------- psi

POWERS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
# k for C in POWERS, worked out by hand from eq. (12) as the authors' code evaluates it:
# t = int(|(log2 C + b) / gamma|), even t -> t + 1; "timm" then takes at least 3.
PSI_TABLE = {
    (2, 1, "paper"): [3, 3, 3, 5, 5, 5, 5, 7, 7],
    (2, 1, "timm"): [3, 3, 3, 5, 5, 5, 5, 7, 7],
    (1, 0, "paper"): [5, 5, 7, 7, 9, 9, 11, 11, 13],
    (1, 0, "timm"): [5, 5, 7, 7, 9, 9, 11, 11, 13],
    (4, 0, "paper"): [1, 1, 1, 1, 3, 3, 3, 3, 3],
    (4, 0, "timm"): [3, 3, 3, 3, 3, 3, 3, 3, 3],
    (3, 1, "paper"): [1, 3, 3, 3, 3, 3, 3, 5, 5],
    (3, 1, "timm"): [3, 3, 3, 3, 3, 3, 3, 5, 5],
    (2, -4, "paper"): [1, 1, 1, 1, 3, 3, 3, 3, 5],
    (2, -4, "timm"): [3, 3, 3, 3, 3, 3, 3, 3, 5],
    (1.5, 2.5, "paper"): [5, 5, 5, 7, 7, 7, 9, 9, 9],
}


@pytest.mark.parametrize("gamma,b,rule", list(PSI_TABLE), ids=[f"g{g}-b{b}-{r}" for g, b, r in PSI_TABLE])
def test_psi_table(gamma, b, rule):
    assert [psi(C, gamma, b, rule) for C in POWERS] == PSI_TABLE[(gamma, b, rule)]


def test_psi_documented_values_and_rules_differ_where_expected():
    assert [psi(C) for C in (64, 128, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 5, 7]
    assert psi(64, gamma=4, b=0, rule="paper") == 1 and psi(64, gamma=4, b=0, rule="timm") == 3
    differ = [(g, b) for g in (1, 2, 3, 4) for b in (-2, 0, 1, 2) if any(psi(C, g, b) != psi(C, g, b, "timm") for C in POWERS)]
    assert (4, 0) in differ and (1, 0) not in differ


@pytest.mark.parametrize("gamma,b", [(2, 1), (1, 0), (3, 1), (4, 0), (2.5, -1)])
def test_psi_is_truncate_then_odd_for_every_C(gamma, b):
    for C in range(16, 4097):
        t = abs((math.log2(C) + b) / gamma)
        k = psi(C, gamma, b)
        assert k % 2 == 1 and math.floor(t) <= k <= math.floor(t) + 1, C
        assert psi(C, gamma, b, "timm") == max(k, 3)


@pytest.mark.parametrize(
    "args,match",
    [((0,), "C: must be an integer >= 1"), ((64, 0), "gamma: must be"), ((64, 2, math.inf), "b: must be"), ((64, 2, 1, "x"), "rule: must be one of")],
)
def test_psi_validation(args, match):
    with pytest.raises(ValueError, match=match):
        psi(*args)


def test_released_k_presets():
    assert released_k("resnet18") == (3, 5, 7, 7)
    assert released_k("resnet34") == (3, 3, 5, 7)
    assert released_k("resnet50") == (3, 5, 5, 7)
    assert released_k("resnet101") == (3, 3, 5, 7)
    assert released_k("mobilenetv2") == (1, 1, 1, 1, 3, 3, 3)  # 16, 24, 32, 64 < 96 <= 96, 160, 320
    with pytest.raises(ValueError, match="no released ECA k for 'vgg16'"):
        released_k("vgg16")
