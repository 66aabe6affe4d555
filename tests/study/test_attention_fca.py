"""fca: FcaNet's multi-spectral channel attention (Qin et al., ICCV 2021)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from study import catalogue
from study.attention import create_attention, resolve_attention
from study.attention._fca import FREQUENCIES
from study.costs import count_macs
from study.models import build_model, describe_stages

sys.path.insert(0, str(Path(__file__).parent))  # the shared checks of a kind's test, whatever pytest's import mode
from _kinds import backbone_counts, searched

#: the authors' get_freq_indices, first entries of each order (layer.py)
TOP4, LOW4, BOT4 = [(0, 0), (0, 1), (6, 0), (0, 5)], [(0, 0), (0, 1), (1, 0), (1, 1)], [(6, 6), (1, 4), (3, 4), (3, 6)]


def _authors_filter(C: int, size: int, freqs: list[tuple[int, int]]) -> torch.Tensor:
    """The authors' get_dct_filter with their index scaling (mapper * (dct // 7)), loop for loop."""
    def build(pos, freq, POS):
        result = math.cos(math.pi * freq * (pos + 0.5) / POS) / math.sqrt(POS)
        return result if freq == 0 else result * math.sqrt(2)

    out = torch.zeros(C, size, size, dtype=torch.float64)
    part = C // len(freqs)
    for i, (u, v) in enumerate(freqs):
        u, v = u * (size // 7), v * (size // 7)
        for tx in range(size):
            for ty in range(size):
                out[i * part:(i + 1) * part, tx, ty] = build(tx, u, size) * build(ty, v, size)
    return out


@pytest.mark.parametrize("freq,first4", [("top16", TOP4), ("low4", LOW4), ("bot8", BOT4)])
@pytest.mark.parametrize("size", [7, 14, 56])
def test_the_filters_are_the_authors(freq, first4, size):
    m = create_attention("fca", 32, freq=freq, size=size)
    n = int(freq[3:])
    assert m.params == {"r": 16, "freq": freq, "size": size}
    expected = _authors_filter(32, size, list(FREQUENCIES[freq[:3]][:n]))
    torch.testing.assert_close(m.weight.double(), expected, rtol=1e-6, atol=1e-7)
    assert list(FREQUENCIES[freq[:3]][:4]) == first4


def test_the_forward_is_dct_pooling_then_se_excitation_without_bias():
    torch.manual_seed(0)
    m = create_attention("fca", 32, r=4, freq="top8", size=7).double()
    x = torch.randn(2, 32, 7, 7, dtype=torch.float64)
    def expected(x, pooled):
        y = (pooled * m.weight.double()).sum((2, 3))
        return x * torch.sigmoid(m.fc2(torch.relu(m.fc1(y))))[:, :, None, None]

    torch.testing.assert_close(m(x), expected(x, x))
    assert m.fc1.bias is None and m.fc2.bias is None and m.fc1.out_features == 8
    # Theorem 1: the (0, 0) frequency is global average pooling times the map's side (sqrt(HW))
    gap = create_attention("fca", 32, freq="top1", size=7).double()
    torch.testing.assert_close((x * gap.weight.double()).sum((2, 3)), 7 * x.mean((2, 3)))
    # a map that is not the filters' size is average-pooled to it first (the authors' fallback)
    big = torch.randn(2, 32, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(m(big), expected(big, torch.nn.functional.adaptive_avg_pool2d(big, 7)))


def test_freq_and_size_resolve_per_stage_and_are_recorded():
    assert resolve_attention("fca", 256)[1] == {"r": 16, "freq": "top16", "size": 7}
    assert resolve_attention("fca", 24)[1]["freq"] == "top8" and resolve_attention("fca", 8)[1]["freq"] == "top8"
    assert resolve_attention("fca", 256, feature_map=(56, 56))[1]["size"] == 56
    assert resolve_attention("fca", 256, feature_map=(4, 4))[1]["size"] == 7
    sizes = [s.params["size"] for s in describe_stages({"backbone": "resnet50", "stages": [{"kind": "fca"}] * 4}, 224)]
    assert sizes == [56, 28, 14, 7]  # the authors' c2wh for ResNet-50 at 224 px
    lowres = {"backbone": "resnet18", "stem": "lowres", "width": 0.25, "stages": [{"kind": "fca"}] * 4}
    assert [s.params["size"] for s in describe_stages(lowres, 32)] == [32, 16, 8, 7]
    model = build_model(lowres, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


@pytest.mark.parametrize("params,match", [
    ({"freq": "mid4"}, r"attention 'fca': freq must be top, low or bot followed by one of 1, 2, 4, 8, 16, 32 \(e.g. top16\), got 'mid4'"),
    ({"freq": "top32"}, r"attention 'fca': freq 'top32' splits the channels into 32 groups, which must divide channels=48"),
    ({"size": 5}, r"attention 'fca': size must be an integer >= 7, got 5"),
    ({"r": 0}, r"attention 'fca': r must be an integer >= 1, got 0"),
])
def test_bad_parameters_are_one_line(params, match):
    with pytest.raises(ValueError, match=match):
        create_attention("fca", 48, **params)


def test_ses_count_and_macs_and_the_papers_resnet50_figure():
    m = create_attention("fca", 256)
    assert sum(p.numel() for p in m.parameters()) == 2 * 256 * 16 == m.expected_params(256)
    assert count_macs(m, (256, 7, 7)) == 2 * 256 * 16 == count_macs(create_attention("se", 256, bias=False), (256, 7, 7))
    # FcaNet paper, the ImageNet comparison: FcaNet-50 28.07 M, SENet-50's (bias-free) count
    total, per_stage = backbone_counts("resnet50", "fca")
    assert total == 28_071_976 == backbone_counts("resnet50", {"kind": "se", "bias": False})[0]
    assert per_stage == [3 * 2 * 256 * 16, 4 * 2 * 512 * 32, 6 * 2 * 1024 * 64, 3 * 2 * 2048 * 128]


def test_searched_with_r_and_its_filters_sized_to_the_study_maps():
    assert "fca" in catalogue.searched_kinds()
    for params, arch in searched("fca", 4):
        assert [s.kwargs["size"] for s in arch.stages] == [32, 16, 8, 7]
        assert all(s.kwargs["r"] == params[f"fca_r_s{i}"] for i, s in enumerate(arch.stages))
