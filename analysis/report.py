"""Write every plot and table that applies to a study, and a Markdown summary.

::

    python -m analysis.report runs/NAME [--compare runs/OTHER ...] [--alpha A] [--out DIR]
    python -m analysis.report --storage URL --study NAME
    python -m analysis.report runs/NAME --mlflow sqlite:///mlflow.db   # also attach it to the study's MLflow run

Output (``runs/NAME/report/`` unless ``--out``): ``report.md``; plots as PNG and SVG
(``pareto_{params,macs,latency}``, ``attention_gain``, ``learning_curves``,
``importance``, ``kmap``, ``kmap_curves``, ``gamma_b``, and with ``--compare``
``fronts_params`` and ``fidelity_<other>``); tables as CSV (``trials``,
``pareto_<cost>``, ``attention_gain``, ``hypervolume``, ``importance``, ``kmap_points``,
``kmap_effects``, ``kmap_mappings``, ``gamma_b``, ``fidelity_<other>``, and for a
confirmation study ``confirmation``) and ``kmap.json`` (``confirmation.json``). One progress line per
item; what cannot be made is said (and why) in the output and in the report. With ``--mlflow
URI`` (the tracking URI the study was run with) every file written is attached to the
study's MLflow run as its artifacts ``report/...``; a study without such a run is bad input.
For a run folder that keeps an Optuna artifact store (``RUN/artifacts``, made by
``python -m study.run``), the figures (PNG) and ``report.md`` are attached to the study there,
so ``optuna-dashboard STORAGE --artifact-dir RUN/artifacts`` shows them
(:func:`analysis._artifacts.attach_report`).
"""

import time
from collections.abc import Sequence
from pathlib import Path

from analysis._artifacts import attach_report
from analysis._report import *  # noqa: F403  (the public API of this module)
from analysis._report import (
    __all__,  # noqa: F401
    build_parser,
)
from analysis._report import main as report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis.report``: the report, then its figures attached to the study in the
    run folder's artifact store (when it keeps one)."""
    started = time.time() - 1.0  # file times of a coarse file system
    status = report(argv)
    args = build_parser().parse_args(argv)
    if args.run:
        out = args.out or Path(args.run) / "report"
        attach_report(args.run, out, study_name=args.study, since=started, log=lambda s: print(s, flush=True))
    return status


if __name__ == "__main__":
    from study.cli import run_cli

    run_cli(main, prog="python -m analysis.report")
