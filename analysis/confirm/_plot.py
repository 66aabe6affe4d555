"""The decision's picture: each arm's confidence sequence round by round, the margin, and
where it stopped."""

from __future__ import annotations

import math
from typing import Any

from analysis.confirm._decision import Decision

__all__ = ["plot_decision"]

_COLOURS = {"beats": "tab:green", "loses": "tab:red", "equivalent": "tab:blue", "undecided": "tab:gray"}


def plot_decision(decision: Decision) -> Any:
    """One panel per tested arm: the mean paired difference and its confidence sequence after
    every round, the margin +-delta, 0, and the round that decided it."""
    from matplotlib.figure import Figure  # not pyplot: nothing keeps the figure once its caller drops it

    arms = [a for a in decision.arms if a.path]
    cols = max(1, min(3, len(arms)))
    rows = max(1, math.ceil(len(arms) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=False)
    delta = decision.rule.delta
    for ax, a in zip(axes.flat, arms):
        n = [p[0] for p in a.path]
        mean = [p[1] for p in a.path]
        lo = [max(p[2], -10 * delta - 5) for p in a.path]
        hi = [min(p[3], 10 * delta + 5) for p in a.path]
        colour = _COLOURS.get(a.claim, "tab:gray")
        ax.fill_between(n, lo, hi, color=colour, alpha=0.2, linewidth=0)
        ax.plot(n, mean, color=colour, linewidth=1.2)
        for y, style in ((0.0, "-"), (delta, "--"), (-delta, "--")):
            ax.axhline(y, color="black", linestyle=style, linewidth=0.7)
        if a.decided_at:
            ax.axvline(a.decided_at, color=colour, linestyle=":", linewidth=1)
        ax.set_title(f"{a.arm}: {a.claim}", fontsize=9)
        ax.set_xlabel("paired seeds (rounds)", fontsize=8)
        ax.set_ylabel("top-1 minus the paper's psi", fontsize=8)
        ax.set_ylim(-4 * delta - 1, 4 * delta + 1)
    for ax in list(axes.flat)[len(arms):]:
        ax.axis("off")
    fig.suptitle(f"confidence sequences at {100 * (1 - decision.rule.level):.4g} %, margin +-{delta:g}", fontsize=9)
    fig.tight_layout()
    return fig
