"""simam: SimAM (Yang et al., ICML 2021), the first parameter-free kind beside none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from study import catalogue
from study.attention import create_attention
from study.costs import count_macs
from study.models import build_model

sys.path.insert(0, str(Path(__file__).parent))  # the shared checks of a kind's test, whatever pytest's import mode
from _kinds import backbone_counts, searched


def _authors(x: torch.Tensor, e_lambda: float) -> torch.Tensor:
    """The authors' module (its README and code), line for line."""
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
    y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + e_lambda)) + 0.5
    return x * torch.sigmoid(y)


@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
def test_it_is_the_inverse_minimal_energy_of_eq_5_to_7(e_lambda):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    m = create_attention("simam", 8, e_lambda=e_lambda)
    torch.testing.assert_close(m(x), _authors(x, e_lambda))
    # eq. (5)-(6) written out: 1 / e_t = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2, sigma^2 over n = HW - 1
    mu, var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(m(x), x * torch.sigmoid((x - mu) ** 2 / (4 * (var + e_lambda)) + 0.5))


def test_a_1x1_map_gets_sigmoid_of_one_half_not_nan():
    x = torch.randn(2, 4, 1, 1)
    assert torch.isnan(_authors(x, 1e-4)).all()  # the authors' n = 0
    torch.testing.assert_close(create_attention("simam", 4)(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_no_parameters_anywhere_and_no_macs():
    m = create_attention("simam", 64)
    assert list(m.parameters()) == [] and m.expected_params(64) == 0 and m.params == {"e_lambda": 1e-4}
    # the SimAM paper's README table: SimAM-R18/34/50/101 11.69 / 21.80 / 25.56 / 44.55 M, MV2 3.50 M: the baselines'
    for backbone, plain in (("resnet18", 11_689_512), ("resnet50", 25_557_032), ("mobilenetv2", 3_504_872)):
        total, per_stage = backbone_counts(backbone, "simam")
        assert total == plain and set(per_stage) == {0}
    # elementwise work only: the MACs are the baseline's (the paper: R50 4.11 G, as its ResNet-50)
    with torch.device("meta"):
        simam, none = (build_model({"backbone": "resnet18", "stages": [{"kind": k}] * 4}) for k in ("simam", "none"))
    assert count_macs(simam, 64) == count_macs(none, 64)


def test_a_model_without_attention_parameters_trains():
    from study.config import Recipe
    from study.trainer import build_optimizer

    torch.manual_seed(1)
    model = build_model({"backbone": "resnet18", "stem": "lowres", "width": 0.25, "num_classes": 3, "stages": [{"kind": "simam"}] * 4}, 32)
    opt = build_optimizer(model, Recipe(lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if b.grad is not None and b.grad.any())


def test_lambda_is_checked_and_searched_on_the_papers_grid():
    with pytest.raises(ValueError, match=r"attention 'simam': e_lambda must be a finite number > 0, got 0"):
        create_attention("simam", 8, e_lambda=0)
    with pytest.raises(ValueError, match=r"attention 'simam': unknown parameter 'r' \(valid parameters: e_lambda\)"):
        create_attention("simam", 8, r=16)
    assert "simam" in catalogue.searched_kinds()
    seen = {params[f"simam_e_lambda_s{i}"] for params, _ in searched("simam", 8) for i in range(4)}
    assert seen <= {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6} and len(seen) > 2
