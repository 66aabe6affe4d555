"""Pieces shared by the backbones: attention factory per stage, weight init, head."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from study.attention import AttentionModule, create_attention
from study.models._stages import StageInfo, module_params


def attention_seed(seed: int, stage: int, block: int) -> int:
    """The seed of the attention module of block ``block`` of stage ``stage`` in a network
    built from ``seed`` (:func:`attention_factory`)."""
    return int(np.random.SeedSequence([int(seed), 0xA77E, int(stage), int(block)]).generate_state(1)[0])


def attention_factory(info: StageInfo) -> Callable[[], nn.Module]:
    """A function building one fresh attention module for each block of ``info``'s stage, in
    turn, from a random stream of its own: seeded by (the network's seed, stage, block) and
    drawn inside :func:`torch.random.fork_rng`, so building an attention module takes nothing
    from the stream the backbone's layers draw from. Two networks built from one seed
    (``torch.manual_seed``, :func:`study.trainer.trial_model`) then start from the same
    backbone weights whatever their attention (common random numbers: a paired comparison
    of two attentions carries no initialisation noise of the backbone), and one attention
    kind at one (seed, stage, block) starts from the same weights in any network."""
    params = module_params(info)
    base = torch.initial_seed()
    blocks = itertools.count()

    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(attention_seed(base, info.stage, next(blocks)))
            return create_attention(info.kind, info.channels, **params)

    return make


def init_backbone(model: nn.Module) -> None:
    """torchvision's initialisation (Kaiming-normal fan-out convs, BN 1/0) for the backbone's
    own layers; attention modules keep their own initialisation."""

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, AttentionModule):
                continue
            if isinstance(child, nn.Conv2d):
                nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
                if child.bias is not None:
                    nn.init.zeros_(child.bias)
            elif isinstance(child, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(child.weight)
                nn.init.zeros_(child.bias)
            visit(child)

    visit(model)
