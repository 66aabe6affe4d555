"""Channel attention modules behind one registry, and the ECA paper's psi(C) mapping.

Every module maps (N, C, H, W) to the same shape, takes ``channels`` and its own keyword
parameters (each with its paper's default), and validates them eagerly::

    >>> from study.attention import create_attention, list_attention, psi
    >>> list_attention()
    ['a2', 'bam', 'cbam', 'coord', 'eca', 'eca_ns', 'gc', 'ge_theta', 'ge_theta_minus', 'ge_theta_plus', 'gsop', 'none', 'se', 'se_gc', 'se_var1', 'se_var2', 'se_var3']
    >>> create_attention("eca", 256).k          # gamma=2, b=1 -> psi(256) = 5
    5
    >>> create_attention({"kind": "se", "r": 8}, 64)
    SE(
      channels=64, r=8, bias=True
      (fc1): Linear(in_features=64, out_features=8, bias=True)
      (fc2): Linear(in_features=8, out_features=64, bias=True)
    )

Kinds: ``none`` (identity), ``se`` (SENet), ``se_var1``/``se_var2``/``se_var3``/``se_gc``
(the ECA paper's SE variants), ``eca`` and ``eca_ns`` (ECA-Net), ``cbam`` (CBAM), ``coord``
(Coordinate Attention), and the rest of the ECA paper's comparison: ``bam`` (BAM), ``gc``
(GCNet's global context block), ``ge_theta_minus``/``ge_theta``/``ge_theta_plus``
(Gather-Excite), ``a2`` (double attention) and ``gsop`` (global second-order pooling). :data:`ATTENTION_PARAMS` maps each kind to its parameters and
defaults.
"""

from study.attention._a2 import DoubleAttention
from study.attention._bam import BAM
from study.attention._cbam import CBAM
from study.attention._coord import CoordAttention
from study.attention._eca import ECA, ECANS, WINDOWS_MAX_NUMEL, channel_conv
from study.attention._gc import GlobalContext
from study.attention._ge import GETheta, GEThetaMinus, GEThetaPlus
from study.attention._gsop import GSoP

# importing the family modules registers them
from study.attention._identity import NoAttention
from study.attention._psi import PSI_RULES, RELEASED_K, psi, released_k
from study.attention._registry import (
    ATTENTION_PARAMS,
    AttentionModule,
    attention_params,
    create_attention,
    get_attention,
    list_attention,
    psi_kinds,
    register_attention,
    resolve_attention,
)
from study.attention._rescale import LEAN_MIN_NUMEL, bn_attention, lean_attention, lean_enabled, pooled_gate_scale, set_lean
from study.attention._se import SE, SEGC, SEVar1, SEVar2, SEVar3

__all__ = [
    "ATTENTION_PARAMS",
    "AttentionModule",
    "attention_params",
    "create_attention",
    "get_attention",
    "list_attention",
    "psi_kinds",
    "register_attention",
    "resolve_attention",
    "psi",
    "PSI_RULES",
    "RELEASED_K",
    "released_k",
    "bn_attention",
    "LEAN_MIN_NUMEL",
    "lean_attention",
    "lean_enabled",
    "pooled_gate_scale",
    "set_lean",
    "NoAttention",
    "SE",
    "SEVar1",
    "SEVar2",
    "SEVar3",
    "SEGC",
    "ECA",
    "channel_conv",
    "WINDOWS_MAX_NUMEL",
    "ECANS",
    "CBAM",
    "CoordAttention",
    "BAM",
    "GlobalContext",
    "GEThetaMinus",
    "GETheta",
    "GEThetaPlus",
    "DoubleAttention",
    "GSoP",
]
