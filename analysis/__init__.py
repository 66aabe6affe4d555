"""Reading a study into pandas and making sense of it.

``load`` reads a run folder or a storage URL into :class:`StudyFrames`; :mod:`analysis.kmap`
fits the ECA k-vs-C mapping; Pareto fronts, hypervolume and attention cost-vs-gain,
parameter importance, learning curves and proxy fidelity; plots; ``python -m
analysis.report`` writes them all; ``python -m analysis.export`` turns chosen trials into
full-training TrialConfig JSON. Analysis never writes to a study's storage.
"""

from analysis._load import StudyFrames, config_key, load, summarize_kinds
from analysis._pareto import attention_gain, front_hypervolumes, hypervolume, non_dominated, pareto_front
from analysis._importance import learning_curves, param_importances
from analysis._fidelity import FidelityResult, fidelity
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
from analysis._export import RECIPES, export_trials, full_training_config, select_trials
from analysis._report import make_report
from analysis._kmap import (
    ContinuousFit,
    KmapAnalysis,
    KmapFit,
    LinearFit,
    PreferredK,
    PsiFit,
    analyze_kmap,
    fit_continuous,
    fit_kmap,
    fit_linear,
    fit_psi,
    gamma_b_plane,
    preferred_k,
)

__all__ = [
    "StudyFrames", "load", "config_key", "summarize_kinds",
    "non_dominated", "pareto_front", "hypervolume", "front_hypervolumes", "attention_gain",
    "param_importances", "learning_curves",
    "FidelityResult", "fidelity",
    "PreferredK", "PsiFit", "ContinuousFit", "LinearFit", "KmapFit", "KmapAnalysis",
    "preferred_k", "fit_psi", "fit_continuous", "fit_linear", "fit_kmap", "analyze_kmap", "gamma_b_plane",
    "plot_pareto", "plot_fronts", "plot_attention_gain", "plot_learning_curves", "plot_importance", "plot_fidelity",
    "plot_kmap", "plot_kmap_curves", "plot_gamma_b", "save_figure",
    "RECIPES", "full_training_config", "select_trials", "export_trials", "make_report",
]
