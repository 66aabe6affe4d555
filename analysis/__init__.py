"""Reading a study into pandas and making sense of it.

``load`` reads a run folder or a storage URL into :class:`StudyFrames`; :mod:`analysis.kmap`
tests whether the ECA kernel size matters and which k each C prefers, with intervals, and
scores mappings k = psi(C) by the top-1 they lose; Pareto fronts, hypervolume and attention cost-vs-gain,
parameter importance, learning curves and proxy fidelity; plots; ``python -m
analysis.report`` writes them all; ``python -m analysis.export`` turns chosen trials into
full-training TrialConfig JSON, or a whole study into a DeepCAVE run (:func:`export_deepcave`).
Analysis never writes to a study's storage, except the report's figures as the study's
artifacts in its run folder's artifact store (:mod:`analysis._artifacts`).
"""

from analysis._deepcave import deepcave_trials, export_deepcave
from analysis._export import RECIPES, export_trials, full_training_config, select_trials
from analysis._fidelity import FidelityResult, fidelity
from analysis._importance import learning_curves, param_importances
from analysis._load import StudyFrames, config_key, frames_of, load, summarize_kinds
from analysis._pareto import attention_gain, front_hypervolumes, hypervolume, non_dominated, pareto_front
from analysis._plots import (
    plot_attention_gain,
    plot_fidelity,
    plot_fronts,
    plot_gamma_b,
    plot_importance,
    plot_kmap,
    plot_kmap_curves,
    plot_learning_curves,
    plot_pareto,
    save_figure,
)
from analysis._report import make_report
from analysis._trained import load_trained
from analysis.kmap._analysis import KmapAnalysis, analyze_kmap, gamma_b_plane
from analysis.kmap._data import SeedNoise, kmap_data, seed_noise
from analysis.kmap._effect import KEffect, fit_k_model, k_effect
from analysis.kmap._fits import ContinuousFit, KmapFit, LinearFit, PsiFit, fit_continuous, fit_kmap, fit_linear, fit_psi
from analysis.kmap._mappings import score_mappings
from analysis.kmap._power import design_power, detectable_effect, noncentrality
from analysis.kmap._psi_choice import PsiChoice, fit_psi_by_top1

__all__ = [
    "StudyFrames", "load", "frames_of", "config_key", "summarize_kinds",
    "non_dominated", "pareto_front", "hypervolume", "front_hypervolumes", "attention_gain",
    "param_importances", "learning_curves",
    "FidelityResult", "fidelity",
    "KEffect", "KmapAnalysis", "PsiChoice", "PsiFit", "ContinuousFit", "LinearFit", "KmapFit",
    "kmap_data", "seed_noise", "SeedNoise", "design_power", "detectable_effect", "noncentrality", "k_effect", "fit_k_model",
        "analyze_kmap", "fit_psi_by_top1", "score_mappings",
    "fit_psi", "fit_continuous", "fit_linear", "fit_kmap", "gamma_b_plane",
    "plot_pareto", "plot_fronts", "plot_attention_gain", "plot_learning_curves", "plot_importance", "plot_fidelity",
    "plot_kmap", "plot_kmap_curves", "plot_gamma_b", "save_figure",
    "load_trained",
    "RECIPES", "full_training_config", "select_trials", "export_trials", "make_report",
    "export_deepcave", "deepcave_trials",
]
