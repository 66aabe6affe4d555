"""Live progress lines of a study: one line when a trial starts and one when it ends, with
the running/complete/pruned/failed counts and the best top-1 so far."""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["Progress", "format_params"]


def format_params(params: dict[str, Any], limit: int = 8) -> str:
    items = []
    for k, v in list(params.items())[:limit]:
        items.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    if len(params) > limit:
        items.append("...")
    return " ".join(items)


class Progress:
    """Prints progress lines to ``stream`` (stdout by default); ``quiet`` prints nothing."""

    def __init__(self, stream: IO[str] | None = None, *, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet

    def line(self, text: str, bridge: Any | None = None) -> None:
        if self.quiet:
            return
        stamp = ""
        if bridge is not None:
            s = int(bridge.elapsed())
            stamp = f"[{s // 60:3d}:{s % 60:02d}] "
        print(stamp + text, file=self.stream or sys.stdout, flush=True)

    def _status(self, bridge: Any) -> str:
        c = bridge.counts()
        text = f"running {c['running']}, complete {c['complete']}, pruned {c['pruned']}, failed {c['failed']}"
        best = bridge.best()
        if best and not bridge.settings.multi_objective:
            b = best[0]
            text += f" | best top1 {b.value:.2f} (trial {b.number})"
        elif best:
            text += f" | Pareto front: {len(best)} trials"
        return text

    def trial_started(self, live: Any, bridge: Any) -> None:
        ref = live.trial.user_attrs.get("reference")
        tag = f" (reference {ref})" if ref else ""
        attempt = live.trial.user_attrs.get("attempt", 1)
        if attempt and attempt > 1:
            tag += f" (attempt {attempt})"
        self.line(f"trial {live.number} started{tag}: {format_params(live.trial.params)}", bridge)

    def trial_finished(self, live: Any, bridge: Any) -> None:
        from optuna.trial import TrialState

        took = f"{live.epochs} epoch{'s' if live.epochs != 1 else ''}"
        best = live.best_top1
        top1 = f"top1 {best:.2f}" if best is not None else "no top1"
        if live.state == TrialState.COMPLETE:
            what = f"complete: {top1} in {took}"
        elif live.state == TrialState.PRUNED:
            what = f"pruned after {took}: {top1}"
        else:
            text = (live.error or live.diverged or "").strip().splitlines()
            what = f"failed after {took}: {text[-1][:160] if text else 'no error text'}"
        self.line(f"trial {live.number} {what} | {self._status(bridge)}", bridge)

    def trial_failed(self, number: int, error: str, bridge: Any) -> None:
        self.line(f"trial {number} failed before training: {error[:160]} | {self._status(bridge)}", bridge)
