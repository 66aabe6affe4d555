"""eca_circular: ECA with timm's circular padding, added as its module and this test."""

from __future__ import annotations

import optuna
import pytest
import torch
import torch.nn.functional as F

from search_spaces import SpaceContext, get_space
from study import catalogue
from study.attention import create_attention, get_attention, psi
from study.config import ProxySpec, Recipe


def _circular_band(C: int, w: torch.Tensor) -> torch.Tensor:
    """The circulant W_k: row i holds the k weights on columns i-(k-1)/2 .. i+(k-1)/2 mod C."""
    k = w.numel()
    W = torch.zeros(C, C, dtype=w.dtype)
    for i in range(C):
        for j in range(k):
            W[i, (i + j - (k - 1) // 2) % C] += w[j]
    return W


@pytest.mark.parametrize("C,params", [(32, {"k": 5}), (16, {"k": 3}), (64, {"gamma": 2, "b": 1}), (3, {"k": 9}), (1, {"k": 3})])
def test_it_is_the_circulant_band_matrix(C, params):
    torch.manual_seed(4)
    m = create_attention("eca_circular", C, **params)
    x = torch.randn(3, C, 4, 5, dtype=torch.float64)
    m = m.double()
    w = m.conv.weight.detach().reshape(-1)
    y = x.mean(dim=(2, 3))
    torch.testing.assert_close(m(x), x * torch.sigmoid(y @ _circular_band(C, w).T)[:, :, None, None])


def test_it_computes_what_timms_cecamodule_computes():
    """timm's CecaModule: F.pad(y, (p, p), mode="circular") then a Conv1d(1, 1, k) without padding."""
    torch.manual_seed(5)
    for C, k in ((64, 3), (256, 5), (7, 5)):
        m = create_attention("eca_circular", C, k=k)
        x = torch.randn(2, C, 3, 3)
        y = x.mean((2, 3))[:, None, :]
        timm = torch.sigmoid(m.conv(F.pad(y, ((k - 1) // 2, (k - 1) // 2), mode="circular")))[:, 0, :]
        torch.testing.assert_close(m(x), x * timm[:, :, None, None])
        assert set(m.state_dict()) == {"conv.weight"}  # timm's parameter names, nothing else stored
    # timm's adaptive kernel size is psi with its floor of 3
    assert create_attention("eca_circular", 64, gamma=4, b=0, rule="timm").k == 3 == psi(64, 4, 0, "timm")


def test_only_the_edge_channels_differ_from_zero_padded_eca():
    torch.manual_seed(6)
    C, k = 32, 5
    circ, eca = create_attention("eca_circular", C, k=k), create_attention("eca", C, k=k)
    eca.conv.weight.data.copy_(circ.conv.weight.data)
    x = torch.randn(2, C, 4, 4)
    a, b = circ(x), eca(x)
    p = (k - 1) // 2
    torch.testing.assert_close(a[:, p:C - p], b[:, p:C - p])
    assert not torch.allclose(a[:, :p], b[:, :p]) and not torch.allclose(a[:, C - p:], b[:, C - p:])


def test_k_parameters_and_the_psi_of_the_paper():
    assert get_attention("eca_circular").USES_PSI and "eca_circular" in catalogue.psi_kinds()
    for C in (16, 128, 2048):
        m = create_attention("eca_circular", C)
        assert m.k == psi(C) and sum(p.numel() for p in m.parameters()) == m.k == type(m).expected_params(C)
    with pytest.raises(ValueError, match="attention 'eca_circular': give either k or gamma/b"):
        create_attention("eca_circular", 16, k=3, gamma=2)


def test_attention_nas_searches_it_as_it_declares():
    assert "eca_circular" in catalogue.searched_kinds()
    ctx = SpaceContext(backbone="resnet18", stem="lowres", width=0.25, proxy=ProxySpec(num_classes=10), recipe=Recipe(epochs=1),
                       seed=0, design="search", options={"kinds": ["eca_circular"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    modes = set()
    for _ in range(6):
        trial = study.ask()
        config = get_space("attention_nas").suggest(trial, ctx)
        study.tell(trial, 0.0)
        assert {s.kind for s in config.arch.stages} == {"eca_circular"}
        modes |= {v for name, v in trial.params.items() if name.startswith("eca_circular_mode")}
        assert all(s["k"] % 2 for s in trial.user_attrs["stages"])
    assert modes == {"fixed", "psi"}
