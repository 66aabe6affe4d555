"""The study CLI, the top floor: flags -> a study's settings, and the workflows that need
both execution and analysis.

- :func:`main` is ``python -m study.run`` (:mod:`study.run` hands it the command line);
  :func:`build_parser` its flags, :func:`resolve_settings` flags -> :class:`runners.StudySettings`
  (new studies, ``--resume``); the flags of the options a space declares
  (:class:`search_spaces.SpaceOption`) come from its declaration, and their values reach it as
  its options, prepared where a space needs a workflow (``kmap_confirm --from``: a study from
  an analysis, :mod:`runners.cli._prepare`).
- :func:`plan_study` is ``--plan`` (a noise pilot + the power of the k-vs-C test),
  :func:`smallest_budget` / :func:`budget_warning` the budget check at a study's start.

This subpackage is the only place that imports both :mod:`runners` and :mod:`analysis`;
nothing below it imports it.
"""

from runners.cli._main import PROG, build_parser, main
from runners.cli._plan import Plan, budget_warning, pilot_sigma, plan_study, smallest_budget
from runners.cli._resolve import DEFAULT_PROXY, DEFAULT_RECIPE, resolve_settings

__all__ = [
    "PROG", "build_parser", "main", "resolve_settings", "DEFAULT_PROXY", "DEFAULT_RECIPE",
    "Plan", "plan_study", "pilot_sigma", "smallest_budget", "budget_warning",
]
