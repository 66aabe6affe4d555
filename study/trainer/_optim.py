"""SGD with Nesterov momentum, with weight decay on weights only.

Weight decay is not applied to normalization-layer parameters and biases (parameters
named ``bias``); other weights, 1-D ones such as SE-Var2's per-channel weight included,
are decayed; following "Bag of Tricks for Image Classification with Convolutional
Neural Networks" (He et al., CVPR 2019, Sec. 3.1, "No bias decay"). A module may name
more of its own parameters that act as biases in a class attribute ``no_weight_decay``
(GCT's gating bias ``beta``, which its authors do not decay).
"""

from __future__ import annotations

import torch
from torch import nn

from study.config import Recipe
from study.validate import ConfigError

__all__ = ["param_groups", "build_optimizer"]

#: normalization layers, whose affine parameters get no weight decay
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: ``decay`` (weights) and ``no_decay`` (norm layers and biases).

    Each group carries its ``name``. Parameters that do not require grad are left out; a
    group with no parameters is dropped.
    """
    if weight_decay < 0:
        raise ConfigError("weight_decay", f"must be >= 0, got {weight_decay!r}")
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in model.modules():  # the order of model.parameters()
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = isinstance(module, _NORMS) or name == "bias" or name in getattr(module, "no_weight_decay", ())
            (no_decay if exempt else decay).append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": float(weight_decay)},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """``torch.optim.SGD`` with the recipe's peak lr, momentum and Nesterov flag."""
    return torch.optim.SGD(
        param_groups(model, recipe.weight_decay),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )
