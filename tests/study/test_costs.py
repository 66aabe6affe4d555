"""study.costs: exact parameters, MACs by torch.utils.flop_counter (FLOPs / 2), latency."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from study.attention import create_attention
from study.config import ArchSpec
from study.costs import (
    Costs,
    arch_digest,
    count_attention_params,
    count_macs,
    count_params,
    input_shape,
    measure_costs,
    measure_latency,
    probe_latency,
)
from study.models import build_model, describe_stages
from study.turnstile import Turnstile

TINY_ARCH = {"backbone": "resnet18", "stem": "lowres", "width": 0.25, "num_classes": 10,
             "stages": [{"kind": "eca", "k": 3}, {"kind": "se", "r": 4}, {"kind": "none"}, {"kind": "eca"}]}


def test_count_params_counts_trainable_parameters_only():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 5))
    assert count_params(model) == 3 * 8 * 9 + 8 + 8 + 8 + 8 * 5 + 5
    model[0].weight.requires_grad_(False)
    assert count_params(model) == 8 + 8 + 8 + 8 * 5 + 5


def test_count_macs_on_a_hand_counted_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    assert count_macs(model, 10) == 3 * 8 * 9 * 10 * 10 + 8 * 5
    assert count_macs(model, (10, 12)) == 3 * 8 * 9 * 10 * 12 + 8 * 5
    assert count_macs(model, (3, 10, 10)) == count_macs(model, (1, 3, 10, 10)) == count_macs(model, 10)


@pytest.mark.parametrize("kind,macs", [("eca", lambda C, k: C * k), ("eca_ns", lambda C, k: C * k), ("eca_circular", lambda C, k: C * k),
                                       ("se_var3", lambda C, k: C * C)])
def test_count_macs_sees_attention_convolutions_and_products(kind, macs):
    m = create_attention(kind, 64, k=5) if kind != "se_var3" else create_attention(kind, 64)
    assert count_macs(m, (64, 7, 7)) == macs(64, 5)


class _Products(nn.Module):
    """A matrix times a vector (mv), with a bias (addmv), and two vectors (dot): the products
    torch's FLOP counter leaves out."""

    def __init__(self):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.ones(5, 6)), nn.Parameter(torch.ones(5))

    def forward(self, x):
        v = x.flatten()[:6]
        return (self.w @ v) + torch.addmv(self.b, self.w, v) + torch.dot(v, v)


def test_count_macs_counts_matrix_vector_and_vector_products():
    assert count_macs(_Products(), (1, 2, 3)) == 5 * 6 + 5 * 6 + 6


def test_resnet50_macs_match_the_papers_figure_and_mode_is_restored():
    model = build_model(ArchSpec.uniform("resnet50", "none")).train()
    macs = count_macs(model, 224)
    assert abs(macs - 4.09e9) / 4.09e9 < 0.01
    assert model.training
    # ECA adds exactly C * k MACs per block (its 1D convolution)
    eca = build_model(ArchSpec.uniform("resnet50", {"kind": "eca", "k": 3}))
    assert count_macs(eca, 224) - macs == (3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048) * 3


def test_count_macs_falls_back_to_a_real_pass_when_meta_fails():
    class HostOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            if x.device.type == "meta":
                raise NotImplementedError("needs real data")
            return self.fc(x.flatten(1)[:, :4])

    assert count_macs(HostOnly(), (1, 2, 2)) == 4 * 3


def test_measure_latency_returns_a_positive_median_and_restores_mode():
    model = build_model(TINY_ARCH).train()
    ms = measure_latency(model, 16, warmup=1, repeats=3, batch_size=2)
    assert isinstance(ms, float) and ms > 0
    assert model.training and next(model.parameters()).device.type == "cpu"
    bad = [({"batch_size": 0}, "batch_size"), ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"),
           ({"device": "gpu0"}, "device: expected")]
    if not torch.cuda.is_available():
        bad.append(({"device": "cuda"}, "CUDA is not available"))
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            measure_latency(model, 16, **kwargs)


def test_measure_costs_of_an_arch_and_of_a_model_agree():
    costs = measure_costs(TINY_ARCH, 32, latency=False)
    model = build_model(TINY_ARCH)
    assert costs.params == count_params(model)
    assert costs.macs == count_macs(model, 32) and costs.macs_224 == count_macs(model, 224) > costs.macs
    assert costs.latency_ms is None and costs.resolution == 32
    # C = 16, 32, 64, 128 with 2 blocks each: ECA k=3; SE r=4 (hidden 8, with bias); none; ECA psi(128) = 5
    assert [s.channels for s in describe_stages(TINY_ARCH)] == [16, 32, 64, 128]
    assert costs.attention_params == count_attention_params(model) == 2 * 3 + 2 * (2 * 32 * 8 + 8 + 32) + 0 + 2 * 5
    with_latency = measure_costs(model, 32, turnstile=Turnstile(None))
    assert with_latency.latency_ms > 0 and with_latency.latency_iqr_ms >= 0
    assert (with_latency.latency_device, with_latency.latency_threads) == ("cpu", torch.get_num_threads())
    probed = ("latency_ms", "latency_iqr_ms", "latency_device", "latency_threads", "latency_exclusive")
    assert dataclasses.replace(with_latency, **dict.fromkeys(probed)) == costs
    d = costs.to_dict()
    assert list(d) == ["params", "macs", "macs_224", "latency_ms", "resolution", "attention_params", *probed[1:], "arch_digest"]
    assert Costs.from_dict(d) == costs


def test_costs_recorded_before_the_latency_probe_still_load():
    old = {"params": 10, "macs": 20, "macs_224": 30, "latency_ms": 9.2, "resolution": 32, "attention_params": 1}
    costs = Costs.from_dict(old)
    assert costs.latency_ms == 9.2 and costs.latency_iqr_ms is None and costs.arch_digest is None
    with pytest.raises(KeyError):
        Costs.from_dict({k: v for k, v in old.items() if k != "params"})


def test_probe_latency_measures_in_rounds_until_the_spread_is_small(tmp_path):
    model = build_model(TINY_ARCH).train()
    lat = probe_latency(model, 16, repeats=4, min_rounds=2, max_rounds=3, turnstile=Turnstile(tmp_path / "t"))
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.exclusive is True and model.training
    assert 2 <= lat.rounds <= 3 and lat.passes == 4 * lat.rounds and lat.device == "cpu" and lat.threads == torch.get_num_threads()
    never = probe_latency(model, 16, repeats=2, min_rounds=1, max_rounds=4, target_spread=0, turnstile=Turnstile(None))
    assert never.exclusive is None and never.rounds in (1, 4)  # a spread of 0 ends the rounds, any other runs them all
    with Turnstile(tmp_path / "t").computing():  # a training of this very process: the probe waits, then measures anyway
        busy = probe_latency(model, 16, repeats=2, min_rounds=1, max_rounds=1, turnstile=Turnstile(tmp_path / "t"), wait_s=0.1)
    assert busy.exclusive is False and busy.waited_s >= 0.1
    for kwargs, match in (({"repeats": 1}, "repeats"), ({"min_rounds": 0}, "min_rounds"),
                          ({"max_rounds": 1, "min_rounds": 2}, "max_rounds"), ({"target_spread": -1}, "target_spread")):
        with pytest.raises(ValueError, match=match):
            probe_latency(model, 16, **kwargs)


def test_one_network_one_digest():
    """A replicate, and psi's k given explicitly, build the same network: one digest; another
    k, another class count or another resolution does not."""
    psi = ArchSpec.from_dict(TINY_ARCH)  # the last stage's ECA k is psi(128) = 5
    explicit = ArchSpec.from_dict({**TINY_ARCH, "stages": [*TINY_ARCH["stages"][:3], {"kind": "eca", "k": 5}]})
    other_k = ArchSpec.from_dict({**TINY_ARCH, "stages": [*TINY_ARCH["stages"][:3], {"kind": "eca", "k": 3}]})
    digest = arch_digest(build_model(psi, 32), 32)
    assert arch_digest(build_model(psi, 32), 32) == digest == arch_digest(build_model(explicit, 32), 32)
    assert len({digest, arch_digest(build_model(other_k, 32), 32), arch_digest(build_model(psi, 16), 16),
                arch_digest(build_model(ArchSpec.from_dict({**TINY_ARCH, "num_classes": 100}), 32), 32)}) == 4
    assert measure_costs(psi, 32, latency=False).arch_digest == digest


def test_input_shape_validation():
    assert input_shape(32) == (1, 3, 32, 32)
    assert input_shape((3, 8, 9), batch_size=4) == (4, 3, 8, 9)
    for bad in (0, (1, 2, 3, 4, 5), (3, -1, 4), True):
        with pytest.raises(ValueError, match="input_size"):
            input_shape(bad)
    with pytest.raises(ValueError, match="resolution"):
        measure_costs(TINY_ARCH, 0)
