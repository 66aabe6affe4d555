"""The latency in the report and the fronts: its spread shown, large spreads and figures
not measured with the node to itself flagged; a study recorded before the probe loads."""

from __future__ import annotations

import math

import pandas as pd


def test_the_report_shows_latency_with_its_spread_and_flags(make_study, tmp_path):
    from analysis import load
    from analysis._report import ReportContext, _latency_flags, _latency_words, section_pareto

    old = load(make_study("old", n_eca=6, n_psi=0, n_se=2, n_none=2, n_pruned=0, n_failed=0))
    assert old.trials["latency_iqr_ms"].isna().all() and old.trials["latency_device"].isna().all()  # recorded before the probe: loads
    assert "not with the node to itself" in _latency_words(old.complete)
    ctx = ReportContext.build(old, tmp_path / "out", log=None)
    section_pareto(ctx)
    text = "\n".join(ctx.md)
    assert "| latency_ms | latency_iqr_ms | latency_flag |" in text and "not probed" in text
    assert "pareto_latency.csv" in ctx.made

    probed = pd.DataFrame({"latency_ms": [2.0, 2.0, 4.0, math.nan], "latency_iqr_ms": [0.1, 0.5, 0.2, math.nan],
                           "latency_exclusive": [True, True, False, None], "latency_device": ["cpu"] * 4,
                           "latency_threads": [1, 1, 1, None]})
    assert list(_latency_flags(probed)["latency_flag"]) == ["", "spread", "not alone", ""]
    words = _latency_words(probed)
    assert "probed with the node to itself (cpu, 1 thread(s))" in words
    assert "2 of 3 trials' latency is flagged (1 with an IQR above 10 % of the median, 1 measured without the node" in words
    assert "No figure's IQR exceeds 10 %" in _latency_words(probed.iloc[:1])
