"""Study designs that can answer the k-vs-C question: per-trial seeds, replicates tied in the
record, the inference and confirm designs, the --plan budget check, and their bad input.
Real Optuna storages; the trainer is the simulated one (runners.Planted) unless a test says
otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from runners import Planted, StudySettings, simulate_study
from runners.cli import build_parser, resolve_settings
from runners.cli import main as cli_main
from search_spaces._eca_kmap import INFERENCE_WIDTHS
from study import record
from study.cli import run_cli
from study.config import ProxySpec, Recipe

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def mem(mem_path):
    return mem_path


def _settings(folder: Path, name: str, **changes) -> StudySettings:
    base = dict(name=name, space="eca_kmap", storage=f"sqlite:///{folder / name / 'study.db'}", run_dir=str(folder / name),
                trials=4, runner="local", recipe=Recipe(epochs=1, warmup_epochs=0), proxy=ProxySpec(num_classes=10),
                sampler="random", pruner="none", width=0.5)
    base.update(changes)
    s = StudySettings(**base)
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "settings.json").write_text(json.dumps(s.to_dict()))
    return s


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(cli_main, [str(a) for a in argv], prog="python -m study.run")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_each_trial_trains_from_its_own_recorded_seed_and_replicates_are_tied(mem):
    bridge = simulate_study(_settings(mem, "reps", trials=4, replicates=2, seed=7), Planted(effect=0.0))
    trials = sorted(bridge.study.get_trials(), key=lambda t: t.number)
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    seeds = [t.user_attrs[record.CONFIG]["seed"] for t in trials]
    assert seeds == [record.trial_seed(7, t.number) for t in trials] and len(set(seeds)) == 8
    groups: dict[int, list] = {}
    for t in trials:
        groups.setdefault(t.user_attrs[record.GROUP], []).append(t)
    assert len(groups) == 4 and all(len(g) == 2 for g in groups.values())
    for first, members in groups.items():
        assert sorted(t.user_attrs[record.REPLICATE] for t in members) == [0, 1] and min(t.number for t in members) == first
        assert len({json.dumps(t.user_attrs[record.CONFIG]["arch"], sort_keys=True) for t in members}) == 1
    # the reference points are replicated too, as one group each
    refs = [t for t in trials if t.user_attrs.get(record.REFERENCE)]
    assert sorted(t.user_attrs[record.REFERENCE] for t in refs) == sorted(["paper_psi", "k3", "released"] * 2)


def test_seed_modes_fixed_and_paired(mem):
    fixed = simulate_study(_settings(mem, "fixed", trials=3, seed_mode="fixed", seed=5), Planted())
    assert {t.user_attrs[record.CONFIG]["seed"] for t in fixed.study.get_trials()} == {5}
    paired = simulate_study(_settings(mem, "paired", trials=3, replicates=2, seed_mode="paired", seed=5), Planted())
    by_rep = {}
    for t in paired.study.get_trials():
        by_rep.setdefault(t.user_attrs[record.REPLICATE], set()).add(t.user_attrs[record.CONFIG]["seed"])
    assert by_rep == {0: {record.trial_seed(5, 0)}, 1: {record.trial_seed(5, 1)}}
    with pytest.raises(ValueError, match="replicates: 2 replicates of a configuration need their own seeds"):
        _settings(mem, "bad", replicates=2, seed_mode="fixed")


def test_the_inference_design_and_its_defaults(tmp_path):
    argv = ["--space", "eca_kmap", "--design", "inference", "--out", str(tmp_path)]
    settings, space, _ = resolve_settings(build_parser().parse_args(argv))
    expected = ("inference", "random", "none", 2, "per_trial")
    assert (settings.design, settings.sampler, settings.pruner, settings.replicates, settings.seed_mode) == expected
    assert settings.trials == 100 and settings.proxy.val_per_class == 100
    assert not list(tmp_path.iterdir())
    # fixed k from one set, widths whose C values repeat across stages; psi only as a reference, released at width 1.0
    refs = dict(space.reference_points(settings.space_context()))
    assert set(refs) == {"paper_psi", "k3", "released"} and all(p["width"] == 1.0 for p in refs.values())
    assert all("k_mode" not in p and "gamma" not in p for p in refs.values())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    widths = set()
    for _ in range(30):
        trial = study.ask()
        config = space.suggest(trial, settings.space_context(number=trial.number))
        widths.add(config.arch.width)
        assert set(trial.params) == {"width", "k_s0", "k_s1", "k_s2", "k_s3"}
        study.tell(trial, 0.0)
    assert widths <= set(INFERENCE_WIDTHS) and len(widths) >= 4
    # the search design's released reference also runs at the width its k were chosen for
    search, space, _ = resolve_settings(build_parser().parse_args(["--space", "eca_kmap", "--out", str(tmp_path)]))
    assert dict(space.reference_points(search.space_context()))["released"]["width"] == 1.0


def test_plan_with_a_given_noise(tmp_path, capsys):
    code, out, err = _cli(["--space", "eca_kmap", "--design", "inference", "--plan", "--sigma", "0.5", "--out", tmp_path / "runs"], capsys)
    assert code == 0, err
    assert "noise: sigma = 0.5 points of top-1 per trial (given with --sigma)" in out
    line = next(x for x in out.splitlines() if x.startswith("needed for power 0.8:"))
    needed = int(line.split(":")[1].split("configurations")[0])
    assert 30 < needed < 100 and f"{needed} configurations x 2 = {2 * needed} trials, {6 * needed} trial-epochs" in line
    assert "this budget (100 configurations x 2 = 200 trials, 600 trial-epochs): power" in out and "detects" in out
    assert not (tmp_path / "runs").exists()  # a plan creates nothing
    # a noisier study needs more
    code, out2, _ = _cli(["--space", "eca_kmap", "--design", "inference", "--plan", "--sigma", "1.0", "--out", tmp_path / "runs"], capsys)
    needed2 = int(next(x for x in out2.splitlines() if x.startswith("needed")).split(":")[1].split("configurations")[0])
    assert needed2 > needed


def test_a_budget_the_analysis_cannot_fit_is_named_with_the_smallest_that_can(tmp_path, capsys, tiny_flags):
    from runners.cli import smallest_budget

    code, out, err = _cli(["--space", "eca_kmap", "--design", "inference", "--trials", "30", "--plan", "--sigma", "1.0",
                           "--out", tmp_path / "runs"], capsys)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("this budget (30 configurations) cannot be analysed"))
    assert "the smallest budget it can fit is" in line and "power nan" not in out and "inf points" not in out
    settings, space, _ = resolve_settings(build_parser().parse_args(
        ["--space", "eca_kmap", "--design", "inference", "--trials", "30", "--out", str(tmp_path / "runs")]))
    need, params = smallest_budget(settings, space)
    assert need > params and f"fit is {need} configurations ({params} parameters)" in line
    assert smallest_budget(settings.replace(trials=need), space)[0] == need
    # a study started with such a budget says so before anything trains (a tiny one at one width: 17 parameters)
    code, out, err = _cli(["--space", "eca_kmap", "--design", "inference", "--trials", "10", "--epochs", "1", "--timeout", "0.01",
                           "--out", tmp_path / "runs", "--name", "small", *tiny_flags], capsys)
    assert code == 4, err  # the timeout came before a trial finished (exit status 4): the warning is what is checked
    warning = next(x for x in err.splitlines() if x.startswith("warning: "))
    assert warning.startswith("warning: this budget (10 configurations) cannot be analysed") and "--resume --trials N" in warning


def test_plan_measures_the_noise_with_a_pilot(tmp_path, capsys, tiny_flags):
    code, out, err = _cli(["--space", "eca_kmap", "--design", "inference", "--plan", "--epochs", "1", "--effect", "3", "--out",
                           tmp_path / "runs",
                           *tiny_flags], capsys)
    assert code == 0, err
    assert "pilot: 3 reference points x 3 runs" in err and "measured by the pilot: 95 % CI" in out and "needed for power" in out
    assert not (tmp_path / "runs").exists()


def test_bad_input_of_the_designs(tmp_path, capsys, monkeypatch, mem):
    monkeypatch.delenv("STUDY_DEBUG", raising=False)
    refless = tmp_path / "refless.py"
    refless.write_text("from search_spaces import make_config\nfrom study.config import AttentionSpec\n\n"
                       "def define(trial, *, backbone, width=None, **settings):\n"
                       "    k = trial.suggest_categorical('k', [1, 3, 5])\n"
                       "    return make_config([AttentionSpec.of('eca', k=k)] * 4, backbone=backbone, width=0.25, **settings)\n")
    no_eca = mem / "se"
    simulate_study(_settings(mem, "se", space="se_ratio", trials=3), Planted())
    small = mem / "small"
    simulate_study(_settings(mem, "small", trials=3), Planted())
    out = tmp_path / "runs"
    cases = [
        (["--space", "eca_kmap", "--replicates", "0"], "--replicates: must be >= 1"),
        (["--space", "eca_kmap", "--replicates", "2", "--seed-mode", "fixed"],
         "--replicates: 2 replicates of a configuration need their own seeds"),
        (["--space", "se_ratio", "--design", "inference"], "--design: space 'se_ratio' has no 'inference' design"),
        (["--space", f"{refless}:define", "--plan"], "--sigma: space 'refless.define' has no reference points to run as a noise pilot"),
        (["--space", "se_ratio", "--plan", "--sigma", "0.5"], "a k-vs-C plan needs one"),
        (["--space", "eca_kmap", "--sigma", "0.5"], "--sigma: only with --plan"),
        (["--space", "kmap_confirm"], "--from: kmap_confirm confirms the answer of a k-vs-C study"),
        (["--space", "eca_kmap", "--delta", "0.3"], "--delta: only with --design answer (or --space kmap_confirm)"),
        (["--space", "eca_kmap", "--design", "answer", "--delta", "-1"], "--delta: expected a margin of top-1 points in (0, 100]"),
        (["--space", "eca_kmap", "--design", "answer", "--budget", "0"], "--budget: expected a number of runs >= 1"),
        (["--space", "eca_kmap", "--from", small], "--from: only the kmap_confirm space confirms a study"),
        (["--space", "kmap_confirm", "--from", small], f"--from {small}: k-vs-C: the model has"),
        (["--space", "kmap_confirm", "--from", no_eca], f"--from {no_eca}: k-vs-C: the study has no trial with 'eca' attention"),
        (["--space", "kmap_confirm", "--from", tmp_path / "nothing"], "does not exist"),
    ]
    for argv, match in cases:
        code, _, err = _cli([*argv, "--out", out], capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("python -m study.run: error: ") and match in err, (argv, err)
        assert not out.exists(), argv


def test_a_study_resumed_with_another_design_is_refused(tmp_path, capsys, tiny_flags):
    base = ["--space", "eca_kmap", "--runner", "local", "--name", "d", "--trials", "1", "--epochs", "1", "--out", tmp_path, *tiny_flags]
    code, _, err = _cli(base, capsys)
    assert code == 0, err
    for flag, value, kept in (("--design", "inference", "design"), ("--replicates", "2", "replicates"),
                              ("--seed-mode", "fixed", "seed mode")):
        code, _, err = _cli(["--name", "d", "--resume", "--out", tmp_path, flag, value], capsys)
        assert code == 2 and f"{flag}: a resumed study keeps its {kept}" in err, err


def test_a_confirmation_study_end_to_end(mem, capsys, tiny_flags):
    """``--space kmap_confirm --from RUN`` with real training: the arms and the rule from the
    source's answer stored before the first run, rounds of paired seeds until the budget, the
    decision in words and in its files, and the report's confirmation section."""
    source = simulate_study(_settings(mem, "src", trials=24, design="inference"), Planted(effect=3.0, gamma=1.2, b=0.0, sigma=0.3))
    code, out, err = _cli(["--space", "kmap_confirm", "--from", source.settings.run_dir, "--runner", "local", "--delta", "0.4",
                           "--budget", "24", "--epochs", "1", "--out", mem / "runs", "--quiet", *tiny_flags], capsys)
    assert code == 0, err
    run = mem / "runs" / "kmap_confirm"
    settings = json.loads((run / "settings.json").read_text())
    assert (settings["design"], settings["seed_mode"], settings["pruner"]) == ("confirm", "paired", "none")
    options = settings["space_options"]
    rule = options["rule"]
    assert options["source_study"] == "src" and rule["delta"] == 0.4 and rule["budget"] == 24
    assert {"paper_psi", "k3", "k5", "k7", "released", "timm_rule"} <= set(options["arms"])
    assert settings["seed"] != source.settings.seed  # seeds of its own
    import analysis

    fr = analysis.load(run)
    # a round: every tested arm and the paper's psi at every width, all from the round's one seed
    tested = [a for a in rule["arms"] if a not in rule["identical"] and a not in rule["same_as"]]
    assert len(fr.trials) == (len(tested) + 1) * len(rule["widths"]) <= 24
    assert fr.trials.groupby("replicate")["seed"].nunique().eq(1).all()
    assert not set(fr.trials["seed"]) & set(options["source_seeds"])
    decision = json.loads((run / "decision.json").read_text())
    assert decision["stopped"].startswith("the budget of 24 runs is spent") and "fresh" in decision["seeds"]
    assert (run / "decision.md").read_text().startswith("# ") and (run / "decision.png").exists()
    assert "stay undecided after" in out or "undecided" in out
    analysis.make_report(fr, run / "report", log=None)
    md = (run / "report" / "report.md").read_text()
    assert "## Confirmation: each arm against the paper's psi, paired by seed" in md and "stored before the first run" in md
