"""The study CLI, the top floor: flags -> a checked run of a study, and the workflows that
need both execution and analysis.

- :func:`main` is ``python -m study.run`` (:mod:`study.run` hands it the command line);
  :func:`build_parser` its flags, made from the study settings' declarations
  (:class:`runners.StudySettings`), the samplers' and pruners' registry entries and the
  options the spaces declare (:class:`search_spaces.SpaceOption`); :func:`resolve_run` the
  flags -> a checked run (new studies, ``--resume``), whose values reach a space as its
  options, prepared where a space needs a workflow (``kmap_confirm --from``: a study from an
  analysis, :mod:`runners.cli._prepare`).
- :func:`plan_study` is ``--plan`` (a noise pilot + the power of the k-vs-C test),
  :func:`smallest_budget` / :func:`budget_warning` the budget check at a study's start.

This subpackage is the only place that imports both :mod:`runners` and :mod:`analysis`;
nothing below it imports it.
"""

from runners.cli._answer import plan_answer, run_answer
from runners.cli._flags import PROG, build_parser, flag_table
from runners.cli._main import main
from runners.cli._plan import Plan, budget_warning, pilot_sigma, plan_study, smallest_budget
from runners.cli._resolve import resolve_run, resolve_settings

__all__ = [
    "PROG", "build_parser", "flag_table", "main", "resolve_run", "resolve_settings",
    "run_answer", "plan_answer",
    "Plan", "plan_study", "pilot_sigma", "smallest_budget", "budget_warning",
]
