"""gct: Gated Channel Transformation (Yang et al., CVPR 2020)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from study import catalogue
from study.attention import create_attention
from study.trainer import param_groups

sys.path.insert(0, str(Path(__file__).parent))  # the shared checks of a kind's test, whatever pytest's import mode
from _kinds import backbone_counts, searched


def _authors(x, alpha, gamma, beta, eps=1e-5):
    """The authors' GCT, l2 mode, line for line."""
    embedding = (x.pow(2).sum((2, 3), keepdim=True) + eps).pow(0.5) * alpha
    norm = gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + eps).pow(0.5)
    return x * (1.0 + torch.tanh(embedding * norm + beta))


def test_it_starts_as_the_identity_and_computes_the_authors_gate():
    torch.manual_seed(0)
    m = create_attention("gct", 16).double()
    x = torch.randn(3, 16, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), x)  # gamma = beta = 0 (Sec. 3.4)
    assert torch.equal(m.alpha, torch.ones(1, 16, 1, 1, dtype=torch.float64))
    with torch.no_grad():
        for p in (m.alpha, m.gamma, m.beta):
            p.normal_(0, 1)
    torch.testing.assert_close(m(x), _authors(x, m.alpha, m.gamma, m.beta))
    # eq. (1)-(3): the normalisation is sqrt(C) s_c / ||s||_2 (eps aside)
    s = m.alpha * x.square().sum((2, 3), keepdim=True).sqrt()
    s_hat = 16**0.5 * s / s.square().sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(m(x), x * (1 + torch.tanh(m.gamma * s_hat + m.beta)), rtol=1e-6, atol=1e-6)


def test_three_c_parameters_per_module_and_in_resnet50():
    m = create_attention("gct", 256)
    assert {n: p.numel() for n, p in m.named_parameters()} == {"alpha": 256, "gamma": 256, "beta": 256} == {
        n: m.expected_params(256) // 3 for n in ("alpha", "gamma", "beta")}
    # one GCT per block (the harness's placement): 3 C per block; the paper places one before every
    # convolution, so its ResNet-50 count is not this one's and none is checked against it
    total, per_stage = backbone_counts("resnet50", "gct")
    assert per_stage == [3 * 3 * 256, 4 * 3 * 512, 6 * 3 * 1024, 3 * 3 * 2048]
    assert total == 25_557_032 + 45_312 == 25_602_344


def test_eps_is_checked_and_the_kind_is_searched():
    with pytest.raises(ValueError, match=r"attention 'gct': eps must be a finite number > 0, got -1"):
        create_attention("gct", 8, eps=-1)
    assert "gct" in catalogue.searched_kinds()
    assert {spec.kind for _, arch in searched("gct", 2) for spec in arch.stages} == {"gct"}


def test_the_gating_bias_gets_no_weight_decay():
    """The authors' README: do not apply weight decay to beta; alpha and gamma are decayed."""
    m = create_attention("gct", 16)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in param_groups(m, 5e-4)}
    assert groups["no_decay"] == {id(m.beta)} and groups["decay"] == {id(m.alpha), id(m.gamma)}
