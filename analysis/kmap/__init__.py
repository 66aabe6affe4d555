"""Does the ECA kernel size k matter, which k does each channel count C prefer, and does the
paper's psi(C) describe it? Every answer with its interval, and "no evidence" when that is
what the data say.

ECA-Net (Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020, Sec. 3.2.3, eq. 12) maps the channel count C to the 1-D kernel size
k = psi(C) = |log2(C)/gamma + b/gamma|_odd with gamma=2, b=1. For a study this module

1. reads one response that every included trial reached - validation top-1 at the last
   epoch all of them ran, pruned trials included, failed ones counted and left out - and
   pools replicates per configuration (:func:`kmap_data`; seed noise :func:`seed_noise`);
2. fits an explicit model, top-1 = width/backbone stratum + stage kinds + theta(C, k), by
   weighted least squares (statsmodels), and tests "k matters" (F-test, or a permutation
   test within width strata), estimates k* per C with a confidence set for the best k,
   every k's difference to k* with intervals, the largest difference with a simultaneous
   interval, whether the stage matters beyond C, and whether the seed noise explains the
   spread between configurations (:func:`k_effect`, :class:`KEffect`);
3. scores mappings by the top-1 they are predicted to lose - the paper's psi, timm's rule,
   k=3, the authors' released per-stage k, mappings the user names, and psi fitted to the
   study by predicted top-1, with intervals that hold whatever the best k is and, for the
   fitted psi, whatever curve the data chose (:func:`fit_psi_by_top1`, :func:`score_mappings`);
4. summarizes trials that sampled (gamma, b) directly (:func:`gamma_b_plane`, descriptive).

:func:`analyze_kmap` does 1-3. Given (C, k) points instead of a study (e.g. a paper's table),
:func:`fit_kmap` fits psi (both rounding rules, every equal-loss (gamma, b)), the continuous
k ~ alpha log2(C) + beta with bootstrap intervals and the linear mapping the paper rejected,
scored by their error in k.

Command line::

    python -m analysis.kmap runs/NAME [--json] [--alpha 0.05] [--method permutation] [--epoch E]
    python -m analysis.kmap --points FILE.csv [--json]

``--json`` prints a top-level ``k_effect`` object (``evidence``, ``p_value``, ``method``,
``effect_pts``, ``effect_ci``, ``sigma_seed``, ``n_trials``, ...) beside ``preferred_k``,
``effects``, ``mappings`` and ``fitted_psi``.
"""

from analysis.kmap._analysis import KmapAnalysis, analyze_kmap, gamma_b_plane
from analysis.kmap._claims import CLAIMS, Claim, claim_gate, mapping_claims, mapping_lines
from analysis.kmap._cli import build_parser, format_analysis, format_fit, main, read_points
from analysis.kmap._data import KData, SeedNoise, collapsed_runs, kmap_data, seed_noise
from analysis.kmap._effect import KEffect, KModel, fit_k_model, k_effect
from analysis.kmap._fits import (
    PAPER_B,
    PAPER_GAMMA,
    ContinuousFit,
    KmapFit,
    LinearFit,
    PsiFit,
    fit_continuous,
    fit_kmap,
    fit_linear,
    fit_psi,
)
from analysis.kmap._mappings import (
    Mapping,
    MappingScore,
    MappingScores,
    candidate_mappings,
    common_widths,
    parse_mapping,
    score_mappings,
)
from analysis.kmap._power import design_power, detectable_effect, f_power, model_parameters, noncentrality
from analysis.kmap._psi_choice import PsiChoice, fit_psi_by_top1
from analysis.kmap._render import Block, answer_blocks, render_markdown, render_text

__all__ = [
    "Block",
    "answer_blocks",
    "render_markdown",
    "render_text",
    "CLAIMS",
    "Claim",
    "MappingScores",
    "claim_gate",
    "collapsed_runs",
    "common_widths",
    "mapping_claims",
    "build_parser",
    "mapping_lines",
    "f_power",
    "model_parameters",
    "PAPER_B",
    "PAPER_GAMMA",
    "ContinuousFit",
    "KData",
    "KEffect",
    "KModel",
    "KmapAnalysis",
    "KmapFit",
    "LinearFit",
    "Mapping",
    "MappingScore",
    "PsiChoice",
    "PsiFit",
    "SeedNoise",
    "analyze_kmap",
    "candidate_mappings",
    "design_power",
    "detectable_effect",
    "fit_continuous",
    "fit_k_model",
    "fit_kmap",
    "fit_linear",
    "fit_psi",
    "fit_psi_by_top1",
    "format_analysis",
    "format_fit",
    "gamma_b_plane",
    "k_effect",
    "kmap_data",
    "main",
    "noncentrality",
    "parse_mapping",
    "read_points",
    "score_mappings",
    "seed_noise",
]
