"""study.storage's one parsed URL type and its one opener (written and read-only), the
read-only journal of study._optuna_compat pinned against the installed Optuna, and the facts
with one home in the core: the epoch metric fields, TrialResult.from_dict, the Ray run
folder's name and the recorded error text."""

from __future__ import annotations

import optuna
import pytest

from study.storage import StorageURL, open_storage


def test_a_url_is_parsed_once_into_its_parts(tmp_path):
    pg = StorageURL.parse("postgresql://bob:pw@db:5432/studies?host=/tmp&a=2&b=1&a=3")
    assert (pg.backend, pg.driver, pg.database, pg.journal, pg.password) == ("postgresql", "postgresql", "studies", None, "pw")
    assert pg.public == "postgresql://bob@db:5432/studies?a=2&a=3&b=1&host=%2Ftmp" and "pw" not in pg.redacted
    # the driver is swapped, the rest of the text kept as written
    assert pg.with_driver("postgresql+psycopg2") == "postgresql+psycopg2://bob:pw@db:5432/studies?host=/tmp&a=2&b=1&a=3"
    sq = StorageURL.parse("sqlite:////abs/x.db?timeout=3")
    assert sq.is_sqlite and sq.database == "/abs/x.db" and sq.public == sq.text and sq.connect("s") == sq.text
    j = StorageURL.parse("journal:runs/s.log")
    assert j.is_journal and j.journal == "runs/s.log" and j.public == j.text
    assert j.normalized() == f"journal:{tmp_path.cwd() / 'runs/s.log'}"
    for bad in ("runs/x", "postgresql://u@h:port/db", None):
        with pytest.raises(ValueError, match="malformed URL"):
            StorageURL.parse(bad)
        assert StorageURL.maybe(bad) is None


def test_one_opener_writes_or_only_reads(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(FileNotFoundError, match="no SQLite file"):
        open_storage(url, readonly=True)
    assert not (tmp_path / "study.db").exists()
    optuna.create_study(storage=open_storage(url), study_name="s").add_trial(optuna.trial.create_trial(value=1.0))
    ro = optuna.load_study(study_name="s", storage=open_storage(url, readonly=True))
    assert [t.value for t in ro.trials] == [1.0]
    with pytest.raises(Exception) as info:
        ro.set_user_attr("x", 1)
    assert "readonly database" in str(info.getrepr())


def test_the_read_only_journal_reads_without_writing_or_locking(tmp_path):
    path = tmp_path / "s.log"
    with pytest.raises(FileNotFoundError, match="no journal file"):
        open_storage(f"journal:{path}", readonly=True)
    assert not path.exists()
    optuna.create_study(storage=open_storage(f"journal:{path}"), study_name="j").add_trial(optuna.trial.create_trial(value=2.0))
    before = path.read_bytes()
    study = optuna.load_study(study_name="j", storage=open_storage(f"journal:{path}", readonly=True))
    assert [t.value for t in study.trials] == [2.0]
    with pytest.raises(PermissionError, match="never writes"):
        study.set_user_attr("x", 1)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.log"]


def test_the_epoch_fields_have_one_home():
    import dataclasses

    from analysis._load import _EPOCH_FIELDS
    from runners._bridge import EPOCH_KEYS
    from study.metrics import METRIC_FIELDS, EpochMetrics

    assert list(METRIC_FIELDS) == [f.name for f in dataclasses.fields(EpochMetrics)]
    assert EPOCH_KEYS == tuple(METRIC_FIELDS) and _EPOCH_FIELDS == tuple(METRIC_FIELDS[1:])


def test_a_result_round_trips_through_its_dict():
    from study.config import TrialConfig
    from study.costs import Costs
    from study.metrics import EpochMetrics, TrialResult

    config = TrialConfig.from_dict({"arch": {"backbone": "resnet18", "stages": ["eca", "none", "se", "none"]}})
    m = EpochMetrics(epoch=1, top1=50.0, top5=90.0, val_loss=1.0, train_loss=1.1, lr=0.1, epoch_time_s=1.0,
                     wall_time_s=1.0, images_per_s=100.0)
    costs = Costs(params=10, macs=20, macs_224=30, latency_ms=None, resolution=32, attention_params=1)
    result = TrialResult(config=config, outcome="complete", history=(m,), costs=costs, stages=({"stage": 0},),
                         message="ok", extra={"a": 1})
    back = TrialResult.from_dict(result.to_dict())
    assert back.to_dict() == result.to_dict()
    assert TrialResult.from_dict(result.to_dict(), config=config).config is config


def test_run_names_and_error_text(tmp_path):
    from study.record import error_text
    from study.runfolder import next_run_name

    assert next_run_name(tmp_path / "ray") == "run-1"
    (tmp_path / "ray" / "run-1").mkdir(parents=True)
    assert next_run_name(tmp_path / "ray") == "run-2"

    def inner():
        raise KeyError("boom")

    try:
        inner()
    except KeyError as exc:
        text = error_text(exc)
    assert text.splitlines()[-1] == "KeyError: 'boom'" and "inner" in text
