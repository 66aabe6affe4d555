"""The ECA paper's adaptive kernel size k = psi(C), and the authors' released per-stage k.

Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020. Eq. (12) maps the channel count C to the 1D kernel size

    k = psi(C) = | log2(C) / gamma + b / gamma |_odd        (gamma = 2, b = 1)

where |t|_odd is "the nearest odd number of t". The authors' published code computes it as
``t = int(abs((log2(C) + b) / gamma)); k = t if t % 2 else t + 1`` - truncate, then round
an even value up - which is what :func:`psi` implements.
"""

from __future__ import annotations

import math

from study.catalogue._backbones import stage_plans

__all__ = ["psi", "PSI_RULES", "released_k", "RELEASED_K", "K_CHOICES", "GAMMA_RANGE", "B_RANGE"]

#: "paper": the authors' published formula code (truncate, even -> next odd; k can be 1).
#: "timm":  the same with a floor of 3, as timm's ``EcaModule`` computes it.
PSI_RULES = ("paper", "timm")

#: the kernel sizes and the ranges of psi's (gamma, b) a search of k tries: odd k up to 9
#: (the paper's Fig. 4 sweeps k = 3..9), gamma in [1, 4] and b in [0, 4] around the paper's (2, 1)
K_CHOICES = (1, 3, 5, 7, 9)
GAMMA_RANGE = (1.0, 4.0)
B_RANGE = (0.0, 4.0)


def psi(C: int, gamma: float = 2, b: float = 1, rule: str = "paper") -> int:
    """ECA-Net eq. (12): the odd kernel size for ``C`` channels (Wang et al., CVPR 2020).

    ``rule="paper"`` (default): ``t = int(abs((log2(C) + b) / gamma))``, ``k = t`` if t is odd
    else ``t + 1`` - the authors' code; for gamma=2, b=1: C=64 -> 3, 128..1024 -> 5,
    2048 -> 7. ``rule="timm"``: the same, then at least 3 (timm's ``EcaModule``), so sweeps
    over gamma and b are comparable with timm models; e.g. gamma=4, b=0, C=64 gives 1
    under "paper" and 3 under "timm".
    """
    if isinstance(C, bool) or not isinstance(C, int) or C < 1:
        raise ValueError(f"C: must be an integer >= 1, got {C!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma: must be a finite number > 0, got {gamma!r}")
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
        raise ValueError(f"b: must be a finite number, got {b!r}")
    if rule not in PSI_RULES:
        raise ValueError(f"rule: must be one of {', '.join(PSI_RULES)}, got {rule!r}")
    t = int(abs((math.log2(C) + b) / gamma))
    k = t if t % 2 else t + 1
    if rule == "timm":
        k = max(k, 3)
    return k


#: The ECA authors' released per-stage k (github.com/BangguWu/ECANet, model files), keyed by
#: backbone. MobileNetV2's follow from its stage widths, see :func:`released_k`.
RELEASED_K: dict[str, tuple[int, ...]] = {
    "resnet18": (3, 5, 7, 7),
    "resnet34": (3, 3, 5, 7),
    "resnet50": (3, 5, 5, 7),
    "resnet101": (3, 3, 5, 7),
}

#: the released ECA-MobileNetV2 uses k = 1 where a block has fewer than this many output
#: channels (at width 1.0), else k = 3
_MOBILENETV2_WIDE = 96


def released_k(backbone: str) -> tuple[int, ...]:
    """The ECA authors' released per-stage kernel sizes for ``backbone``.

    ResNet-18 3,5,7,7; ResNet-34 3,3,5,7; ResNet-50 3,5,5,7; ResNet-101 3,3,5,7 (none of
    which psi(C) reproduces on the attended channels, see the module docstring of
    :mod:`study.models`); MobileNetV2: k=1 for stages with fewer than 96 output channels,
    else 3.
    """
    if backbone == "mobilenetv2":
        return tuple(1 if plan.channels < _MOBILENETV2_WIDE else 3 for plan in stage_plans("mobilenetv2", 1.0))
    try:
        return RELEASED_K[backbone]
    except (KeyError, TypeError):
        valid = ", ".join([*RELEASED_K, "mobilenetv2"])
        raise ValueError(f"backbone: no released ECA k for {backbone!r} (valid: {valid})") from None
