"""One latency per network in a study: the bridge keeps the first probed figure of a network
(``latency:<digest>`` on the study) and every later trial of that network records it; the
analysis reads it with its spread, and a study recorded before the probe still loads."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from runners import StudyBridge, open_study, run_study
from search_spaces import get_space
from study import record

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _costs(latency: float, *, digest: str | None = "abc", iqr: float | None = 0.1, device: str = "cpu", threads: int = 1) -> dict:
    base = {"params": 10, "macs": 20, "macs_224": 30, "latency_ms": latency, "resolution": 16, "attention_params": 1}
    if digest is None:  # as recorded before the probe
        return base
    return {**base, "latency_iqr_ms": iqr, "latency_device": device, "latency_threads": threads, "latency_exclusive": True,
            "arch_digest": digest}


def test_replicates_share_their_first_runs_latency(tiny_settings):
    bridge = run_study(tiny_settings(name="replicates", trials=2, replicates=2))
    ran = sorted((t for t in bridge.study.get_trials() if t.state != TrialState.WAITING), key=lambda t: t.number)
    assert [t.state for t in ran] == [TrialState.COMPLETE] * 4
    groups: dict[int, list] = {}
    for t in ran:
        groups.setdefault(t.user_attrs[record.GROUP], []).append(t)
    assert len(groups) == 2 and all(len(g) == 2 for g in groups.values())
    for first, *later in groups.values():
        costs = first.user_attrs[record.COSTS]
        assert costs["latency_iqr_ms"] >= 0 and costs["latency_threads"] == 1 and costs["latency_device"] == "cpu"
        assert "latency_own_ms" not in costs
        shared = bridge.study.user_attrs[record.latency_attr(costs["arch_digest"])]
        assert shared == {**{k: costs[k] for k in record.LATENCY_KEYS}, "trial": first.number}
        for t in later:
            c = t.user_attrs[record.COSTS]
            assert c["arch_digest"] == costs["arch_digest"] and c["latency_from"] == first.number
            assert {k: c[k] for k in record.LATENCY_KEYS} == {k: costs[k] for k in record.LATENCY_KEYS}
            assert c["latency_own_ms"] > 0  # its own probe, kept as a diagnostic

    from analysis import load

    t = load(bridge.settings.storage).complete
    assert t["latency_iqr_ms"].notna().all() and t.groupby("group")["latency_ms"].nunique().eq(1).all()
    assert t["latency_own_ms"].notna().sum() == 2 and set(t["latency_device"]) == {"cpu"}


def test_a_network_measured_once_is_shared_across_references_and_samples(tiny_settings):
    """Driven as a runner drives the bridge: a reference point and a sampled trial of one
    network (one digest) record one figure; another device, another network or costs without
    a digest keep their own."""
    settings = tiny_settings(name="shared", trials=6)
    space = get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings)
    bridge.enqueue_references()
    first, same, gpu, other, old = (bridge.ask() for _ in range(5))
    assert first.trial.user_attrs.get(record.REFERENCE) == "paper_psi" and same.trial.user_attrs.get(record.REFERENCE) is not None
    bridge.start(first, _costs(2.0))
    bridge.start(same, _costs(9.0, iqr=3.0))  # measured under load: the study's figure wins
    bridge.start(gpu, _costs(0.5, device="cuda:0 (some GPU)"))
    bridge.start(other, _costs(4.0, digest="def"))
    bridge.start(old, _costs(24.1, digest=None))
    assert first.costs["latency_ms"] == 2.0 and "latency_own_ms" not in first.costs
    assert same.costs["latency_ms"] == 2.0 and same.costs["latency_iqr_ms"] == 0.1
    assert (same.costs["latency_own_ms"], same.costs["latency_from"]) == (9.0, first.number)
    assert same.trial.user_attrs[record.COSTS] == same.costs  # what the pruner and the objectives read
    assert gpu.costs["latency_ms"] == 0.5 and other.costs["latency_ms"] == 4.0 and old.costs == _costs(24.1, digest=None)
    assert bridge.study.user_attrs[record.latency_attr("abc")]["trial"] == first.number
    assert bridge.study.user_attrs[record.latency_attr("def")]["latency_ms"] == 4.0
