"""Files beside the trials in optuna-dashboard (issue 28): a real study attaches its settings,
each trial's config.json and history.json, and the report its figures, to the Optuna artifact
store of the run folder; read back the way optuna-dashboard reads them (its own WSGI app over
the storage and ``--artifact-dir``) and with Optuna's own ``get_all_artifact_meta``."""

from __future__ import annotations

import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from study.cli import run_cli
from study.run import main

pytest.importorskip("optuna_dashboard")  # the `test` and `dashboard` extras install it


def _get(app, path: str) -> tuple[str, bytes]:
    """One GET request to the WSGI ``app``: (status, body)."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], environ["QUERY_STRING"] = path, ""
    said: dict = {}

    def start_response(status, headers, exc_info=None):
        said["status"] = status
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return said["status"], body


def _dashboard(run: Path):
    """optuna-dashboard over the run's storage, opened by its own loader, and ``--artifact-dir RUN/artifacts``."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi
    from optuna_dashboard._storage_url import get_storage

    storage = get_storage(f"sqlite:///{run / 'study.db'}")
    return wsgi(storage, artifact_store=FileSystemArtifactStore(str(run / "artifacts"))), storage


def test_a_study_and_its_report_show_their_files_in_optuna_dashboard(tmp_path, capsys, tiny_flags):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as info:
        run_cli(main, ["--space", "eca_kmap", "--runner", "local", "--trials", "2", "--epochs", "2", "--pruner", "none",
                       "--out", str(out), "--name", "shown", *tiny_flags], prog="python -m study.run")
    assert info.value.code == 0, capsys.readouterr()
    run = out / "shown"
    app, storage = _dashboard(run)
    study = optuna.load_study(study_name="shown", storage=storage)
    status, body = _get(app, f"/api/studies/{study._study_id}")
    assert status.startswith("200"), body[:300]
    detail = json.loads(body)
    assert [a["filename"] for a in detail["artifacts"]] == ["settings.json"]
    ran = [t for t in detail["trials"] if t["state"] != "Waiting"]  # (a reference point the budget left unrun)
    assert len(ran) == 2
    for trial in ran:
        number, trial_id = trial["number"], trial["trial_id"]
        files = {a["filename"]: a for a in trial["artifacts"]}
        assert sorted(files) == ["config.json", "history.json"], files  # one history.json, the last one, however many epochs
        assert files["config.json"]["mimetype"] == "application/json"
        for name, meta in files.items():
            status, content = _get(app, f"/artifacts/{study._study_id}/{trial_id}/{meta['artifact_id']}")
            assert status.startswith("200") and content == (run / "trials" / str(number) / name).read_bytes()
        assert len(json.loads((run / "trials" / str(number) / "history.json").read_text())) == 2
    # Optuna's own reader finds the same
    metas = optuna.artifacts.get_all_artifact_meta(study.trials[0], storage=storage)
    assert sorted(m.filename for m in metas) == ["config.json", "history.json"]

    from analysis.report import main as report_main

    for _ in range(2):  # a report made again replaces its files
        with pytest.raises(SystemExit) as info:
            run_cli(report_main, [str(run)], prog="python -m analysis.report")
        assert info.value.code == 0
        said = capsys.readouterr().out
        assert "attached" in said and "optuna-dashboard --artifact-dir" in said
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert pngs, "the report made no figure"
    app, storage = _dashboard(run)  # a fresh dashboard (it caches)
    detail = json.loads(_get(app, f"/api/studies/{study._study_id}")[1])
    names = [a["filename"] for a in detail["artifacts"]]
    assert sorted(names) == sorted(["settings.json", "report.md", *pngs]), names
    meta = next(a for a in detail["artifacts"] if a["filename"] == pngs[0])
    status, content = _get(app, f"/artifacts/{study._study_id}/{meta['artifact_id']}")
    assert status.startswith("200") and meta["mimetype"] == "image/png" and content == (run / "report" / pngs[0]).read_bytes()
