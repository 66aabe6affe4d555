"""study.attention: registry, every module's contract, ECA's definition, psi, the kinds'
declarations and the fused path beside the plain ``forward``."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study import catalogue
from study.attention import (
    ATTENTION_PARAMS,
    AttentionModule,
    PooledGate,
    _registry,
    bn_attention,
    create_attention,
    fused_pooled_gate,
    get_attention,
    lean_attention,
    list_attention,
    psi,
    register_attention,
    released_k,
    resolve_attention,
)
from study.config import AttentionSpec

#: the ECA paper's comparison, each with a parameter count written from its paper below; a
#: kind added later has its own test file (its module and its test: docs/architecture.md)
PAPER_KINDS = [
    "a2", "bam", "cbam", "coord", "eca", "eca_ns", "gc", "ge_theta", "ge_theta_minus", "ge_theta_plus", "gsop",
    "none", "se", "se_gc", "se_var1", "se_var2", "se_var3",
]
KINDS = list_attention()


def _h(C: int, r: int) -> int:
    return max(1, C // r)


def _k(C: int) -> int:  # psi with the defaults gamma=2, b=1 for the powers of two used below
    return {16: 3, 128: 5, 2048: 7}[C]


def _bam(C: int, r: int = 16) -> int:
    h = C // min(r, C)
    channel = (C * h + h) + (h * C + C) + 2 * C  # FC, FC, BN(C)
    spatial = (C * h + h) + 2 * h + 2 * (9 * h * h + h + 2 * h) + (h + 1) + 2  # 1x1+BN, 2x(dilated 3x3+BN), 1x1+BN(1)
    return channel + spatial


def _gc(C: int, r: int = 16) -> int:
    p = C // min(r, C // 2)  # default r: at least two bottleneck channels for the LayerNorm
    return (C + 1) + (C * p + p) + 2 * p + (p * C + C)  # mask conv, conv, LayerNorm, conv


def _ge_gather(C: int, size: int) -> int:
    return C * size * size + 2 * C  # depthwise size x size conv + BN


def _gsop(C: int, d: int = 128) -> int:
    d = min(d, C)
    return (C * d + d) + 2 * d + 2 * d + (4 * d * d + 4 * d) + (4 * d * C + C)  # reduce, BN, row BN, row conv, fc


# Each kind's parameter count with its default parameters (plus ``size`` for the global
# parametric GE gather, see PARAMS_FOR), written from the papers.
FORMULAS = {
    "none": lambda C, H: 0,
    "se": lambda C, H: 2 * C * _h(C, 16) + _h(C, 16) + C,
    "se_var1": lambda C, H: 0,
    "se_var2": lambda C, H: C,
    "se_var3": lambda C, H: C * C,
    "se_gc": lambda C, H: C * C // 16,
    "eca": lambda C, H: _k(C),
    "eca_ns": lambda C, H: C * _k(C),
    "cbam": lambda C, H: 2 * C * _h(C, 16) + _h(C, 16) + C + 2 * 7 * 7 + 2,
    "coord": lambda C, H: 3 * C * max(8, C // 32) + 3 * max(8, C // 32) + 2 * C,
    "bam": lambda C, H: _bam(C),
    "gc": lambda C, H: _gc(C),
    "ge_theta_minus": lambda C, H: 0,
    "ge_theta": lambda C, H: _ge_gather(C, H),
    "ge_theta_plus": lambda C, H: _ge_gather(C, H) + (C * _h(C, 16) + _h(C, 16)) + (_h(C, 16) * C + C),
    "a2": lambda C, H: C * 3 * (C // 4) + 3 * (C // 4) + (C // 4) * C + C,
    "gsop": lambda C, H: _gsop(C),
}


def PARAMS_FOR(kind: str, H: int) -> dict:
    """Parameters that fit an H x H map: the global parametric GE gather needs the map's
    side; BAM's default dilation 4 needs a map wider than 4."""
    if kind in ("ge_theta", "ge_theta_plus"):
        return {"size": H}
    if kind == "bam" and H <= 4:
        return {"dilation": max(1, H - 1)}
    return {}


SHAPES = [(16, 56), (128, 7), (2048, 1)]  # (C, H=W): C from 16 to 2048, 1x1 .. 56x56


def test_registry_lists_every_kind_and_every_paper_kind_has_a_formula():
    assert set(PAPER_KINDS) <= set(list_attention()) and set(FORMULAS) == set(PAPER_KINDS)
    assert set(ATTENTION_PARAMS) == set(list_attention()) == set(catalogue.kind_names())
    assert ATTENTION_PARAMS["se"] == {"r": 16, "bias": True}
    assert ATTENTION_PARAMS["eca"] == {"k": None, "gamma": 2, "b": 1, "rule": "paper"}
    assert ATTENTION_PARAMS["bam"] == {"r": 16, "dilation": 4}
    assert ATTENTION_PARAMS["ge_theta_plus"] == {"extent": 0, "size": None, "r": 16}


def _wake_zero_params(m: nn.Module) -> None:
    """GC's last layer starts at zero (the block starts as the identity), which also zeroes
    the gradients of the layers before it; give such parameters values so that gradient flow
    through every parameter can be checked."""
    with torch.no_grad():
        for p in m.parameters():
            if not p.any():
                p.normal_(0, 0.1)


@pytest.mark.parametrize("C,H", SHAPES, ids=[f"C{c}-{h}x{h}" for c, h in SHAPES])
@pytest.mark.parametrize("kind", KINDS)
def test_module_contract(kind, C, H):
    torch.manual_seed(0)
    params = PARAMS_FOR(kind, H)
    m = create_attention(kind, C, **params)
    assert isinstance(m, AttentionModule) and m.kind == kind
    n_params = sum(p.numel() for p in m.parameters())
    if kind in FORMULAS:  # the paper kinds; a later kind's own test checks its formula
        assert n_params == FORMULAS[kind](C, H)
    assert type(m).expected_params(C, **params) == n_params
    x = torch.randn(2, C, H, H, requires_grad=True)
    if kind == "bam" and H == 1:  # no dilation fits a 1x1 map
        with pytest.raises(ValueError, match=r"attention 'bam': dilation cannot fit a 1x1 feature map"):
            m(x)
        return
    _wake_zero_params(m)
    out = m(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    degenerate = H == 1 and kind in ("gsop", "a2", "gc")  # a covariance / a softmax over one position is constant
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert degenerate or p.grad.abs().sum() > 0, name


def _weights_only(m: nn.Module) -> int:
    """Parameters in the convention of the attention papers' tables: the weights of the
    convolutions and fully connected layers only (no biases, no normalisation)."""
    return sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("C,r", [(64, 16), (256, 16), (512, 8)])
def test_table_convention_parameter_counts(C, r):
    """The closed forms of the ECA paper's comparison table (weights only, C/r exact)."""
    k = 7
    # SE: 2C^2/r; CBAM: 2C^2/r + 2k^2 - the existing modules meet both; CBAM's full count adds
    # only its spatial BN's 2 affine parameters (in the authors' code, not in the table).
    assert _weights_only(create_attention("se", C, r=r)) == 2 * C * C // r
    cbam = create_attention("cbam", C, r=r, bias=False)
    assert _weights_only(cbam) == 2 * C * C // r + 2 * k * k
    assert sum(p.numel() for p in cbam.parameters()) == 2 * C * C // r + 2 * k * k + 2
    # BAM: C/r (3C + 2 * 3^2 * C/r + 1): 1x1 C->C/r, two 3x3 (C/r)->(C/r), 1x1 C/r->1, and the
    # channel MLP's 2C^2/r. (Written "2C^2/r" for the middle term in the issue, which would be
    # cubic in C; two 3x3 convolutions on C/r channels give 2 * 9 * (C/r)^2 = C/r * 18 C/r.)
    assert _weights_only(create_attention("bam", C, r=r)) == C // r * (3 * C + 2 * 3**2 * C // r + 1)
    assert _weights_only(create_attention("gc", C, r=r)) == 2 * C * C // r + C  # GCNet: 2C^2/r + C
    assert _weights_only(create_attention("a2", C, r=r)) == 4 * C * C // r  # A2: C(m + 2n) + mC
    d = min(128, C)
    assert _weights_only(create_attention("gsop", C)) == 5 * C * d + 4 * d * d  # GSoP: Cd + 4d^2 + 4dC
    assert _weights_only(create_attention("eca", C, k=3)) == 3


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
    mlp = lambda v: fc2(torch.relu(fc1(v)))
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
    conv = lambda layer, v: torch.einsum("oc,nchw->nohw", layer.weight[:, :, 0, 0], v) + layer.bias[None, :, None, None]
    bn = m.bn1
    y = conv(m.conv1, torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2))
    per_channel = lambda v: v[None, :, None, None]
    y = (y - per_channel(bn.running_mean)) / torch.sqrt(per_channel(bn.running_var) + bn.eps)
    y = y * per_channel(bn.weight) + per_channel(bn.bias)
    y = y * torch.clamp(y + 3, 0, 6) / 6  # h-swish
    a_h = torch.sigmoid(conv(m.conv_h, y[:, :, :H]))  # (N, C, H, 1)
    a_w = torch.sigmoid(conv(m.conv_w, y[:, :, H:])).transpose(2, 3)  # (N, C, 1, W)
    torch.testing.assert_close(m(x), x * a_h * a_w, rtol=1e-5, atol=1e-6)


def _bn_eval(bn, v):
    shape = (1, -1) + (1,) * (v.dim() - 2)
    return (v - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _randomise_bn(m: nn.Module) -> None:
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.normal_(1, 0.1)
                bn.bias.normal_(0, 0.1)


def test_bam_equals_one_plus_sigmoid_of_channel_plus_spatial():
    torch.manual_seed(6)
    C, r, d = 32, 4, 2
    m = create_attention("bam", C, r=r, dilation=d).eval()
    _randomise_bn(m)
    x = torch.randn(2, C, 6, 5)
    fc1, fc2, bn_c = m.channel[0], m.channel[2], m.channel[3]
    m_c = _bn_eval(bn_c, fc2(torch.relu(fc1(x.mean(dim=(2, 3))))))[:, :, None, None]
    F_ = torch.nn.functional
    s = x
    convs = [mod for mod in m.spatial if isinstance(mod, nn.Conv2d)]
    bns = [mod for mod in m.spatial if isinstance(mod, nn.BatchNorm2d)]
    assert [c.dilation for c in convs] == [(1, 1), (d, d), (d, d), (1, 1)] and convs[1].weight.shape == (C // r, C // r, 3, 3)
    for conv, bn in zip(convs[:3], bns[:3]):
        s = torch.relu(_bn_eval(bn, F_.conv2d(s, conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)))
    m_s = _bn_eval(bns[3], F_.conv2d(s, convs[3].weight, convs[3].bias))  # (N, 1, H, W)
    torch.testing.assert_close(m(x), x * (1 + torch.sigmoid(m_c + m_s)), rtol=1e-5, atol=1e-5)


def test_bam_dilation_must_fit_the_feature_map_at_forward_time():
    m = create_attention("bam", 16, dilation=4)
    m(torch.randn(2, 16, 5, 5))  # 4 < 5: the taps reach inside
    with pytest.raises(ValueError, match=r"attention 'bam': dilation must be an integer in \[1, 3\] on a 4x4 feature map .*, got 4"):
        m(torch.randn(2, 16, 4, 4))


def test_gc_is_softmax_attention_pooling_plus_a_layernorm_bottleneck():
    torch.manual_seed(7)
    C = 32
    m = create_attention("gc", C, r=4)
    x = torch.randn(2, C, 5, 4)
    torch.testing.assert_close(m(x), x)  # the last layer starts at zero: identity at init
    _wake_zero_params(m)
    w = torch.softmax(torch.einsum("c,nchw->nhw", m.mask.weight.view(C), x).flatten(1) + m.mask.bias, dim=1)  # (N, HW)
    context = torch.einsum("ncp,np->nc", x.flatten(2), w)
    fc1, ln, fc2 = m.transform[0], m.transform[1], m.transform[3]
    h = fc1(context)
    assert ln.normalized_shape == (C // 4,)  # LayerNorm over the bottleneck channels
    h = (h - h.mean(1, keepdim=True)) / torch.sqrt(h.var(1, unbiased=False, keepdim=True) + ln.eps) * ln.weight + ln.bias
    torch.testing.assert_close(m(x), x + fc2(torch.relu(h))[:, :, None, None], rtol=1e-5, atol=1e-5)


def test_gather_excite_extents():
    torch.manual_seed(8)
    x = torch.randn(2, 8, 7, 6)
    # global, parameter-free: SE-Var1
    torch.testing.assert_close(create_attention("ge_theta_minus", 8)(x), create_attention("se_var1", 8)(x))
    # extent 2: a 3x3 average (padding not counted), stride 2, then nearest-neighbour upsampling
    out = create_attention("ge_theta_minus", 8, extent=2)(x)
    pooled = torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)  # (4, 3)
    assert pooled.shape[2:] == (4, 3)
    rows, cols = torch.arange(7) * 4 // 7, torch.arange(6) * 3 // 6
    torch.testing.assert_close(out, x * torch.sigmoid(pooled[:, :, rows][:, :, :, cols]))
    # GE-theta, extent 4: two depthwise 3x3 stride-2 convolutions, each with BN
    m = create_attention("ge_theta", 8, extent=4)
    convs = [c for c in m.gather if isinstance(c, nn.Conv2d)]
    assert [(c.groups, c.stride, c.kernel_size) for c in convs] == [(8, (2, 2), (3, 3))] * 2
    assert m(x).shape == x.shape
    # global GE-theta: one depthwise conv covering the map
    g = create_attention("ge_theta_plus", 8, size=7, r=4).eval()
    assert g.gather[0].kernel_size == (7, 7) and g.gather[0].groups == 8
    sq = torch.randn(2, 8, 7, 7)
    gathered = _bn_eval(g.gather[1], (sq * g.gather[0].weight.view(1, 8, 7, 7)).sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(g(sq), sq * torch.sigmoid(g.excite(gathered)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kind,params,shape,match",
    [
        ("ge_theta_minus", {"extent": 8}, (6, 6),
         r"attention 'ge_theta_minus': extent must be 0 \(global\) or a power of two in \[2, 4\] on a 6x6 feature map"),
        ("ge_theta", {"extent": 2}, (2, 2), r"attention 'ge_theta': extent must be 0 \(global\) on a 2x2 feature map .*, got 2"),
        ("ge_theta_plus", {"size": 7}, (4, 4),
         r"attention 'ge_theta_plus': size must equal the side of the square feature map .* \(this one is 4x4\), got size=7"),
    ],
)
def test_gather_excite_extent_and_size_are_checked_against_the_map(kind, params, shape, match):
    m = create_attention(kind, 8, **params)
    with pytest.raises(ValueError, match=match):
        m(torch.randn(2, 8, *shape))


def test_a2_gathers_then_distributes():
    torch.manual_seed(9)
    C, r = 16, 4
    m = create_attention("a2", C, r=r)
    x = torch.randn(2, C, 3, 5)
    w, b = m.qkv.weight.view(-1, C), m.qkv.bias
    feats = torch.einsum("oc,ncp->nop", w, x.flatten(2)) + b[None, :, None]
    A, B, V = feats[:, :4], feats[:, 4:8], feats[:, 8:]
    G = torch.einsum("nmp,nkp->nmk", A, torch.softmax(B, dim=2))  # gather: attention over positions
    Z = torch.einsum("nmk,nkp->nmp", G, torch.softmax(V, dim=1))  # distribute: attention over the n maps
    expected = x + (torch.einsum("cm,nmp->ncp", m.proj.weight.view(C, 4), Z) + m.proj.bias[None, :, None]).view_as(x)
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_gsop_covariance_and_row_wise_convolution():
    from study.attention._gsop import covariance

    torch.manual_seed(10)
    y = torch.randn(3, 6, 4, 5)
    torch.testing.assert_close(covariance(y), torch.stack([torch.cov(s.flatten(1), correction=0) for s in y]))
    C, d = 24, 6
    m = create_attention("gsop", C, dim=d).eval()
    _randomise_bn(m)
    assert m.row_conv.groups == d and m.row_conv.kernel_size == (d, 1) and m.row_conv.out_channels == 4 * d
    x = torch.randn(2, C, 4, 4)
    red = torch.relu(_bn_eval(m.reduce[2], m.reduce[1](torch.relu(x))))
    cov = _bn_eval(m.row_bn, covariance(red).unsqueeze(3))  # (N, d, d, 1): BN per row
    rows = torch.einsum("ngj,goj->ngo", cov[..., 0], m.row_conv.weight.view(d, 4, d)).reshape(2, 4 * d) + m.row_conv.bias
    gate = torch.sigmoid(torch.relu(rows) @ m.fc.weight.view(C, 4 * d).T + m.fc.bias)
    torch.testing.assert_close(m(x), x * gate[:, :, None, None], rtol=1e-5, atol=1e-5)


def test_default_ratios_resolve_per_stage_and_are_recorded():
    assert resolve_attention("bam", 8)[1] == {"r": 8, "dilation": 4}
    assert resolve_attention("bam", 256)[1] == {"r": 16, "dilation": 4}
    assert resolve_attention("gc", 8)[1] == {"r": 4}
    assert resolve_attention("gsop", 64)[1] == {"dim": 64} and resolve_attention("gsop", 256)[1] == {"dim": 128}
    assert resolve_attention("a2", 2)[1] == {"r": 2}
    assert resolve_attention("ge_theta", 64, extent=2)[1] == {"extent": 2, "size": None}


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
        ("attn", 64, {}, rf"unknown attention kind 'attn' \(valid kinds: {re.escape(', '.join(list_attention()))}\)"),
        ("bam", 8, {"r": 16}, r"attention 'bam': r must be an integer in \[1, 8\] \(at most channels=8\), got 16"),
        ("bam", 64, {"dilation": 0}, r"attention 'bam': dilation must be an integer >= 1, got 0"),
        ("bam", 64, {"reduction": 8}, r"attention 'bam': unknown parameter 'reduction' \(valid parameters: r, dilation\)"),
        ("gc", 8, {"r": 8}, r"attention 'gc': r must be an integer in \[1, 4\] \(at most channels // 2 = 4: LayerNorm over a single "
                            r"bottleneck channel ignores the context\), got 8"),
        ("gc", 64, {"ratio": 0.25}, r"attention 'gc': unknown parameter 'ratio' \(valid parameters: r\)"),
        ("ge_theta_minus", 64, {"extent": 3}, r"attention 'ge_theta_minus': extent must be 0 \(global\) or a power of two >= 2, got 3"),
        ("ge_theta_minus", 64, {"size": 7}, r"unknown parameter 'size' \(valid parameters: extent\)"),
        ("ge_theta", 64, {}, r"attention 'ge_theta': size is required with extent=0"),
        ("ge_theta", 64, {"extent": 4, "size": 7}, r"attention 'ge_theta': size applies to the global extent only \(extent=0\)"),
        ("ge_theta_plus", 64, {"extent": 2, "r": 65}, r"attention 'ge_theta_plus': r must be an integer in \[1, 64\]"),
        ("a2", 2, {"r": 4}, r"attention 'a2': r must be an integer in \[1, 2\] \(at most channels=2\), got 4"),
        ("gsop", 64, {"dim": 128}, r"attention 'gsop': dim must be an integer in \[1, 64\] \(at most channels=64\), got 128"),
        ("gsop", 64, {"dim": 0}, r"attention 'gsop': dim must be an integer in \[1, 64\]"),
    ],
)
def test_eager_validation_names_parameter_and_range(kind, channels, params, match):
    with pytest.raises(ValueError, match=match):
        create_attention(kind, channels, **params)
    if kind != "attn":  # resolving without building validates identically
        with pytest.raises(ValueError, match=match):
            resolve_attention(kind, channels, **params)


def test_register_attention_adds_a_kind(monkeypatch):
    from study.catalogue import _kinds

    monkeypatch.setattr(_registry, "_REGISTRY", _registry._REGISTRY.copy())
    monkeypatch.setattr(_kinds._CATALOGUE, "runtime", dict(_kinds._CATALOGUE.runtime))

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
    assert catalogue.get_kind("scale_test").defaults == {"init": 1.0} and "scale_test" not in catalogue.searched_kinds()
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
    [((0,), "C: must be an integer >= 1"), ((64, 0), "gamma: must be"), ((64, 2, math.inf), "b: must be"),
     ((64, 2, 1, "x"), "rule: must be one of")],
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


# ------------------------------------------------- the fused and memory-lean channel rescale

#: every kind whose output is x * gate(mean_hw(x)) (at its defaults): the fused path is theirs
POOLED_GATE_KINDS = [k for k in list_attention() if issubclass(get_attention(k), PooledGate) or k == "ge_theta_minus"]  # GE-: global extent


def test_the_pooled_gates_are_the_channel_attentions_of_the_paper_and_any_later_kind():
    assert set(POOLED_GATE_KINDS) >= {"eca", "eca_ns", "ge_theta_minus", "se", "se_gc", "se_var1", "se_var2", "se_var3"}
    assert not {"cbam", "bam", "coord", "gc", "a2", "gsop", "none", "ge_theta"} & set(POOLED_GATE_KINDS)


@pytest.mark.parametrize("kind", POOLED_GATE_KINDS)
def test_forward_is_plain_pytorch_and_the_fused_path_a_wrapper_beside_it(kind):
    """The module's own forward records only PyTorch's operations, whatever the fused path's
    setting; the wrapper records the fused nodes and gives the same result."""
    torch.manual_seed(5)
    att = create_attention(kind, 16)
    x = torch.randn(4, 16, 64, 64, requires_grad=True)  # large enough for the "auto" setting
    with lean_attention(True):
        plain, fused = att(x), fused_pooled_gate(att, x)
    assert type(plain.grad_fn).__name__ == "MulBackward0"
    assert type(fused.grad_fn).__name__ == "_ScaleBackward"
    torch.testing.assert_close(fused, plain)


def _bn_and(kind: str, C: int, dtype: torch.dtype, momentum: float | None = 0.1):
    torch.manual_seed(11)
    bn = nn.BatchNorm2d(C, momentum=momentum).to(dtype)
    with torch.no_grad():
        bn.weight.normal_(1, 0.3)
        bn.bias.normal_(0, 0.3)
        bn.running_mean.normal_(0, 1)
        bn.running_var.uniform_(0.5, 2)
    return bn, create_attention(kind, C, **({"r": 4} if kind == "se" else {})).to(dtype)


def _run_block(bn, att, c0, g, mode, memory_format=torch.contiguous_format):
    """BN then attention, forward and backward: "plain" operations, the "fused" nodes, or the
    "lean" path through bn_attention."""
    import copy

    bn, att = copy.deepcopy(bn), copy.deepcopy(att)
    c = c0.clone().contiguous(memory_format=memory_format).requires_grad_()
    with lean_attention(mode != "plain"):
        y = fused_pooled_gate(att, bn(c)) if mode == "fused" else bn_attention(bn, att, c)
        y2 = bn_attention(bn, att, c)  # a second step: running statistics move twice
    ((y + y2) * g).sum().backward()
    grads = [c.grad, bn.weight.grad, bn.bias.grad, *(p.grad for p in att.parameters())]
    return y.detach(), grads, (bn.running_mean, bn.running_var, bn.num_batches_tracked)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", POOLED_GATE_KINDS)
def test_fused_and_lean_paths_equal_the_plain_operations(kind, dtype, tol):
    assert create_attention(kind, 8).pooled_gate
    bn, att = _bn_and(kind, 16, dtype, momentum=None if kind == "se_var1" else 0.1)
    c0 = torch.randn(3, 16, 5, 4, dtype=dtype) * 2 + 1
    g = torch.randn(3, 16, 5, 4, dtype=dtype)
    y_ref, g_ref, stats_ref = _run_block(bn, att, c0, g, "plain")
    for mode, fmt in (("fused", torch.contiguous_format), ("lean", torch.contiguous_format), ("lean", torch.channels_last)):
        y, grads, stats = _run_block(bn, att, c0, g, mode, fmt)
        torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)
        for a, b in zip(grads, g_ref):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        for a, b in zip(stats, stats_ref):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", ["eca", "se", "none"])
def test_the_residual_sum_fused_into_the_rescale_equals_the_plain_sum(kind, dtype, tol):
    import copy

    bn, att = _bn_and("eca" if kind == "none" else kind, 16, dtype)
    if kind == "none":
        att = create_attention("none", 16)
    c0 = torch.randn(3, 16, 5, 4, dtype=dtype) * 2 + 1
    r0, g = torch.randn_like(c0), torch.randn_like(c0)
    results = []
    for mode, fmt in (("plain", torch.contiguous_format), ("lean", torch.contiguous_format), ("lean", torch.channels_last)):
        b, a = copy.deepcopy(bn), copy.deepcopy(att)
        c = c0.clone().contiguous(memory_format=fmt).requires_grad_()
        r = r0.clone().requires_grad_()
        with lean_attention(mode != "plain"):
            y = a(b(c)) + r if mode == "plain" else bn_attention(b, a, c, residual=r)
        (y * g).sum().backward()
        results.append([y.detach(), c.grad, r.grad, b.weight.grad, *(p.grad for p in a.parameters())])
    for other in results[1:]:
        for u, v in zip(other, results[0]):
            torch.testing.assert_close(u, v, rtol=tol, atol=tol)


def test_eca_channel_conv_equals_conv1d_forward_and_backward():
    from study.attention._eca import _ChannelConv

    torch.manual_seed(3)
    for n, c, k in ((2, 1, 3), (3, 7, 5), (4, 64, 7), (2, 3, 9)):  # C < k too: the padding covers every window
        y = torch.randn(n, c, dtype=torch.float64, requires_grad=True)
        w = torch.randn(1, 1, k, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(_ChannelConv.apply, (y, w))
        ref = F.conv1d(y[:, None], w, padding=(k - 1) // 2)[:, 0]
        torch.testing.assert_close(_ChannelConv.apply(y, w), ref)


def test_lean_path_gradcheck_in_float64():
    bn, att = _bn_and("eca", 6, torch.float64)
    att.conv.weight.requires_grad_(False)  # gradcheck over the block's input
    c = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    with lean_attention(True):
        assert torch.autograd.gradcheck(lambda t: bn_attention(bn, att, t), (c,))
        assert torch.autograd.gradcheck(lambda t: fused_pooled_gate(att, t), (c,))  # the fused node alone


def _saved_full_size(fn, c):
    ptrs = set()

    def pack(t):
        if t.numel() == c.numel():
            ptrs.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(c)
    return ptrs


@pytest.mark.parametrize("kind", ["eca", "se"])
def test_lean_path_saves_no_second_copy_of_the_feature_map(kind):
    bn, att = _bn_and(kind, 16, torch.float32)
    c = torch.randn(4, 16, 6, 6, requires_grad=True)
    with lean_attention(False):
        plain = _saved_full_size(lambda t: bn_attention(bn, att, t), c)
    with lean_attention(True):
        lean = _saved_full_size(lambda t: bn_attention(bn, att, t), c)
    assert len(plain) == 2 and c.untyped_storage().data_ptr() in plain  # BN's input and the BN output
    assert lean == {c.untyped_storage().data_ptr()}  # BN's input only


def test_lean_path_falls_back_to_the_plain_path():
    from study.attention import lean_enabled, set_lean

    bn, att = _bn_and("eca", 8, torch.float32)
    calls = []
    bn.register_forward_hook(lambda *a: calls.append("bn"))
    c = torch.randn(2, 8, 3, 3, requires_grad=True)
    with lean_attention(True):
        bn_attention(bn, att, c)
        assert calls == []  # lean: BN runs as native_batch_norm
        bn_attention(bn.eval(), att, c)  # eval mode: plain
        bn.train()
        with torch.no_grad():
            bn_attention(bn, att, c)  # no autograd: plain
        bn_attention(bn, create_attention("cbam", 8), c)  # not a pooled gate: plain
    with lean_attention(False):
        bn_attention(bn, att, c)
    assert calls == ["bn"] * 4
    assert lean_enabled() == "auto"  # the default
    with pytest.raises(ValueError, match="lean: must be true, false or 'auto', got 'yes'"):
        set_lean("yes")
    # "auto": the paths where the map is large enough to gain from them
    with lean_attention("auto"):
        bn_attention(bn, att, torch.randn(2, 8, 4, 4, requires_grad=True))  # 256 elements: plain
        assert calls == ["bn"] * 5
        bn_attention(bn, att, torch.randn(4, 8, 64, 32, requires_grad=True))  # LEAN_MIN_NUMEL: lean
        assert calls == ["bn"] * 5


def test_lean_path_in_a_model_and_backward_twice():
    import copy

    from study.config import ArchSpec
    from study.models import build_model

    torch.manual_seed(12)
    model = build_model(ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=4))
    x = torch.randn(2, 3, 16, 16)
    results = []
    for lean in (False, True):
        m = copy.deepcopy(model)
        with lean_attention(lean):
            loss = m(x).square().sum()
            loss.backward(retain_graph=True)
            loss.backward()  # the gate graph is kept for a second backward, as autograd's own
        results.append((loss.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0])
    for a, b in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_eca_channel_convolution_gradients_equal_conv1d(k):
    from study.attention._eca import _ChannelConv

    torch.manual_seed(13)
    y = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, k, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_ChannelConv.apply, (y, w))
    g = torch.randn(3, 10, dtype=torch.float64)
    ours = torch.autograd.grad(_ChannelConv.apply(y, w), (y, w), g)
    ref = torch.autograd.grad(torch.nn.functional.conv1d(y.unsqueeze(1), w, padding=(k - 1) // 2).squeeze(1), (y, w), g)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["eca", "se"])
def test_lean_path_under_bf16_autocast(kind):
    bn, att = _bn_and(kind, 16, torch.float32)
    c0 = torch.randn(4, 16, 6, 6).bfloat16()
    g = torch.randn(4, 16, 6, 6).bfloat16()
    out = []
    for lean in (False, True):
        import copy

        b, a = copy.deepcopy(bn), copy.deepcopy(att)
        c = c0.clone().requires_grad_()
        with lean_attention(lean), torch.autocast("cpu", dtype=torch.bfloat16):
            y = bn_attention(b, a, c)
        (y * g).float().sum().backward()
        out.append((y, c.grad, [p.grad for p in a.parameters()]))
    (y0, g0, p0), (y1, g1, p1) = out
    assert y1.dtype == y0.dtype and g1.dtype == g0.dtype
    torch.testing.assert_close(y1.float(), y0.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(g1.float(), g0.float(), rtol=2e-2, atol=2e-2)
    for a_, b_ in zip(p1, p0):
        torch.testing.assert_close(a_, b_, rtol=5e-2, atol=5e-2)
