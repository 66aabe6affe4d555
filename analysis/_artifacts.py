"""The report's figures beside the study in optuna-dashboard: after ``python -m analysis.report
RUN`` writes the report, its figures (PNG) and ``report.md`` are attached to the study in the
run folder's Optuna artifact store (:mod:`study.artifacts`, ``RUN/artifacts``), replacing those
of an earlier report.

This is the one write of the analysis layer, and it is narrow: only when the run folder keeps
an artifact store (a study run by ``python -m study.run`` makes one), only the study's system
attributes ``artifacts:<id>`` (the artifacts' names and types), never a trial, a value or a
user attribute; the study is read, as always, through a read-only storage. A storage that
refuses the write (a read-only database user) leaves the report as it is, with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from study.storage import open_storage

__all__ = ["attach_report", "REPORT_FILES"]

#: the report's files that are attached (the SVGs duplicate the PNGs; the CSVs are tables)
REPORT_FILES = ("*.png", "report.md")


def attach_report(run_dir: str | Path, report_dir: str | Path, *, study_name: str | None = None, since: float = 0.0,
                  log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None) -> list[str]:
    """Attach the report files in ``report_dir`` written at or after ``since`` (a time stamp) to
    the study of the run folder ``run_dir`` in its artifact store; returns their names (none
    when the run folder keeps no artifact store)."""
    import optuna

    from analysis._load import open_study_readonly
    from study.artifacts import ARTIFACTS, artifact_store, attach_file
    run_dir, report_dir = Path(run_dir), Path(report_dir)
    if not (run_dir / ARTIFACTS).is_dir():
        return []
    files = sorted({p for pattern in REPORT_FILES for p in report_dir.glob(pattern) if p.stat().st_mtime >= since})
    if not files:
        return []
    read, url, _, _ = open_study_readonly(run_dir, study_name)
    try:
        study = optuna.load_study(study_name=read.study_name, storage=open_storage(url))
        store = artifact_store(run_dir)
        for f in files:
            attach_file(store, study, f)
    except Exception as exc:  # a read-only database user, a full disk: the report stands
        text = f"the report's figures were not attached to study {read.study_name!r} in {run_dir / ARTIFACTS} " \
               f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        (warn or (lambda s: print(f"warning: {s}", flush=True)))(text)
        return []
    log(f"[report] attached {len(files)} files to study {read.study_name!r} in {run_dir / ARTIFACTS} (optuna-dashboard "
        f"--artifact-dir {run_dir / ARTIFACTS})")
    return [f.name for f in files]
