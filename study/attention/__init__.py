"""Channel attention modules behind one registry, and the ECA paper's psi(C) mapping.

Every module maps (N, C, H, W) to the same shape, takes ``channels`` and its own keyword
parameters (each with its paper's default), and validates them eagerly::

    >>> from study.attention import create_attention, list_attention, psi
    >>> create_attention("eca", 256).k          # gamma=2, b=1 -> psi(256) = 5
    5
    >>> create_attention({"kind": "se", "r": 8}, 64)
    SE(
      channels=64, r=8, bias=True
      (fc1): Linear(in_features=64, out_features=8, bias=True)
      (fc2): Linear(in_features=8, out_features=64, bias=True)
    )

A kind is one module of this package: its declaration (:class:`study.catalogue.AttentionKind`:
parameters, paper defaults, limits and search ranges) and its class, registered together
(:func:`register_attention`). Importing this package imports every module that declares a
kind (:func:`study.catalogue.kind_modules`): a new kind needs no line here, and the search
spaces read its declaration. ``list_attention()`` names them all; ``python -m
study.inspect --help`` lists them with their parameter defaults. The ECA paper's comparison:
``none`` (identity), ``se`` (SENet), ``se_var1``/``se_var2``/``se_var3``/``se_gc`` (the ECA
paper's SE variants), ``eca`` and ``eca_ns`` (ECA-Net), ``cbam`` (CBAM), ``coord``
(Coordinate Attention), ``bam`` (BAM), ``gc`` (GCNet's global context block),
``ge_theta_minus``/``ge_theta``/``ge_theta_plus`` (Gather-Excite), ``a2`` (double attention)
and ``gsop`` (global second-order pooling).

A pooled-gate attention (:class:`PooledGate`) writes its ``gate`` only; its ``forward`` is
plain PyTorch, and the backbones run it through the measured fused path
(:func:`bn_attention`, :func:`set_lean`).
"""

import importlib

from study.attention._eca import WINDOWS_MAX_NUMEL, channel_conv
from study.attention._fused import LEAN_MIN_NUMEL, bn_attention, fused_pooled_gate, lean_attention, lean_enabled, set_lean
from study.attention._registry import (
    ATTENTION_PARAMS,
    AttentionModule,
    PooledGate,
    attention_params,
    create_attention,
    get_attention,
    limited,
    list_attention,
    psi_kinds,
    register_attention,
    resolve_attention,
)
from study.catalogue import PSI_RULES, RELEASED_K, AttentionKind, Param, kind_modules, kind_names, psi, released_k

for _module in kind_modules():  # each registers the kinds it declares
    importlib.import_module(_module)
if set(kind_names()) - set(list_attention()):
    raise ImportError(f"attention kinds declared without a class registered for them: {sorted(set(kind_names()) - set(list_attention()))} "
                      "(decorate the class with @register_attention(ITS_KIND))")

__all__ = [
    "ATTENTION_PARAMS",
    "AttentionKind",
    "AttentionModule",
    "Param",
    "PooledGate",
    "attention_params",
    "create_attention",
    "get_attention",
    "limited",
    "list_attention",
    "psi_kinds",
    "register_attention",
    "resolve_attention",
    "psi",
    "PSI_RULES",
    "RELEASED_K",
    "released_k",
    "bn_attention",
    "fused_pooled_gate",
    "LEAN_MIN_NUMEL",
    "lean_attention",
    "lean_enabled",
    "set_lean",
    "channel_conv",
    "WINDOWS_MAX_NUMEL",
]
