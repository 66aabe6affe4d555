"""The whole k-vs-C answer under truths inside and outside its model, at small scale: null
mapping intervals, divergence as an outcome, the additivity headline, noise that differs by
width, replicates that share noise, outliers, user-named mappings. Studies are recorded by
the real bookkeeping (runners.simulate_study into Optuna's journal file) and read back with
analysis.load; the batch of heteroscedastic nulls is built as KData directly (hundreds of
studies' worth of bookkeeping would take minutes)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import analysis
from analysis.kmap import main as kmap_main
from runners import Planted, StudySettings, simulate_study

sys.path.insert(0, str(Path(__file__).parent))  # the shared study builders, whatever pytest's import mode
from _kdata import null_kdata

from study.config import ProxySpec, Recipe


def _study(folder, name, planted, *, trials=100, replicates=2, seed=0, width=None):
    settings = StudySettings(
        name=name, space="eca_kmap", storage=f"journal:{folder / name / 'study.log'}", run_dir=str(folder / name),
        trials=trials, runner="local", design="inference", replicates=replicates, sampler="random", pruner="none", seed=seed,
        recipe=Recipe(epochs=1, warmup_epochs=0), proxy=ProxySpec(num_classes=10), width=width,
    )
    (folder / name).mkdir()
    (folder / name / "settings.json").write_text(json.dumps(settings.to_dict()))
    simulate_study(settings, planted)
    return folder / name


def test_a_null_study_scores_no_mapping_better_or_worse_than_the_paper(mem_path):
    run = _study(mem_path, "null", Planted(effect=0.0, sigma=0.5, seed=11), seed=11)
    an = analysis.analyze_kmap(analysis.load(run))
    assert not an.effect.evidence
    m = an.mappings.set_index("mapping")
    assert {"paper_psi", "timm_rule", "k3", "released", "fitted_psi"} <= set(m.index)
    for name, r in m.iterrows():
        assert r["regret_lo"] <= 0 + 1e-12 <= r["regret_hi"], name  # every regret interval reaches the true 0
        assert r["vs_paper_lo"] <= 0 <= r["vs_paper_hi"], name  # nothing beats or loses to the paper's psi
    # the fitted psi's interval is wider than a fixed mapping's: it pays for being chosen among many curves
    f = an.fitted
    assert f.candidates > 10 and f.critical > 2.5
    fit, k3 = m.loc["fitted_psi"], m.loc["k3"]
    assert fit["vs_paper_hi"] - fit["vs_paper_lo"] > k3["vs_paper_hi"] - k3["vs_paper_lo"]
    text = analysis.kmap.format_analysis(an)
    assert "no mapping is shown better or worse than the paper's psi at this budget" in text
    assert "chosen on this study's data" in text and "kmap_confirm" in text
    out = an.to_dict()
    row = next(r for r in out["mappings"] if r["mapping"] == "paper_psi")
    assert set(row) >= {"mapping", "regret", "regret_lo", "regret_hi", "vs_paper", "vs_paper_lo", "vs_paper_hi"}


def test_a_kernel_size_that_makes_training_diverge_is_an_effect_of_k(mem_path):
    run = _study(mem_path, "div", Planted(effect=0.0, sigma=0.5, diverge_k=9, diverge_C=32, seed=12), seed=12)
    e = analysis.k_effect(analysis.load(run))
    fail = e.failures
    assert fail["p_value"] < 0.01 and fail["n_diverged"] > 10 and fail["n_collapsed"] == 0
    cells = {(c["C"], c["k"]): c for c in fail["counts"]}
    assert cells[(16, 9)]["diverged"] == cells[(16, 9)]["runs"] > 0  # every run with k=9 at C=16 diverged
    # a trial diverges as a whole: a cell counts the diverged trials with that (C, k) in any stage
    rate = {cell: c["failed"] / c["runs"] for cell, c in cells.items() if c["runs"]}
    assert max(v for (C, k), v in rate.items() if C > 32) < 0.6
    assert e.evidence and e.fails and e.verdict().startswith("Evidence that k matters: k makes training diverge")
    assert e.to_dict()["failures"]["p_value"] == fail["p_value"]
    # top-1 shows nothing here: the k* table says so, and divergence stands beside it
    text = analysis.kmap.format_analysis(analysis.analyze_kmap(analysis.load(run)))
    assert not e.top1_evidence and "NOT supported by the data in top-1; k matters through failures to train" in text


def test_divergence_that_does_not_depend_on_k_is_no_evidence(mem_path):
    # 20 runs drawn at random are recorded as diverged: divergence that does not depend on k
    run = _study(mem_path, "div0", Planted(effect=0.0, sigma=0.5, seed=13), seed=13)
    data = analysis.kmap_data(analysis.load(run))
    pick = data.trials.sample(n=20, random_state=1)
    cf = data.configs.set_index("key")
    div = pick[["number", "key", "stratum"]].join(cf[[c for c in cf.columns if c[:1] in "Ck" and c[1:].isdigit()]], on="key")
    kept = data.trials[~data.trials["number"].isin(pick["number"])]
    data2 = dataclasses.replace(data, trials=kept, diverged=div.reset_index(drop=True))
    e = analysis.k_effect(data2)
    assert e.failures["p_value"] > 0.05 and not e.fails
    assert "no evidence that failing to train depends on k" in e.failures["text"]


def test_an_interaction_between_stages_is_named_in_the_headline(mem_path):
    run = _study(mem_path, "inter", Planted(effect=0.0, sigma=0.3, interaction=1.0, interaction_stages=(1, 2), seed=14), seed=14)
    an = analysis.analyze_kmap(analysis.load(run))
    e = an.effect
    assert e.additivity["additive"] is False and e.additivity["p_value"] < 1e-3 and e.additivity["pair"] == [1, 2]
    v = e.verdict()
    assert "The kernel sizes of stages 1 and 2 interact" in v and "not additive" in v
    assert "No evidence that k matters at this budget" not in v  # an interaction is not "k does not matter"
    assert not e.stage_matters  # a pure interaction is not a stage-dependent main effect
    assert an.claims == () and analysis.kmap.claim_gate(e) is not None


def test_a_best_k_that_depends_on_the_stage_is_evidence_that_k_matters_not_an_interaction(mem_path):
    """The best k depends on the stage (3/5/7/9), not on C: the test of k stands (a valid
    permutation p is never set aside), the stage check names the misfit, and it is not
    called an interaction, because that check is made on top of per-stage effects."""
    run = _study(mem_path, "stage", Planted(effect=1.0, sigma=0.5, stage_k=(3, 5, 7, 9), seed=20), seed=20)
    an = analysis.analyze_kmap(analysis.load(run))
    e = an.effect
    assert e.evidence and e.p_value < 0.01 and e.stage_matters and e.additive
    v = e.verdict()
    assert v.startswith("Evidence that k matters (p = ") and "differs between stages at equal C" in v and "interact" not in v
    assert an.claims == ()  # the mapping scores assume C alone: no claim rests on them


def test_noise_that_grows_at_small_width_keeps_the_test_at_its_level():
    rng = np.random.default_rng(5)
    studies = [null_kdata(rng) for _ in range(40)]
    strata = [analysis.k_effect(d).p_value < 0.05 for d in studies]
    pooled = [analysis.k_effect(d, variance="pooled").p_value < 0.05 for d in studies]
    # 40 nulls at alpha 0.05: 2 expected; more than 5 (P < 0.02 at the nominal level) fails
    assert sum(strata) <= 5, f"per-stratum variances: {sum(strata)} of 40 nulls rejected"
    e = analysis.k_effect(studies[0])
    sd = e.model.stratum_sd
    assert sd["resnet18@0.25"] > 2.5 * sd["resnet18@1"]  # the model saw the narrow stratum's larger noise
    assert set(e.noise_by_stratum) == set(sd)
    assert len(pooled) == 40


def test_replicates_that_share_noise_are_not_called_interactions(mem_path):
    """Paired seeds: a configuration's two runs share half their noise variance. The within-
    configuration spread measures the per-run part (sigma_seed), the configuration-level part
    shows as a spread beyond it, and neither is called an interaction of k."""
    per_run = shared = 0.5 / math.sqrt(2)
    run = _study(mem_path, "paired", Planted(effect=0.0, sigma=per_run, shared=shared, seed=15), seed=15)
    e = analysis.k_effect(analysis.load(run))
    assert e.additivity["additive"] is not False  # the structured test counts shared noise as noise
    lo, hi = e.noise.ci
    assert lo <= per_run <= hi
    spread = e.additivity["spread"]
    assert spread["p_value"] < 0.05 and 0.15 < spread["sigma_config"] < 0.6
    assert "noise a configuration's replicates share" in spread["text"]
    assert not e.verdict().startswith("The effect of k is not additive")


def test_simulated_noise_is_drawn_per_configuration_in_paired_seed_mode(mem_path):
    # the inference design pairs seeds: replicate r of every configuration trains with one seed;
    # two configurations of one replicate must still get different noise
    run = _study(mem_path, "pairs", Planted(effect=0.0, sigma=0.5, seed=16), trials=12, replicates=2, width=1.0, seed=16)
    fr = analysis.load(run)
    t = fr.trials.dropna(subset=["top1"])
    assert t["top1"].round(9).nunique() == len(t)


def test_collapsed_runs_are_failures_named_alone_and_make_no_claim(mem_path):
    """Runs that collapse to chance are failures to train, named by trial (not their healthy
    twins), left out of the model of top-1 and tested as an outcome of k; the mapping
    table's intervals stay the size of the seed noise, not of a collapse."""
    run = _study(mem_path, "collapse", Planted(effect=0.0, sigma=0.5, collapse=0.03, collapse_top1=10.0, seed=17), seed=17)
    fr = analysis.load(run)
    an = analysis.analyze_kmap(fr)
    e = an.effect
    low = set(fr.trials[fr.trials["top1"] < 20]["number"])
    assert len(low) >= 3, "the planted collapse should hit a few of 200 runs"
    assert {c["trial"] for c in e.failures["collapsed"]} == low
    assert e.model.data.excluded["collapsed (top-1 near chance)"] == len(low)
    assert not set(e.model.data.trials["number"]) & low
    assert not {o["trial"] for o in e.outliers} & low
    twins = set(fr.trials[fr.trials["key"].isin(fr.trials.loc[fr.trials["number"].isin(low), "key"])]["number"]) - low
    note = next(n for n in e.notes if n.startswith("collapsed runs, left out of the model of top-1"))
    assert all(f"trial {t} " in note for t in low) and not any(f"trial {t} " in note for t in twins)
    assert e.failures["p_value"] > 0.05 and not e.fails  # collapsing at random is no effect of k
    m = an.mappings.set_index("mapping")
    assert (m["regret_hi"] < 10).all() and (m["vs_paper_hi"] - m["vs_paper_lo"] < 5).all()
    assert an.claims == ()


def test_an_outlying_replicate_is_named_not_its_twin(mem_path):
    run = _study(mem_path, "outlier", Planted(effect=0.0, sigma=0.5, seed=21), seed=21)
    data = analysis.kmap_data(analysis.load(run))
    t = data.trials.copy()
    pair = t[t["key"] == t["key"].iloc[0]]["number"].tolist()
    t.loc[t["number"] == pair[0], "y"] -= 6.0  # 12 x the seed noise, far from collapsing
    cf = data.configs.copy()
    cf.loc[cf["key"] == t["key"].iloc[0], "y"] = t[t["key"] == t["key"].iloc[0]]["y"].mean()
    e = analysis.k_effect(dataclasses.replace(data, trials=t, configs=cf))
    assert [o["trial"] for o in e.outliers] == [pair[0]] and e.outliers[0]["replicates"] == [pair[1]]


def test_user_named_mappings_are_scored_and_bad_ones_are_one_line(mem_path, capsys):
    run = _study(mem_path, "named", Planted(effect=1.0, gamma=1.5, b=0.0, sigma=0.3, seed=18), seed=18)
    assert kmap_main([str(run), "--json", "--mapping", "gamma=1.5,b=0", "--mapping", "k=3,5,7,7"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {r["mapping"] for r in out["mappings"]}
    assert {"psi(1.5,0)", "k(3,5,7,7)"} <= names
    truth = next(r for r in out["mappings"] if r["mapping"] == "psi(1.5,0)")
    assert truth["regret_lo"] == 0  # the planted truth loses nothing provable
    for bad in ("gamma=0,b=1", "k=2,4", "gamma=2", "banana"):
        with pytest.raises(Exception) as info:
            kmap_main([str(run), "--mapping", bad])
        msg = str(info.value)
        assert msg.startswith("--mapping ") and "\n" not in msg
