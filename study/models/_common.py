"""Pieces shared by the backbones: attention factory per stage, weight init, head."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from study.attention import AttentionModule, create_attention
from study.models._stages import StageInfo, module_params


def attention_factory(info: StageInfo) -> Callable[[], nn.Module]:
    """A function building one fresh attention module for a block of ``info``'s stage."""
    params = module_params(info)
    return lambda: create_attention(info.kind, info.channels, **params)


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
