"""channel-attention-study: the domain core.

Attention modules and the psi(C) mapping (:mod:`study.attention`), backbones with
per-stage attention (:mod:`study.models`), cost accounting (:mod:`study.costs`), proxy data
(:mod:`study.data`), the trial trainer (:mod:`study.trainer`), running on a Ray cluster
(:mod:`study.cluster`: per-node data checks and staging, data-parallel full training on Ray
Train) and the one config format (:mod:`study.config`).
"""

from study.config import ArchSpec, AttentionSpec, ConfigError, ProxySpec, Recipe, TrialConfig, load_config
from study.metrics import EpochMetrics, Reporter, TrialResult

__all__ = [
    "ArchSpec",
    "AttentionSpec",
    "ConfigError",
    "ProxySpec",
    "Recipe",
    "TrialConfig",
    "load_config",
    "EpochMetrics",
    "Reporter",
    "TrialResult",
]
