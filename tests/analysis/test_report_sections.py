"""The report is a list of sections, each of which runs alone on a report context."""

from __future__ import annotations


def test_one_section_runs_alone(make_study, tmp_path):
    from analysis import load
    from analysis._report import SECTIONS, ReportContext, section_best, section_pareto

    assert SECTIONS[0].__name__ == "section_header" and section_best in SECTIONS
    run = make_study("small", n_eca=12, n_psi=0, n_se=2, n_none=2, n_pruned=1, n_failed=1)
    logs: list[str] = []
    ctx = ReportContext.build(load(run), tmp_path / "out", log=logs.append)
    section_best(ctx)
    assert ctx.md[:2] == ["## Best trials", ""]
    assert ctx.md[2].startswith("| number | top1 |") and len(ctx.md) > 5
    assert not ctx.writer.skipped and ctx.made == []  # a table and words, no file
    assert logs[0] == "[report] best trials ..." and logs[1].startswith("[report] best trials: done")
    assert not (tmp_path / "out" / "report.md").exists()  # only make_report writes report.md

    section_pareto(ctx)
    assert "pareto_params.csv" in ctx.made and (tmp_path / "out" / "pareto_params.png").exists()


def test_a_failing_section_is_recorded_not_raised(make_study, tmp_path):
    from analysis import load
    from analysis._report import ReportContext, section_best

    run = make_study("none", n_eca=0, n_psi=0, n_se=0, n_none=0, n_pruned=2, n_failed=1)
    ctx = ReportContext.build(load(run), tmp_path / "out", log=None)
    section_best(ctx)
    assert ctx.writer.skipped == [("best trials", "no completed trials: nothing to rank, no Pareto fronts")]
    assert ctx.md == ["## Best trials", "", "_Not made: no completed trials: nothing to rank, no Pareto fronts._", ""]
