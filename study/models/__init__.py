"""Backbones with one attention choice per stage.

    >>> from study.config import ArchSpec
    >>> from study.models import build_model, list_backbones
    >>> list_backbones("resnet*")
    ['resnet101', 'resnet18', 'resnet34', 'resnet50']
    >>> model = build_model(ArchSpec.uniform("resnet50", {"kind": "eca"}))
    >>> [(s.channels, s.k) for s in model.stage_info]
    [(256, 5), (512, 5), (1024, 5), (2048, 7)]

Backbones: ``resnet18``/``resnet34`` (basic blocks), ``resnet50``/``resnet101``
(bottlenecks), four stages each; ``mobilenetv2``, seven stages (one per row of its
inverted-residual table). Stems: ``imagenet`` and ``lowres`` (3x3 stride-1 first conv, no
max-pool). ``width`` (0.25 .. 2.0) multiplies every stage's channels (MobileNetV2 rounds to
multiples of 8). Stage indices count from 0.

Which C the psi mapping sees (``ArchSpec.psi_input``): by default the channels the
attention acts on (a bottleneck's output, planes x 4); with ``"planes"`` the blocks' inner
width. The ECA authors' released ECA-Net50 uses k = 3, 5, 5, 7 on 256..2048 channels,
which matches neither reading (psi gives 5, 5, 5, 7 on channels and 3, 5, 5, 5 on planes);
use :func:`study.attention.released_k` for their settings.
"""

# importing the family modules registers them
from study.catalogue import make_divisible
from study.models import _mobilenetv2, _resnet  # noqa: F401  (registration)
from study.models._builder import build_model, released_arch
from study.models._registry import STEMS, Backbone, StagePlan, get_backbone, list_backbones, num_stages, register_backbone
from study.models._stages import StageInfo, describe_stages, stage_sizes

__all__ = [
    "build_model",
    "released_arch",
    "stage_sizes",
    "describe_stages",
    "StageInfo",
    "num_stages",
    "list_backbones",
    "get_backbone",
    "register_backbone",
    "Backbone",
    "StagePlan",
    "STEMS",
    "make_divisible",
]
