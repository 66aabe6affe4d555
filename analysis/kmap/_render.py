"""The k-vs-C answer rendered once: :func:`answer_blocks` says what the answer says, in order
(the verdict first, then the facts it rests on, the tables and the claims), and the CLI
(:func:`render_text`) and the report (:func:`render_markdown`) only lay the blocks out. Every
interval is labelled with its real level (1 - alpha)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from analysis.kmap._claims import mapping_lines
from analysis.kmap._mappings import REGRET_CAVEAT

if TYPE_CHECKING:
    from analysis.kmap._analysis import KmapAnalysis

__all__ = ["Block", "answer_blocks", "render_markdown", "render_text"]


@dataclass(frozen=True)
class Block:
    """One part of an answer: a ``verdict`` (``text``), a list of ``items``, or a ``table``
    under its ``text``."""

    kind: str
    text: str = ""
    items: tuple[str, ...] = ()
    table: pd.DataFrame | None = None


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):.4g} %"


def answer_blocks(an: KmapAnalysis) -> list[Block]:
    """What the k-vs-C answer says, in the order it says it."""
    e = an.effect
    conf = _level(e.alpha)
    facts = []
    noise = e.noise
    if noise.sigma is not None:
        facts.append(f"seed-to-seed noise: sigma_seed = {noise.sigma:.2f} points ({conf} CI {noise.ci[0]:.2f}-{noise.ci[1]:.2f}, "
                     f"{noise.df} df from {noise.n_configs} replicated configurations)")
        per = [f"{s} {n.sigma:.2f}" for s, n in e.noise_by_stratum.items() if n.sigma is not None]
        if len(per) > 1:
            facts.append(f"seed noise per stratum: {', '.join(per)}; "
                         + ("the model gives each stratum its own variance" if e.model.variance == "strata"
                            else "the model pools them (variance=pooled)"))
    if e.failures.get("p_value") is not None:
        facts.append(f"failures to train: {e.failures['text']}")
    facts += [f"C vs stage: {e.stage_test['text']}", f"additivity: {e.additivity['text']}"]
    support = ("supported by top-1" if e.top1_evidence else
               "NOT supported by the data in top-1" + ("; k matters through failures to train, above" if e.fails else ""))
    kstar = (f"k* per C ({support}; k_set: the k that no other k beats significantly, a per-C {conf} confidence set for every "
             f"best k at that C; k_set_joint: one that holds at every C at once with {conf}, max-t critical value {e.critical:.2f}):")
    maps = an.mappings.drop(columns=["description"])
    same = maps["widths"].replace("", pd.NA).dropna().nunique() <= 1
    if same:
        maps = maps.drop(columns=["widths"])
    where = f"on the same widths ({', '.join(an.scores.widths)})" if same else "on the widths in column widths"
    mtext = (f"mappings, by predicted top-1 lost per network against the best k per C (regret), {where}; vs_paper: top-1 minus "
             f"the paper's psi. Every interval is {conf}, simultaneous over one max-t family of {an.scores.family} contrasts "
             f"(every pair of k at every C, every mapping and every psi curve against the paper's psi; critical value "
             f"{an.critical:.2f}). {REGRET_CAVEAT}:")
    return [Block("verdict", e.verdict()), Block("items", items=tuple(facts)), Block("table", kstar, table=e.table),
            Block("table", mtext, table=maps), Block("items", items=tuple(mapping_lines(an))),
            Block("items", items=(*e.notes, *an.notes))]


def render_text(blocks: list[Block]) -> str:
    """Plain text (``python -m analysis.kmap``)."""
    lines: list[str] = []
    for b in blocks:
        if b.kind == "verdict":
            lines += [b.text, ""]
        elif b.kind == "table":
            with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
                lines += [b.text, b.table.to_string(index=False, float_format=lambda v: f"{v:.3g}"), ""]
        else:
            lines += list(b.items)
            if b.items:
                lines.append("")
    return "\n".join(lines).rstrip("\n")


def render_markdown(blocks: list[Block], md: list[str], table: Callable[[pd.DataFrame], None]) -> None:
    """Markdown (the report): appends to ``md``; ``table`` writes a table."""
    for b in blocks:
        if b.kind == "verdict":
            md += [f"**{b.text}**", ""]
        elif b.kind == "table":
            md += [b.text, ""]
            table(b.table)
        elif b.items:
            md += [f"- {x}" for x in b.items] + [""]
