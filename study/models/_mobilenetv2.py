"""MobileNetV2 with one attention per row of its inverted-residual table.

Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018 (Table 2); the layout, width rounding (``make_divisible(c * width,
8)``) and parameter count are torchvision's. As in the ECA paper's ECA-MobileNetV2 (Wang et
al., CVPR 2020), the attention acts on every block's output, after the projection BN and
before the residual addition.
"""

from __future__ import annotations

import torch
from torch import nn

from study.attention import bn_attention
from study.catalogue import MOBILENETV2_SETTINGS, make_divisible
from study.config import ArchSpec
from study.models._common import attention_factory, init_backbone
from study.models._registry import register_backbone
from study.models._stages import StageInfo


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand: int, attention: nn.Module):
        super().__init__()
        hidden = int(round(inp * expand))
        self.use_residual = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu(inp, hidden, 1, 1))
        layers += [_conv_bn_relu(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        *body, bn = self.conv  # the projection's BN goes with the attention (bn_attention)
        for layer in body:
            out = layer(out)
        out = bn_attention(bn, self.attention, out)  # attention(conv(x))
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, stage_info: tuple[StageInfo, ...], *, stem: str, width: float, num_classes: int, dropout: float = 0.2):
        super().__init__()
        inp = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        self.stem = _conv_bn_relu(3, inp, 3, 2 if stem == "imagenet" else 1)
        stages = []
        for info, (t, _, _, s) in zip(stage_info, MOBILENETV2_SETTINGS):
            make_attention = attention_factory(info)
            blocks = []
            for j in range(info.blocks):
                blocks.append(InvertedResidual(inp, info.channels, s if j == 0 else 1, t, make_attention()))
                inp = info.channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = _conv_bn_relu(inp, last, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_backbone(self)
        nn.init.normal_(self.classifier[1].weight, 0, 0.01)
        nn.init.zeros_(self.classifier[1].bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.forward_features(x)), 1))


def _build(arch: ArchSpec, stage_info: tuple[StageInfo, ...]) -> nn.Module:
    return MobileNetV2(stage_info, stem=arch.stem, width=arch.width, num_classes=arch.num_classes)


register_backbone("mobilenetv2", build=_build)
