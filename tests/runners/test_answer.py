"""The answer design from plan to decision, run through the real bookkeeping (each stage a study
in a journal storage, the local runner, the confirmation's rounds) with a planted truth instead
of training (runners.Planted): a null ends with every arm equivalent, a planted mapping that
beats the paper's psi is claimed to, and a crash in the middle of the confirmation, resumed,
trains nothing twice."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import analysis
from runners import Planted, Progress, StudySettings, check_run, start_run
from runners.cli._answer import run_answer


def _settings(mem, name, *, seed=0, trials=70, budget=None):
    options = {"delta": 0.5, **({"budget": budget} if budget else {})}
    return StudySettings(space="eca_kmap", design="answer", runner="local", name=name, run_dir=str(mem / name),
                         storage=f"journal:{mem / name}.log", seed=seed, trials=trials, space_options=options,
                         recipe={"epochs": 1, "warmup_epochs": 0})


def _answer(settings, planted, *, resume=False, train=None):
    run = check_run(settings, resume=resume)
    start_run(run, log=lambda s: None)
    lines = []
    path = run_answer(settings, Progress(quiet=True), say=lines.append, train=train or planted.train, load_proxy=lambda p: None)
    return json.loads((path.parent / "decision.json").read_text()), lines


def test_a_null_workflow_ends_with_every_arm_equivalent(mem_path):
    decision, lines = _answer(_settings(mem_path, "null", seed=6), Planted(effect=0.0, sigma=0.5, seed=6))
    claims = {c["arm"]: c["claim"] for c in decision["claims"]}
    assert set(claims) >= {"timm_rule", "k3", "k5", "k7", "released"}
    assert set(claims.values()) == {"equivalent"}, claims
    assert decision["decision"].startswith("The paper's psi is within 0.5 points of every mapping tested")
    assert decision["stopped"] == "every arm is decided" and decision["runs"] <= decision["budget"]
    assert {"decision", "delta", "alpha", "runs", "stopped", "claims"} <= set(decision)
    assert all({"arm", "claim", "diff", "lo", "hi", "pairs"} <= set(c) for c in decision["claims"])
    assert any(line.startswith("[answer] plan: ") for line in lines) and any(line.startswith("[confirm] round 0: ") for line in lines)
    assert "second half of the validation images" in decision["validation"]


def test_a_mapping_that_beats_the_paper_is_claimed_to(mem_path):
    # k = 3 is best everywhere, 1 point a stage away; the paper's psi asks for 5 at C >= 128
    decision, _ = _answer(_settings(mem_path, "k3", seed=1), Planted(effect=1.0, stage_k=(3, 3, 3, 3), sigma=0.5, seed=1))
    claims = {c["arm"]: c for c in decision["claims"]}
    assert claims["k3"]["claim"] == "beats" and claims["k3"]["lo"] > 0
    assert claims["timm_rule"]["claim"] == "equivalent" and claims["timm_rule"]["pairs"] == 0  # the same networks
    assert decision["decision"].startswith("k3 beats the paper's psi by ")


def test_a_crash_in_the_confirmation_resumed_trains_nothing_twice(mem_path):
    planted = Planted(effect=0.0, sigma=0.5, seed=5)
    settings = _settings(mem_path, "crash", seed=5)
    confirm_runs = [0]

    def crashing(config, reporter, **kw):
        if config.seed and reporter is not None and confirm_runs[0] >= 0:
            arch = config.arch
            if getattr(arch, "width", None) in (0.25, 0.5, 1.0) and "confirm" in str(getattr(reporter, "bridge", None) and
                                                                                     reporter.bridge.settings.name):
                confirm_runs[0] += 1
                if confirm_runs[0] == 25:
                    raise KeyboardInterrupt
        return planted.train(config, reporter, **kw)

    with pytest.raises(KeyboardInterrupt):
        _answer(settings, planted, train=crashing)
    decision, _ = _answer(settings, planted, resume=True)
    fr = analysis.load(mem_path / "crash" / "confirm")
    done = fr.trials[fr.trials["state"] == "complete"]
    trained = Counter(zip(done["param_arm"], done["param_width"], done["replicate"]))
    assert trained and max(trained.values()) == 1  # every (arm, width, round) trained once
    failed = fr.trials[fr.trials["state"] == "failed"]
    assert len(failed) == 1 and "interrupted" in str(failed["error"].iloc[0])  # the run in flight, and only it, again
    assert decision["runs"] == len(done) + len(failed)
