"""ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks) with one attention per stage.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016; the
layout and parameter counts are torchvision's (stride on the bottleneck's 3x3, "v1.5").
The attention of a block sits on the residual branch after its last BN, before the
addition, as in SENet (Hu et al., CVPR 2018, Fig. 3) and ECA-Net (Wang et al., CVPR 2020);
BN and attention go through :func:`study.attention.bn_attention`, which takes the
memory-lean path for channel attention where it applies.
"""

from __future__ import annotations

import torch
from torch import nn

from study.attention import bn_attention
from study.catalogue import RESNET_LAYOUTS, scaled
from study.config import ArchSpec
from study.models._common import attention_factory, init_backbone
from study.models._registry import register_backbone
from study.models._stages import StageInfo


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, attention: nn.Module):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attention = attention
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        # attention(bn2(conv2(out))) + identity: the rescale and the residual sum in one pass where fused
        return self.relu(bn_attention(self.bn2, self.attention, self.conv2(out), residual=identity))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, attention: nn.Module):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        # attention(bn3(conv3(out))) + identity: the rescale and the residual sum in one pass where fused
        return self.relu(bn_attention(self.bn3, self.attention, self.conv3(out), residual=identity))


class ResNet(nn.Module):
    """A ResNet whose stage ``i`` uses the attention described by ``stage_info[i]``."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], stage_info: tuple[StageInfo, ...], *, stem: str, width: float,
                 num_classes: int):
        super().__init__()
        inplanes = scaled(64, width)
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(3, inplanes, 7, 2, 3, bias=False), nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
        else:  # lowres
            self.stem = nn.Sequential(nn.Conv2d(3, inplanes, 3, 1, 1, bias=False), nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True))
        stages = []
        for info in stage_info:
            stride = 1 if info.stage == 0 else 2
            make_attention = attention_factory(info)
            blocks = []
            for j in range(info.blocks):
                s = stride if j == 0 else 1
                downsample = None
                if s != 1 or inplanes != info.channels:
                    downsample = nn.Sequential(nn.Conv2d(inplanes, info.channels, 1, s, bias=False), nn.BatchNorm2d(info.channels))
                blocks.append(block(inplanes, info.planes, s, downsample, make_attention()))
                inplanes = info.channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_backbone(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _builder(block: type[BasicBlock] | type[Bottleneck]):
    def build(arch: ArchSpec, stage_info: tuple[StageInfo, ...]) -> nn.Module:
        return ResNet(block, stage_info, stem=arch.stem, width=arch.width, num_classes=arch.num_classes)

    return build


for _name, (_block, _) in RESNET_LAYOUTS.items():  # the layouts (blocks per stage) are the catalogue's
    register_backbone(_name, build=_builder(_BLOCKS[_block]))
