"""What the test of a kind added since the ECA paper's comparison checks the same way for every
such kind: its count in a whole backbone built on the meta device (against its paper's
figure), and its place in the ``attention_nas`` search."""

from __future__ import annotations

from typing import Any

import optuna
import torch

from search_spaces import SpaceContext, get_space
from study.attention import AttentionModule
from study.config import ArchSpec, AttentionSpec, ProxySpec, Recipe
from study.costs import count_params
from study.models import build_model


def backbone_counts(backbone: str, attention: str | AttentionSpec, resolution: int | None = 224) -> tuple[int, list[int]]:
    """``attention`` in every stage of ``backbone`` built for ``resolution`` px: the model's
    trainable parameters and its attention's per stage (shapes only, nothing computed)."""
    with torch.device("meta"):
        model = build_model(ArchSpec.uniform(backbone, attention), resolution)
    per_stage = [sum(p.numel() for m in stage.modules() if isinstance(m, AttentionModule) for p in m.parameters())
                 for stage in model.stages]
    return count_params(model), per_stage


def searched(kind: str, trials: int = 6) -> list[tuple[dict[str, Any], ArchSpec]]:
    """``attention_nas`` restricted to ``kind`` (ResNet-18, low-res stem, width 0.25, 32 px):
    each trial's parameters and architecture; every architecture is checked to build at 32 px."""
    ctx = SpaceContext(backbone="resnet18", stem="lowres", width=0.25, proxy=ProxySpec(num_classes=10), recipe=Recipe(epochs=1),
                       seed=0, design="search", options={"kinds": [kind]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(trials):
        trial = study.ask()
        config = get_space("attention_nas").suggest(trial, ctx)
        study.tell(trial, 0.0)
        with torch.device("meta"):
            build_model(config.arch, ctx.proxy.resolution)
        out.append((trial.params, config.arch))
    return out
