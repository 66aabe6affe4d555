"""The sequential confirmation of a k-vs-C answer: each mapping against the paper's psi, paired
by seed with common random numbers, decided by anytime-valid confidence sequences at a margin
stated before the run (:mod:`analysis.confirm._decision`, :mod:`analysis.confirm._sequence`)."""

from analysis.confirm._decision import CLAIMS, REFERENCE, ArmResult, Decision, Rule, decide, rounds_to_decide
from analysis.confirm._plan import ConfirmPlan, Fidelity, choose_fidelity, plan_confirmation, simulate_rounds
from analysis.confirm._plot import plot_decision
from analysis.confirm._read import RULE_KEY, confirmation_decision, paired_differences, study_rule
from analysis.confirm._sequence import (
    SequenceBounds,
    cs_radius_t,
    e_value,
    fixed_power,
    fixed_size,
    running_bounds,
    tune_g,
    width_ratio,
)

__all__ = [
    "RULE_KEY",
    "ConfirmPlan",
    "Fidelity",
    "choose_fidelity",
    "confirmation_decision",
    "paired_differences",
    "plan_confirmation",
    "plot_decision",
    "simulate_rounds",
    "study_rule",
    "CLAIMS",
    "REFERENCE",
    "ArmResult",
    "Decision",
    "Rule",
    "SequenceBounds",
    "cs_radius_t",
    "decide",
    "e_value",
    "fixed_power",
    "fixed_size",
    "rounds_to_decide",
    "running_bounds",
    "tune_g",
    "width_ratio",
]
