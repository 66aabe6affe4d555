"""How a study's run ended, said as the command line's exit status and last line.

A script or a scheduler that runs ``python -m study.run`` learns from the exit status alone
whether the run did its work (:data:`~study.cli.EXIT_FAILED` and
:data:`~study.cli.EXIT_NOTHING_FINISHED` are documented in ``docs/studies.md``):

- 0: the run ended as asked (its budget of finished trials, the timeout, or the grid) and the
  study holds at least one finished trial (complete or pruned); trials that failed along the
  way are in the record with their errors;
- :data:`~study.cli.EXIT_FAILED` (3): the run stopped because its trials failed (the
  failure rule: a run stops after max(3, its budget of runs) failed trials);
- :data:`~study.cli.EXIT_NOTHING_FINISHED` (4): the run ended otherwise, but no trial of the
  study has finished (every one failed, or the timeout came first).

A non-zero status comes with one line that says so and names the first failure of the run
(its trial number and error text). Ctrl-C is the command line's own (130).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.cli import EXIT_FAILED, EXIT_NOTHING_FINISHED
from study.record import error_line

if TYPE_CHECKING:
    from runners._bridge import StudyBridge

__all__ = ["RunOutcome", "run_outcome", "EXIT_STATUS_HELP"]

#: the exit statuses of ``python -m study.run``, as its ``--help`` ends
EXIT_STATUS_HELP = (
    "exit status: 0 the run ended as asked (budget, timeout or grid) and the study has a finished trial; "
    f"{EXIT_FAILED} the run stopped because its trials failed (after max(3, trials x replicates) failures); "
    f"{EXIT_NOTHING_FINISHED} no trial of the study has finished; 2 bad input (nothing created); 130 interrupted "
    "(--resume continues); 1 an internal error (a bug). A non-zero status ends with a line that says why, naming the "
    "run's first failed trial and its error."
)

#: the most of a trial's error text the last line carries
_ERROR_CHARS = 300


@dataclass(frozen=True)
class RunOutcome:
    """A run's exit ``status`` (0 or a documented non-zero status) and, for a non-zero one,
    the ``line`` that says why."""

    status: int
    line: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 0


def _first_error(bridge: StudyBridge) -> str:
    if bridge.first_failure is None:
        return ""
    number, error = bridge.first_failure
    text = error_line(error)
    if len(text) > _ERROR_CHARS:
        text = text[:_ERROR_CHARS - 3] + "..."
    return f"; first failure: trial {number}: {text}"


def run_outcome(bridge: StudyBridge) -> RunOutcome:
    """The outcome of the run that ``bridge`` drove (after the runner returned)."""
    failed, finished = bridge.failed_here, bridge.finished()
    if bridge.failure_limit_reached():
        also = "" if finished else ", and no trial of the study has finished"
        limit = max(3, bridge.settings.runs)
        return RunOutcome(EXIT_FAILED, f"the run stopped: {failed} trials failed in it (a run stops after max(3, "
                                       f"{bridge.settings.runs} runs) = {limit} failures){also}{_first_error(bridge)}")
    if not finished:
        why = f"{failed} trial{'s' if failed != 1 else ''} failed" if failed else (bridge.done() or "the run ended")
        return RunOutcome(EXIT_NOTHING_FINISHED, f"no trial of the study has finished ({why}){_first_error(bridge)}")
    return RunOutcome(0)
