"""analysis.load: run folders and storage URLs into trial and epoch frames, read-only."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import optuna
import pytest

import analysis
from analysis._load import summarize_kinds
from study.attention import psi


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_run_folder_frames(demo_run):
    before = _digest(demo_run / "study.db")
    fr = analysis.load(demo_run)
    t = fr.trials
    assert fr.name == "demo" and fr.objectives == ("top1",) and fr.directions == ("maximize",)
    assert len(t) == 120 + 24 + 12 + 8 + 10 + 3
    assert t["state"].value_counts().to_dict() == {"complete": 164, "pruned": 10, "failed": 3}
    assert t["number"].tolist() == list(range(len(t)))
    done = t[t["state"] == "complete"]
    # complete: top1 is the objective; pruned: the best intermediate value; failed: none
    assert np.allclose(done["top1"], done["value"])
    pruned = t[t["state"] == "pruned"]
    assert pruned["value"].isna().all() and pruned["top1"].notna().all() and (pruned["epochs"] < 4).all()
    assert t.loc[t["state"] == "failed", "top1"].isna().all()
    assert (t.loc[t["state"] == "failed", "error"] == "RuntimeError: out of memory").all()
    row = done[done["attention"] == "eca"].iloc[0]
    cfg = row["config"]
    for i in range(4):
        assert row[f"stage{i}_kind"] == "eca"
        assert row[f"stage{i}_C"] == int(64 * 2**i * row["width"]) * 4
        assert row[f"stage{i}_k"] == cfg["arch"]["stages"][i]["k"]
    psi_row = done[done["gamma"].notna()].iloc[0]
    assert psi_row["stage3_k"] == psi(int(psi_row["stage3_C"]), psi_row["gamma"], psi_row["b"])
    assert {"params", "macs", "macs_224", "latency_ms", "param_width", "param_stage0_k", "key"} <= set(t.columns)
    assert t.loc[0, "reference"] == "first"
    # epochs: one row per recorded epoch, states carried
    ep = fr.epochs
    assert len(ep) == int(t["epochs"].sum())
    assert set(ep["state"]) == {"complete", "pruned"}
    assert ep.groupby("trial")["top1"].max().round(9).equals(t.set_index("number")["top1"].dropna().round(9).rename_axis("trial"))
    assert _digest(demo_run / "study.db") == before


def test_load_storage_url_and_names(tmp_path, demo_run):
    url = f"sqlite:///{demo_run / 'study.db'}"
    fr = analysis.load(url)  # a single study needs no name
    assert fr.name == "demo" and fr.run_dir is None and len(fr.trials) == 177
    multi = tmp_path / "multi.db"
    for name in ("a", "b"):
        s = optuna.create_study(storage=f"sqlite:///{multi}", study_name=name)
        s.add_trial(optuna.trial.create_trial(value=1.0))
    assert analysis.load(f"sqlite:///{multi}", "b").name == "b"
    with pytest.raises(ValueError, match="holds 2 studies"):
        analysis.load(f"sqlite:///{multi}")
    with pytest.raises(ValueError, match="no study named 'zzz'.*studies: a, b"):
        analysis.load(f"sqlite:///{multi}", "zzz")


def test_load_errors_and_no_writes(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        analysis.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no study.db"):
        analysis.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no SQLite file"):
        analysis.load(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()  # never created
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        analysis.load("ftp://host/db")
    # an SQLite file that is not an Optuna storage is refused, and stays untouched
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t (x int)").connection.commit()
    before = _digest(other)
    with pytest.raises(ValueError, match="holds no Optuna study"):
        analysis.load(f"sqlite:///{other}")
    assert _digest(other) == before


def test_storage_is_opened_read_only(demo_run):
    fr = analysis.load(demo_run)
    with pytest.raises(Exception) as info:
        fr.study.set_user_attr("x", 1)
    assert "readonly database" in str(info.getrepr())
    assert "x" not in analysis.load(demo_run).study.user_attrs


def test_multi_objective_and_postgres(tmp_path, make_study, postgres_url):
    run = make_study("mo", n_eca=6, n_psi=0, n_se=2, n_none=2, n_pruned=1, n_failed=1, objectives=("top1", "params"))
    fr = analysis.load(run)
    assert fr.objectives == ("top1", "params") and fr.directions == ("maximize", "minimize")
    done = fr.complete
    assert np.allclose(done["obj_top1"], done["top1"]) and np.allclose(done["obj_params"], done["params"])
    # PostgreSQL: a storage URL with a study name
    pg = postgres_url  # the shared fixture: a plain postgresql:// URL, as users write it
    writable = pg.replace("postgresql://", "postgresql+psycopg2://", 1) if pg.startswith("postgresql://") else pg
    src = optuna.load_study(study_name="mo", storage=f"sqlite:///{run / 'study.db'}")
    name = f"analysis-test-{uuid.uuid4().hex[:12]}"  # concurrent test sessions share the database
    optuna.copy_study(from_study_name="mo", from_storage=src._storage, to_storage=writable, to_study_name=name)
    try:
        pfr = analysis.load(pg, name)
        assert len(pfr.trials) == len(fr.trials)
        assert pfr.trials["top1"].round(9).equals(fr.trials["top1"].round(9))
        with pytest.raises(Exception) as info:
            pfr.study.set_user_attr("x", 1)  # the session is read-only
        assert "read-only transaction" in str(info.getrepr())
    finally:
        optuna.delete_study(study_name=name, storage=writable)


def test_summarize_kinds():
    assert summarize_kinds(["eca"] * 4) == "eca"
    assert summarize_kinds(["none"] * 4) == "none"
    assert summarize_kinds(["eca", "none", "eca", "eca"]) == "eca+none"
    assert summarize_kinds(["eca", "se", "none", "eca"]) == "mixed"


def test_gamma_b_only_where_every_eca_stage_follows_one_psi(make_real_study):
    from study.config import ArchSpec, AttentionSpec

    def arch(*stages):
        return ArchSpec(backbone="resnet18", stem="lowres", width=0.25, num_classes=10, stages=stages)

    psi_ = AttentionSpec.of("eca", gamma=3, b=2)
    run = make_real_study([arch(psi_, psi_, AttentionSpec("none"), AttentionSpec.of("se", r=8)),
                           arch(psi_, AttentionSpec.of("eca", k=5), psi_, psi_),  # one stage with a fixed k
                           arch(psi_, AttentionSpec.of("eca", gamma=2, b=1), psi_, psi_)], name="gb")
    t = analysis.load(run).trials
    assert (t.loc[0, "gamma"], t.loc[0, "b"]) == (3.0, 2.0)
    assert t.loc[1:, "gamma"].isna().all() and t.loc[1:, "b"].isna().all()
