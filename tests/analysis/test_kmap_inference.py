"""The k-vs-C inference on studies recorded by the real bookkeeping (runners.simulate_study:
the runner, the bridge, an SQLite storage, with a planted truth instead of training), read
back with analysis.load as any study is."""

from __future__ import annotations

import json

import numpy as np
import pytest

import analysis
from analysis.kmap import main as kmap_main
from runners import Planted, StudySettings, simulate_study
from study.attention import psi
from study.config import ProxySpec, Recipe


@pytest.fixture
def tmp_path(mem_path):
    return mem_path


def _study(tmp_path, name, planted, *, trials=30, replicates=1, design="inference", pruner="none", epochs=1, seed=0, width=0.5):
    """A simulated eca_kmap study; ``width`` fixed (one stratum, four C: cheap) or None (all
    the design's widths: C from 16 to 512)."""
    settings = StudySettings(
        name=name, space="eca_kmap", storage=f"sqlite:///{tmp_path / name / 'study.db'}", run_dir=str(tmp_path / name),
        trials=trials, runner="local", design=design, replicates=replicates, sampler="random", pruner=pruner, seed=seed,
        recipe=Recipe(epochs=epochs, warmup_epochs=0), proxy=ProxySpec(num_classes=10), width=width,
    )
    (tmp_path / name).mkdir()
    (tmp_path / name / "settings.json").write_text(json.dumps(settings.to_dict()))
    simulate_study(settings, planted)
    return tmp_path / name


def test_a_null_study_says_no_evidence(tmp_path):
    run = _study(tmp_path, "null", Planted(effect=0.0, sigma=0.5, seed=1), trials=30, replicates=2)
    an = analysis.analyze_kmap(analysis.load(run))
    e = an.effect
    assert not e.evidence and e.verdict().startswith("No evidence that k matters at this budget (p = ")
    assert "not supported by the data" in e.verdict()
    # the largest difference comes with a simultaneous interval that reaches 0
    assert e.effect_ci[0] <= 0 <= e.effect_ci[1]
    # replicates measure the seed noise that was planted
    assert e.noise.sigma is not None and e.noise.ci[0] <= 0.5 <= e.noise.ci[1] and e.noise.df >= 25
    # with no effect every k is as good as the best: the confidence sets are wide
    assert (e.table["k_hi"] - e.table["k_lo"]).mean() >= 4


def test_a_strong_planted_mapping_is_detected_and_recovered(tmp_path):
    truth = Planted(effect=3.0, gamma=1.2, b=0.0, sigma=0.3, seed=2)
    run = _study(tmp_path, "strong", truth, trials=56, width=None)
    an = analysis.analyze_kmap(analysis.load(run))
    e = an.effect
    assert e.evidence and e.p_value <= 0.001 and e.model.f_p < 1e-6  # the permutation p bottoms out at 1/1000
    assert e.noise.sigma is None and any("not measured" in n for n in e.notes)  # no replicates: said, not guessed
    tab = e.table
    true_k = [psi(int(c), 1.2, 0.0) for c in tab["C"]]
    assert ((tab["k_lo"] <= true_k) & (np.array(true_k) <= tab["k_hi"])).all()
    assert (tab["k_star"] == true_k).mean() >= 0.8
    # psi fitted by predicted top-1 (restricted to psi curves whose k were run at every C: with 56
    # configurations a few (C, k) cells stay empty) is close to the truth and beats the paper's psi
    # (every mapping is chosen and scored on the widths where all of them can be scored: here a cell
    # at C=24 that no mapping could use left one width out, and the notes say so)
    fitted = [an.fitted.ks[int(c)] for c in tab["C"] if int(c) in an.fitted.ks]
    assert np.mean(np.array(fitted) == np.array([t for c, t in zip(tab["C"], true_k) if int(c) in an.fitted.ks])) >= 0.5
    assert set(an.fitted.widths) == set(an.scores.widths)
    m = an.mappings.set_index("mapping")
    assert m.loc["fitted_psi", "regret"] < m.loc["paper_psi", "regret"]
    # the paper's psi (gamma=2, b=1) is far from this truth: its regret is shown, beyond noise
    assert m.loc["paper_psi", "regret_lo"] > 0
    # the truth depends on C alone: no evidence that the stage matters
    assert e.stage_test["p_value"] is None or e.stage_test["p_value"] > 0.01


def test_pruned_trials_are_read_at_the_epoch_every_trial_reached(tmp_path):
    # median pruning stops trials whose (noisy) early top-1 is low: the response must not select by it
    run = _study(tmp_path, "pruned", Planted(effect=0.0, sigma=1.0, seed=3), trials=25, design="search", pruner="median", epochs=4)
    fr = analysis.load(run)
    assert (fr.trials["state"] == "pruned").any()
    e = analysis.k_effect(fr)
    d = e.model.data
    assert d.epoch == int(fr.trials.loc[fr.trials["state"].isin(["complete", "pruned"]), "epochs"].min()) < 4
    assert set(d.trials["state"]) == {"complete", "pruned"}
    assert "the last epoch every included trial ran" in d.response_text()


def test_permutation_test_and_json_answer(tmp_path, capsys):
    run = _study(tmp_path, "perm", Planted(effect=2.0, sigma=0.5, seed=4), trials=30)
    e = analysis.k_effect(analysis.load(run), method="permutation", permutations=99)
    assert e.evidence and e.p_value == pytest.approx(0.01) and "permutation" in e.method
    assert kmap_main([str(run), "--json", "--alpha", "0.01", "--method", "f"]) == 0
    out = json.loads(capsys.readouterr().out)
    k = out["k_effect"]
    assert k["evidence"] is True and k["alpha"] == 0.01 and k["method"].startswith("F-test")
    assert analysis.k_effect(analysis.load(run)).method.startswith("permutation test")  # the default
    assert isinstance(k["p_value"], float) and isinstance(k["effect_pts"], float) and k["sigma_seed"] is None
    assert k["n_trials"] == 30 and {"preferred_k", "effects", "mappings", "fitted_psi", "verdict"} <= set(out)
    assert kmap_main([str(run)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Evidence that k matters (p = ")


def test_a_study_still_running_is_analysed_on_what_finished_and_says_so(tmp_path):
    import optuna

    run = _study(tmp_path, "running", Planted(effect=2.0, sigma=0.5, seed=5), trials=30)
    settings = json.loads((run / "settings.json").read_text())
    from search_spaces import get_space

    trial = optuna.load_study(study_name=settings["name"], storage=settings["storage"]).ask()  # a trial in flight, as
    get_space("eca_kmap").suggest(trial, StudySettings.from_dict(settings).space_context())  # the runner records it
    e = analysis.k_effect(analysis.load(run))
    assert e.n_trials == 30 and e.model.data.excluded == {"running (the study is not finished)": 1}
    assert any("1 running (the study is not finished)" in n for n in e.notes)


def test_aliased_k_effects_are_not_estimable_not_zero(tmp_path):
    """A small study aliases (C, k) cells: their effects are unknown (NaN, named in a note),
    never printed as an exact 0 with a zero-width interval, and never chosen as k*."""
    run = _study(tmp_path, "aliased", Planted(effect=1.0, sigma=0.5, seed=3), trials=20, design="search", width=None)
    an = analysis.analyze_kmap(analysis.load(run))
    e = an.effect
    aliased = e.model.design.aliased
    assert aliased, "the 20-trial study should alias some (C, k) cells"
    eff = e.effects.set_index(["C", "k"])
    for C, k in aliased:
        row = eff.loc[(int(C), int(k))]
        assert not row["estimable"]
        assert np.isnan(row["diff"]) and np.isnan(row["lo"]) and np.isnan(row["hi"]) and np.isnan(row["vs_ref"])
    # every estimable non-reference, non-best cell has a real interval (no 0 +- 0 stand-ins)
    real = e.effects[e.effects["estimable"] & (e.effects["diff"] != 0)]
    assert (real["hi"] > real["lo"]).all()
    for r in e.table.itertuples():
        ks = {float(k) for k in r.k_set.split(",")}
        assert (float(r.C), float(r.k_star)) not in aliased and not ks & {k for c, k in aliased if c == r.C}
    note = next(n for n in e.notes if n.startswith("not estimable at this budget (aliased): C="))
    C0, k0 = sorted(aliased)[0]
    assert f"C={C0:g}: k=" in note
    # a mapping that needs an aliased cell is not scored for that network: the cell is listed as missing
    k3 = an.mappings.set_index("mapping").loc["k3"]
    if any(k == 3.0 for _, k in aliased):
        assert "k=3" in k3["missing"]
    for m in an.mappings.itertuples():
        for cell in filter(None, m.missing.split(" ")):
            C, k = (float(x.split("=")[1]) for x in cell.split(":"))
            assert (C, k) in aliased or k not in e.model.design.levels.get(C, [])


def test_regret_intervals_hold_their_estimates_and_never_go_below_zero(tmp_path):
    """A regret (against the best k per C, which the data estimate) is >= 0 at the estimate and
    at both ends of its simultaneous interval; the text says what an interval reaching 0 means."""
    run = _study(tmp_path, "regret", Planted(effect=0.0, sigma=0.5, seed=1), trials=30, replicates=2)
    an = analysis.analyze_kmap(analysis.load(run))
    scored = an.mappings.dropna(subset=["regret"])
    assert len(scored) >= 2
    for r in scored.itertuples():
        assert 0 <= r.regret_lo <= r.regret <= r.regret_hi
    text = kmap_text(run)
    assert "no evidence of loss" in text and "chosen on this study's data" in text


def kmap_text(run):
    from analysis.kmap._cli import format_analysis

    return format_analysis(analysis.analyze_kmap(analysis.load(run)))
