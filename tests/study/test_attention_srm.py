"""srm: the Style-based Recalibration Module (Lee et al., ICCV 2019)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from study import catalogue
from study.attention import create_attention
from study.costs import count_macs

sys.path.insert(0, str(Path(__file__).parent))  # the shared checks of a kind's test, whatever pytest's import mode
from _kinds import backbone_counts, searched


def _authors(x, cfc, bn):
    """The authors' SRMLayer (style pooling, style integration), line for line."""
    N, C, _, _ = x.size()
    mean = x.view(N, C, -1).mean(dim=2).view(N, C, -1)
    std = x.view(N, C, -1).std(dim=2).view(N, C, -1)
    z = torch.sum(torch.cat((mean, std), dim=2) * cfc[None, :, :], dim=2)[:, :, None, None]
    return x * torch.sigmoid(bn(z))


def test_it_computes_the_authors_layer_in_training_and_eval():
    torch.manual_seed(0)
    m = create_attention("srm", 12).double()
    assert not m.cfc.any()  # the authors' zero start
    with torch.no_grad():
        m.cfc.normal_(0, 1)
        m.bn.weight.normal_(1, 0.2)
        m.bn.bias.normal_(0, 0.2)
    x = torch.randn(4, 12, 5, 3, dtype=torch.float64)
    ref = create_attention("srm", 12).double()
    ref.load_state_dict(m.state_dict())
    assert set(m.state_dict()) == {"cfc", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    torch.testing.assert_close(m(x), _authors(x, ref.cfc, ref.bn))  # training: batch statistics, running ones updated alike
    torch.testing.assert_close(m.bn.running_mean, ref.bn.running_mean)
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), _authors(x, ref.cfc, ref.bn))


def test_a_1x1_map_has_zero_spread_and_finite_gradients():
    m = create_attention("srm", 4)
    with torch.no_grad():
        m.cfc.fill_(1.0)
    x = torch.randn(3, 4, 1, 1, requires_grad=True)
    out = m(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and torch.isfinite(m.cfc.grad).all()
    assert not m.cfc.grad[:, 1].any()  # the spread of one value is a constant 0


def test_four_c_parameters_and_the_papers_resnet50_figure():
    m = create_attention("srm", 64)
    assert sum(p.numel() for p in m.parameters()) == 4 * 64 == m.expected_params(64)
    # SRM paper, the ImageNet table: ResNet-50 25.56 M, SRM-ResNet-50 25.62 M: the count with BN's affine
    # parameters (4C per block; 2C without them would give 25.59 M); BN's running statistics are buffers
    total, per_stage = backbone_counts("resnet50", "srm")
    assert per_stage == [3 * 4 * 256, 4 * 4 * 512, 6 * 4 * 1024, 3 * 4 * 2048]
    assert total == 25_617_448 and round(total / 1e6, 2) == 25.62


def test_the_channel_wise_fc_is_counted_as_2c_macs():
    for C in (16, 256):
        assert count_macs(create_attention("srm", C), (C, 7, 7)) == 2 * C


def test_searched_as_a_kind_without_parameters():
    assert "srm" in catalogue.searched_kinds() and catalogue.get_kind("srm").params == {}
    assert {spec.kind for _, arch in searched("srm", 2) for spec in arch.stages} == {"srm"}
