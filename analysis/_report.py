"""The study report; documented in :mod:`analysis.report`."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis._fidelity import fidelity
from analysis._importance import param_importances
from analysis._load import load
from analysis._pareto import attention_gain, front_hypervolumes, pareto_front
from analysis._report_context import ReportContext, trials_csv
from analysis._trained import TRAINED, is_study_folder, load_trained
from analysis.confirm import confirmation_decision, plot_decision
from analysis.kmap import answer_blocks, render_markdown
from analysis.kmap._analysis import analyze_kmap, gamma_b_plane
from analysis.kmap._data import pooled_noise
from study.cli import ArgumentParser, UsageError, as_usage_error
from study.tracking import attach_folder, check_tracking_uri, find_study_run

if TYPE_CHECKING:
    from study.cli import ArgumentParser

__all__ = ["make_report", "main", "build_parser"]


def _gain_words(g: Any) -> str:
    """Attention's gains over ``none`` in words: which are distinguishable from 0 (their 95 %
    Welch interval excludes it), which cannot be tested, and what ``gain_best`` is."""
    rows = g[(g["attention"] != "none") & g["gain_mean"].notna()]
    tested = rows[rows["gain_lo"].notna()]
    shown = tested[(tested["gain_lo"] > 0) | (tested["gain_hi"] < 0)]
    text = ("`gain_mean`: mean top-1 minus the mean of `none` at the same backbone and width, `gain_lo`..`gain_hi` its 95 % "
            "Welch t interval; `gain_best` is the best of `n` runs minus the best of `none`'s, which grows with `n` and has no interval. ")
    if len(shown):
        text += "Gains distinguishable from 0: " + ", ".join(
            f"{r.attention} at width {r.width:g} ({r.gain_mean:+.2f} points)" for r in shown.itertuples()) + "."
    elif len(tested):
        text += "**No attention's gain over `none` is distinguishable from 0 at this budget.**"
    else:
        text += "**No gain can be tested: each needs at least two trials of the attention and of `none` at one backbone and width.**"
    if len(rows) > len(tested) and len(tested):
        text += f" {len(rows) - len(tested)} gain(s) have fewer than two trials on a side and no interval."
    return text


def _noise_words(done: Any) -> str:
    """The seed noise of the complete trials' top-1, in words: measured from configurations
    run more than once (:func:`analysis.kmap._data.pooled_noise`), or said to be unmeasured."""

    noise = pooled_noise(done, key="key", value="top1")
    if noise.sigma is None:
        return ("Each configuration ran once: the seed-to-seed noise of top-1 is not measured, so this ranking is "
                "descriptive and a difference of a few points between two trials is not a finding "
                "(`--replicates 2` measures the noise).")
    lo, hi = noise.ci
    return (f"Seed-to-seed noise of top-1, pooled over the {noise.n_configs} configurations run more than once: "
            f"sigma = {noise.sigma:.2f} points (95 % CI {lo:.2f}-{hi:.2f}, {noise.df} df); noise alone makes two single "
            f"runs of one configuration differ by more than {1.96 * math.sqrt(2) * noise.sigma:.1f} points about once in 20.")


def _latency_flags(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` with ``latency_iqr_ms`` (NaN where not recorded) and ``latency_flag``: "spread"
    where the latency's IQR exceeds :data:`study.costs.LATENCY_SPREAD_FLAG` of its median,
    "not alone" where the probe did not get the node to itself, "not probed" where the study
    recorded no IQR (measured inside the trial, under the other trials' load), else ""."""
    from study.costs import LATENCY_SPREAD_FLAG

    t = t.copy()
    if "latency_iqr_ms" not in t:
        t["latency_iqr_ms"] = math.nan
    lat = pd.to_numeric(t.get("latency_ms"), errors="coerce")
    iqr = pd.to_numeric(t["latency_iqr_ms"], errors="coerce")
    alone = t["latency_exclusive"] if "latency_exclusive" in t else pd.Series(None, index=t.index, dtype=object)
    flags = []
    for m, q, a in zip(lat, iqr, alone):
        if math.isnan(m):
            flags.append("")
        elif math.isnan(q):
            flags.append("not probed")
        elif q > LATENCY_SPREAD_FLAG * m:
            flags.append("spread")
        elif a is False:
            flags.append("not alone")
        else:
            flags.append("")
    t["latency_flag"] = flags
    return t


def _latency_words(done: pd.DataFrame) -> str:
    """How the complete trials' latency was measured, in words, and how many figures are
    flagged (:func:`_latency_flags`)."""
    from study.costs import LATENCY_SPREAD_FLAG

    t = _latency_flags(done)
    t = t[pd.to_numeric(t.get("latency_ms"), errors="coerce").notna()]
    if t.empty:
        return "No complete trial recorded a latency."
    flags = t["latency_flag"].value_counts().to_dict()
    if flags.get("not probed", 0) == len(t):
        return ("**Latency was measured inside each trial, not with the node to itself (a study recorded before the latency "
                "probe): it includes the load of the trials that ran beside it, so a difference in latency between two trials "
                "may be that load, not their networks.**")
    devices, threads = (t[c] if c in t else [None] * len(t) for c in ("latency_device", "latency_threads"))
    where = sorted({f"{d}, {int(n)} thread(s)" for d, n in zip(devices, threads) if d is not None and n is not None and not pd.isna(n)})
    text = (f"Latency: the median forward pass at batch 1, probed with the node to itself ({'; '.join(where) or 'device not recorded'}) "
            "once per network (replicates and reference points of one network share it); `latency_iqr_ms` is its "
            "interquartile range.")
    noisy = flags.get("spread", 0) + flags.get("not alone", 0) + flags.get("not probed", 0)
    if noisy:
        parts = [f"{flags[k]} {what}" for k, what in (("spread", f"with an IQR above {100 * LATENCY_SPREAD_FLAG:.0f} % of the median"),
                                                      ("not alone", "measured without the node to itself (the wait timed out)"),
                                                      ("not probed", "recorded before the probe")) if flags.get(k)]
        text += f" **{noisy} of {len(t)} trials' latency is flagged ({', '.join(parts)}): not a finding.**"
    else:
        text += f" No figure's IQR exceeds {100 * LATENCY_SPREAD_FLAG:.0f} % of its median."
    return text


def section_header(ctx: ReportContext) -> None:
    """The title, the study's storage, space, objectives and trial counts; ``trials.csv``."""
    fr, t = ctx.frames, ctx.trials
    counts = t["state"].value_counts().to_dict() if len(t) else {}
    ctx.log(f"[report] study {fr.name!r}: {len(t)} trials " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" -> {ctx.out}")
    ctx.md.extend([f"# Study report: {fr.name}", "",
                   f"- storage: `{fr.storage}`",
                   f"- search space: {fr.settings.get('space', 'not recorded')}",
                   f"- objectives: {', '.join(f'{o} ({d})' for o, d in zip(fr.objectives, fr.directions))}",
                   f"- trials: {len(t)} (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")", ""])
    if len(t):
        ctx.csv(trials_csv(t), "trials")


def section_confirmation(ctx: ReportContext) -> None:
    """A confirmation study's decision (only for one): it comes first."""
    if "param_arm" not in ctx.trials:
        return
    ctx.md.extend(["## Confirmation: each arm against the paper's psi, paired by seed", ""])

    def _confirm():

        fr = ctx.frames
        decision = confirmation_decision(fr)
        options = dict(fr.settings.get("space_options") or {})
        ctx.md.extend([f"**{decision.sentence()}.**", "", f"- the rule, stored before the first run: {decision.rule.text()}",
                       f"- spent {decision.runs} of {decision.rule.budget} runs in {decision.rounds} rounds"])
        if options.get("source_verdict"):
            ctx.md.append(f"- the study it confirms ({options.get('source')}): {options['source_verdict']}")
        ctx.md.append("")
        table = pd.DataFrame([{k: v for k, v in a.to_dict().items() if k != "path"} for a in decision.arms])
        ctx.csv(table, "confirmation")
        ctx.json(decision.to_dict(), "confirmation.json", default=float)
        ctx.md.extend([f"Top-1 per network averaged over the widths; `diff`: mean paired difference against the paper's psi when the arm "
                       f"stopped, `lo`..`hi` the confidence sequence its claim rests on (alpha {decision.rule.alpha:g} over the arms, "
                       "Bonferroni; valid whenever the study looked):", ""])
        ctx.table(table)
        ctx.fig(plot_decision(decision), "confirmation", "each arm's confidence sequence, round by round")
    ctx.step("confirmation", _confirm)


def section_best(ctx: ReportContext) -> None:
    """The ten best complete trials and the seed noise they are ranked against."""
    ctx.md.extend(["## Best trials", ""])

    def _best():
        done = ctx.done
        if done.empty:
            raise ValueError("no completed trials: nothing to rank, no Pareto fronts")
        best = done.sort_values("top1", ascending=False).head(10)
        ctx.table(best[["number", "top1", "epochs", "params", "macs", "latency_ms", "attention", "pattern"]])
        ctx.md.extend([_noise_words(done), ""])
    ctx.step("best trials", _best)


def section_pareto(ctx: ReportContext) -> None:
    """The Pareto fronts of top-1 against params, MACs and latency (one step each)."""
    from analysis import _plots as P

    ctx.md.extend(["## Pareto fronts (top-1 against cost)", "",
                   "Fronts of single trials' top-1: a trial on a front is not shown better than one off it unless their "
                   "difference exceeds the seed noise above.", ""])
    for cost, col in (("params", "params"), ("macs", "macs"), ("latency", "latency_ms")):
        def _pareto(cost=cost, col=col):
            done = ctx.done
            if done.empty:
                raise ValueError("no completed trials")
            if col not in done or done[col].isna().all():
                raise ValueError(f"no trial recorded {col}")
            front = pareto_front(ctx.frames, cost=cost)
            shown = [col]
            if cost == "latency":
                front = _latency_flags(front)
                shown = [col, "latency_iqr_ms", "latency_flag"]
            ctx.csv(front.drop(columns=["config"], errors="ignore"), f"pareto_{cost}")
            ctx.fig(P.plot_pareto(ctx.frames, cost=cost), f"pareto_{cost}", f"top-1 vs {cost}")
            ctx.md.extend([f"Front against {cost}: {len(front)} trials (`pareto_{cost}.csv`).", ""])
            if cost == "latency":
                ctx.md.extend([_latency_words(done), ""])
            ctx.table(front[["number", "top1", *shown, "attention", "pattern"]], max_rows=15)
        ctx.step(f"pareto {cost}", _pareto, note=f"_Front against {cost} not made: " + "{reason}._")


def section_hypervolume(ctx: ReportContext) -> None:
    """The hypervolume of the params front of this study and the compared ones (no note when not made)."""
    from analysis import _plots as P

    def _hv():
        fr = ctx.frames
        studies = {lab: o for lab, o in zip(ctx.labels, [fr, *ctx.others]) if o is fr or o.settings.get("kind") != TRAINED}
        if ctx.done.empty:
            raise ValueError("no completed trials")
        hv = front_hypervolumes(studies, cost="params")
        ctx.csv(hv, "hypervolume")
        ctx.md.extend(["Hypervolume of the params front (reference: 1.1 x the largest parameter count of any complete "
                       "trial in the compared studies, top-1 0; `hv_norm` is the fraction of [0, ref] x [0, 100]). It is a "
                       "summary of single runs, with no interval: a difference between studies is not tested here "
                       "(compare them over several seeds, as `benchmarks/pruning_efficiency.py` does):", ""])
        ctx.table(hv)
        if any(o.settings.get("kind") != TRAINED for o in ctx.others):
            ctx.fig(P.plot_fronts(studies, cost="params"), "fronts_params", "fronts of the compared studies")
    ctx.step("hypervolume", _hv, note=None)


def section_gain(ctx: ReportContext) -> None:
    """Attention's gain over ``none`` against its added cost."""
    from analysis import _plots as P

    ctx.md.extend(["## Cost of attention against its gain", ""])

    def _gain():
        g = attention_gain(ctx.frames)
        if g.empty:
            raise ValueError("no completed trials")
        if not (g["attention"] == "none").any():
            raise ValueError("no 'none' (no-attention) trials to measure gains against")
        ctx.csv(g, "attention_gain")
        ctx.fig(P.plot_attention_gain(g), "attention_gain", "gain over none against added params")
        ctx.md.extend([_gain_words(g), ""])
        ctx.table(g[["backbone", "width", "attention", "n", "mean_top1", "gain_mean", "gain_lo", "gain_hi", "gain_best", "added_params",
                     "added_macs", "added_latency_ms"]])
    ctx.step("attention gain", _gain)


def section_curves(ctx: ReportContext) -> None:
    """The learning curves (pruned trials dashed)."""
    from analysis import _plots as P

    ctx.md.extend(["## Learning curves", ""])

    def _curves():
        if ctx.frames.epochs.empty:
            raise ValueError("no per-epoch values recorded")
        ctx.fig(P.plot_learning_curves(ctx.frames), "learning_curves", "learning curves (pruned dashed)")
    ctx.step("learning curves", _curves)


def section_importance(ctx: ReportContext) -> None:
    """The parameters' importance and whether each is distinguishable from noise."""
    from analysis import _plots as P

    ctx.md.extend(["## Parameter importance", ""])

    def _imp():
        alpha = ctx.alpha
        imp = param_importances(ctx.frames, seed=ctx.seed, alpha=alpha)
        ctx.csv(imp, "importance")
        ctx.fig(P.plot_importance(imp), "importance", "parameter importance")
        ctx.md.extend([f"Response: {imp.attrs.get('response', 'top-1')}. Importance is normalized within each branch of the "
                       "conditional space (trials that sampled the same parameters); `significant`: the parameter's one-way ANOVA "
                       f"p-value is below {alpha:g} / (parameters in the branch). A parameter that is not significant ranks noise.", ""])
        if not imp["significant"].any():
            ctx.md.extend(["**No parameter's effect is distinguishable from noise at this budget: the ranking below is not a "
                           "finding.**", ""])
        ctx.table(imp)
    ctx.step("importance", _imp)


def section_kmap(ctx: ReportContext) -> None:
    """The ECA kernel size k against channels C: the fit, k* per C, the mappings."""
    from analysis import _plots as P

    ctx.md.extend(["## ECA kernel size k against channels C", ""])

    def _kmap():
        if ctx.finished.empty:
            raise ValueError("no completed or pruned trials")
        an = analyze_kmap(ctx.frames, alpha=ctx.alpha, seed=ctx.seed)
        e = an.effect
        render_markdown(answer_blocks(an), ctx.md, ctx.table)
        ctx.csv(e.table, "kmap_points")
        ctx.csv(e.effects, "kmap_effects")
        ctx.csv(an.mappings, "kmap_mappings")
        ctx.json(an.to_dict(), "kmap.json")
        ctx.fig(P.plot_kmap(an), "kmap", "k* per C with confidence sets")
        ctx.fig(P.plot_kmap_curves(an), "kmap_curves", "k effects per C with intervals")
    ctx.step("k-vs-C fit", _kmap)


def section_gamma_b(ctx: ReportContext) -> None:
    """Top-1 over psi's (gamma, b) plane, descriptive."""
    from analysis import _plots as P

    ctx.md.extend(["## Top-1 over the psi (gamma, b) plane", ""])

    def _gb():
        plane = gamma_b_plane(ctx.frames)
        if plane.empty:
            raise ValueError("no completed trial sampled psi's (gamma, b)")
        ctx.csv(plane, "gamma_b")
        ctx.fig(P.plot_gamma_b(plane, points=ctx.frames.complete), "gamma_b", "(gamma, b) plane")
        ctx.md.extend(["Descriptive (complete trials only, no model): `mean_lo`..`mean_hi` is each cell's 95 % t interval "
                       "(none for a cell of one trial); a cell is not shown better than another where their intervals overlap."
                       + (" Every cell holds one trial: no cell is shown better than another." if (plane["n"] < 2).all() else ""), ""])
        ctx.table(plane[["gamma", "b", "n", "mean_top1", "mean_lo", "mean_hi", "best_top1", "std_top1"]])
    ctx.step("gamma-b plane", _gb)


def section_fidelity(ctx: ReportContext) -> None:
    """The proxy's fidelity against each compared study or full-training result (only with some)."""
    from analysis import _plots as P

    if not ctx.others:
        return
    fr = ctx.frames
    ctx.md.extend(["## Proxy fidelity", ""])
    for o, lab in zip(ctx.others, ctx.labels[1:]):
        def _fid(o=o, lab=lab):
            trained = o.settings.get("kind") == TRAINED
            res = fidelity(fr, o, names=(fr.name, lab), key="net" if trained else "arch")
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in lab)
            ctx.csv(res.pairs, f"fidelity_{safe}")
            ctx.fig(P.plot_fidelity(res), f"fidelity_{safe}", f"fidelity against {lab}")
            what = "full-training runs, matched by network (backbone, width, attention per stage)" if trained else "study"
            rlo, rhi = res.spearman_ci
            ctx.md.extend([f"Against `{lab}` ({what}): {res.n} common configurations. **{res.verdict()}.** "
                           f"Spearman rho {res.spearman_rho:.3f} "
                           f"(95 % CI {rlo:.2f} to {rhi:.2f}, p={res.spearman_p:.2g}).", ""])
        ctx.step(f"fidelity vs {lab}", _fid, note=f"_Not made against {lab}: " + "{reason}._")


#: the report's sections, in the order they appear in ``report.md``
SECTIONS: tuple[Callable[[ReportContext], None], ...] = (
    section_header, section_confirmation, section_best, section_pareto, section_hypervolume, section_gain,
    section_curves, section_importance, section_kmap, section_gamma_b, section_fidelity,
)


def make_report(
    frames: Any,
    out_dir: str | Path | None = None,
    *,
    compare: Sequence[Any] = (),
    alpha: float = 0.05,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Write the report of a study (and comparisons with other studies) into ``out_dir``
    (default: the run folder's ``report/``). Returns the path of ``report.md``."""
    ctx = ReportContext.build(frames, out_dir, compare=compare, alpha=alpha, seed=seed, log=log)
    for section in SECTIONS:
        section(ctx)
    R = ctx.writer
    if R.skipped:
        R.md += ["## Not made", ""] + [f"- {w}: {m}" for w, m in R.skipped] + [""]
    path = ctx.out / "report.md"
    path.write_text("\n".join(R.md))
    R.log(f"[report] wrote {path} and {len(R.made)} files; {len(R.skipped)} items not made")
    return path


def build_parser() -> ArgumentParser:
    """The flags of ``python -m analysis.report``."""

    ap = ArgumentParser(prog="python -m analysis.report", description="Write plots, tables and report.md for a study.")
    ap.add_argument("run", nargs="?", help="run folder runs/NAME")
    ap.add_argument("--storage", help="storage URL (instead of a run folder)")
    ap.add_argument("--study", help="study name in the storage")
    ap.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                    help="other studies (run folders: fronts overlay and fidelity), or full-training results - study.train output "
                         "folders, a folder of them, or an export index.json whose configs were trained - for proxy fidelity")
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="level of the k-vs-C test, its confidence sets and the importance tests (default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output folder (default RUN/report)")
    ap.add_argument("--mlflow", metavar="URI", help="attach the report (every file written) to the study's MLflow run, as its "
                    "artifacts report/...: the tracking URI the study was run with (python -m study.run ... --mlflow URI)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")

    ap = build_parser()
    args = ap.parse_args(argv)
    if bool(args.run) == bool(args.storage):
        ap.error("give a run folder or --storage URL (not both)")
    if not 0 < args.alpha < 1:
        ap.error(f"--alpha: must be in (0, 1), got {args.alpha:g}")

    try:  # a study or a result that cannot be read is the user's input, not a bug
        fr = load(args.storage or args.run, args.study)
        others = [load(c) if is_study_folder(c) else load_trained(c) for c in args.compare]
    except ValueError as exc:
        raise as_usage_error(exc) from None
    mlflow_run = _mlflow_run(args.mlflow, fr) if args.mlflow is not None else None
    path = make_report(fr, args.out, compare=others, alpha=args.alpha, seed=args.seed,
                       log=lambda s: print(s, flush=True))
    if mlflow_run is not None:
        return _attach(args.mlflow, mlflow_run, path.parent)
    return 0


def _mlflow_run(uri: str, fr: Any) -> str:
    """``--mlflow``: the study's MLflow run (:mod:`study.tracking`), found before the report is made."""

    try:
        check_tracking_uri(uri, name="--mlflow")
        return find_study_run(uri, fr.name, fr.storage, flag="--mlflow")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _attach(uri: str, run_id: str, folder: Path) -> int:


    try:
        attach_folder(uri, run_id, folder, "report")
    except Exception as exc:  # the server went away while the report was made: the report stands
        print(f"warning: --mlflow: the report in {folder} was not attached to MLflow run {run_id} at {uri} "
              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})", file=sys.stderr)
        return 1
    print(f"[report] attached {folder} to MLflow run {run_id} at {uri} (artifacts report/)", flush=True)
    return 0
