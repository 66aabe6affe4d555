"""Storages of ``python -m study.run`` (issue 12): objectives named for optuna-dashboard, Optuna's
journal file (two drivers at once, --resume, read-only analysis, bad input), and a database
password that is never written down (run folder, Ray's folder, the storage itself)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners import StudySettings, make_storage, open_study
from search_spaces import get_space
from study.cli import run_cli
from study.run import main
from study.storage import PASSWORD_ENV

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]
#: a study of seconds: one 1-epoch trial on 4 training images a class
QUICK = ("--runner", "local", "--epochs", "1", "--quiet", "--set", "proxy.images_per_class=4")


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv], prog="python -m study.run")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _env(**extra):
    env = dict(os.environ)
    env.pop("STUDY_DEBUG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _finished(study) -> list:
    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _dashboard_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage as optuna-dashboard opens it: through its own loader where it is installed
    (the ``dashboard`` and ``test`` extras), else as that loader does, an RDB storage that
    neither creates tables nor checks the schema version. A journal is given as its path."""
    try:
        from optuna_dashboard._storage_url import get_storage
    except ImportError:
        return optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    return get_storage(url[len("journal:"):] if url.startswith("journal:") else url)


# ----------------------------------------------------------------------------- optuna-dashboard


def test_the_dashboard_shows_the_objectives_by_name(tmp_path, capsys, tiny_flags):
    code, _, err = _cli(["--space", "se_ratio", "--name", "named", "--objectives", "top1,params,macs", "--trials", 1,
                         "--out", tmp_path, *QUICK, *tiny_flags], capsys)
    assert code == 0, err
    url = f"sqlite:///{tmp_path / 'named' / 'study.db'}"
    study = optuna.load_study(study_name="named", storage=_dashboard_storage(url))
    assert study.metric_names == ["top1", "params", "macs"] and len(_finished(study)) == 1


def test_a_study_created_before_the_names_gets_them_when_resumed(tmp_path, tiny_settings):
    settings = tiny_settings(name="old", objectives=("top1", "latency"), sampler="nsga2")
    optuna.create_study(storage=make_storage(settings.storage), study_name="old", directions=settings.directions)
    assert optuna.load_study(study_name="old", storage=settings.storage).metric_names is None
    open_study(settings, get_space(settings.space), create=False)
    study = optuna.load_study(study_name="old", storage=_dashboard_storage(settings.storage))
    assert study.metric_names == ["top1", "latency"]


# ----------------------------------------------------------------------------- journal


def test_two_drivers_write_one_journal_then_one_resumes(tmp_path, capsys, tiny_flags):
    journal = tmp_path / "shared" / "studies.log"
    journal.parent.mkdir()
    storage = "journal:shared/studies.log"  # relative: stored as an absolute path
    procs = [
        subprocess.Popen([sys.executable, "-m", "study.run", "--space", space, "--name", name, "--storage", storage,
                          "--trials", "1", "--out", "runs", *QUICK, *tiny_flags],
                         cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for space, name in (("eca_kmap", "a"), ("se_ratio", "b"))
    ]
    for p in procs:  # both drivers append to the journal at the same time, under its lock
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
    assert json.loads((tmp_path / "runs" / "a" / "settings.json").read_text())["storage"] == f"journal:{journal}"
    assert not Path(f"{journal}.lock").exists()
    code, _, err = _cli(["--name", "b", "--resume", "--trials", 2, "--out", tmp_path / "runs", "--quiet"], capsys)
    assert code == 0, err
    storage = make_storage(f"journal:{journal}")
    assert sorted(optuna.get_all_study_names(storage)) == ["a", "b"]
    a, b = (optuna.load_study(study_name=n, storage=storage) for n in ("a", "b"))
    assert len(_finished(a)) == 1 and len(_finished(b)) == 2
    assert {s["kind"] for t in _finished(b) for s in t.user_attrs["stages"]} == {"se"}
    assert a.metric_names == ["top1"]
    if importlib.util.find_spec("optuna_dashboard"):  # `optuna-dashboard PATH` opens the journal
        assert optuna.load_study(study_name="b", storage=_dashboard_storage(f"journal:{journal}")).metric_names == ["top1"]


def test_analysis_reads_a_journal_without_writing_or_creating_it(tmp_path, tiny_settings):
    import analysis

    journal = tmp_path / "s.log"
    settings = tiny_settings(name="j", storage=f"journal:{journal}")
    study = open_study(settings, get_space(settings.space), create=True)
    study.tell(study.ask(), 50.0)
    before = journal.read_bytes()
    fr = analysis.load(f"journal:{journal}", "j")
    assert fr.objectives == ("top1",) and list(fr.trials["state"]) == ["complete"]
    with pytest.raises(PermissionError, match="never writes"):
        fr.study.set_user_attr("x", 1)
    assert journal.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.log"]
    with pytest.raises(FileNotFoundError, match="no journal file"):
        analysis.load(f"journal:{tmp_path / 'missing.log'}", "j")
    assert not (tmp_path / "missing.log").exists() and not (tmp_path / "missing.log.lock").exists()


def test_bad_journal_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # root may write into a read-only folder; say what a normal user would be told
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw))
    out = tmp_path / "runs"
    for storage, match in ((f"journal:{tmp_path / 'missing' / 's.log'}", "--storage: the journal's folder"),
                           (f"journal:{a_file / 's.log'}", "is not a folder"),
                           (f"journal:{locked / 's.log'}", "cannot write to the journal's folder"),
                           ("journal:", "names no journal file"),
                           ("journal://host/s.log", "malformed journal URL"),
                           (f"journal:{tmp_path}/", "names a folder")):
        code, _, err = _cli(["--space", "eca_kmap", "--storage", storage, "--out", out], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("python -m study.run: error: "), (storage, err)
        assert match in err and "Traceback" not in err, (storage, err)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "locked"] and not list(locked.iterdir())


# ----------------------------------------------------------------------------- passwords


def _written_anywhere(secret: str, folder: Path, url: str) -> list[str]:
    """Files under ``folder`` and rows of the database at ``url`` that contain ``secret``."""
    import sqlalchemy

    found = [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        for table in sqlalchemy.inspect(conn).get_table_names():
            rows = conn.execute(sqlalchemy.text(f'SELECT t::text FROM "{table}" t')).scalars()
            found += [f"{table}: {row[:80]}" for row in rows if secret in row]
    engine.dispose()
    return found


@pytest.fixture
def connected_urls(monkeypatch):
    """The URLs the driver opens RDB storages with (the password is only ever there)."""
    seen: list[str] = []
    real = optuna.storages.RDBStorage

    class Spy(real):
        def __init__(self, url, *args, **kwargs):
            seen.append(url)
            super().__init__(url, *args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", Spy)
    return seen


def test_a_password_is_never_written_down(postgres_url, ray_cluster, tmp_path, capsys, tiny_flags, monkeypatch, connected_urls):
    # trust authentication accepts any password: what is checked is where the string ends up
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    secret = f"Pw{uuid.uuid4().hex}"
    user, rest = postgres_url.split("://", 1)[1].split("@", 1)
    with_password = f"postgresql://{user}:{secret}@{rest}"
    name = f"test-password-{uuid.uuid4().hex[:8]}"
    run_dir = tmp_path / name
    flags = ["--out", tmp_path, "--epochs", 1, "--quiet", "--set", "proxy.images_per_class=4", *tiny_flags]
    try:
        # under Ray: its folder (tuner.pkl, trial configs) is in the run folder
        code, out, err = _cli(["--space", "se_ratio", "--name", name, "--storage", with_password, "--trials", 1,
                               "--address", ray_cluster.address, "--max-concurrent", 1, *flags], capsys)
        assert code == 0, err
        assert (run_dir / "ray").is_dir() and secret not in out + err
        stored = json.loads((run_dir / "settings.json").read_text())["storage"]
        assert stored.startswith("postgresql") and "@" in stored and ":" not in stored.split("://", 1)[1].split("@")[0]
        assert any(secret in u for u in connected_urls)
        # --resume with the URL given again, then with the password in the environment
        code, _, err = _cli(["--name", name, "--resume", "--storage", with_password, "--trials", 2, "--runner", "local",
                             "--out", tmp_path, "--quiet"], capsys)
        assert code == 0, err
        connected_urls.clear()
        monkeypatch.setenv(PASSWORD_ENV, secret)
        code, _, err = _cli(["--name", name, "--resume", "--trials", 3, "--runner", "local", "--out", tmp_path, "--quiet"], capsys)
        assert code == 0, err
        assert connected_urls and all(secret in u for u in connected_urls)
        assert len(_finished(optuna.load_study(study_name=name, storage=make_storage(postgres_url)))) == 3
        assert _written_anywhere(secret, tmp_path, make_storage(postgres_url).url) == []
        assert secret not in repr(StudySettings.from_dict({**json.loads((run_dir / "settings.json").read_text()),
                                                            "storage": with_password}))
    finally:
        try:
            optuna.delete_study(study_name=name, storage=make_storage(postgres_url))
        except KeyError:
            pass
