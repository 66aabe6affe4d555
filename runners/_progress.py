"""Live progress lines of a study, as the driver receives its events: one line when a trial
starts, one per epoch as it reaches the driver (``trial 17 epoch 1/2: top1 38.20 top5 80.00
val_loss 1.234 (lr 0.05)``), and one when it ends, with the running/complete/pruned/failed
counts and the best top-1 so far. ``brief`` (``--quiet``) keeps one line per trial, its end."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import IO, Any

from runners._observer import StudyObserver
from study.record import error_line

__all__ = ["Progress", "format_params", "format_epoch"]


def format_params(params: dict[str, Any], limit: int = 8) -> str:
    items = []
    for k, v in list(params.items())[:limit]:
        items.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    if len(params) > limit:
        items.append("...")
    return " ".join(items)


def _number(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "nan" if isinstance(v, float) else "-"


def format_epoch(number: int, metrics: Mapping[str, Any], epochs: int | None = None) -> str:
    """``trial 17 epoch 1/2: top1 38.20 top5 80.00 val_loss 1.234 (lr 0.05)`` for one recorded epoch."""
    of = f"/{epochs}" if epochs else ""
    return (f"trial {number} epoch {metrics.get('epoch')}{of}: top1 {_number(metrics.get('top1'), '.2f')} "
            f"top5 {_number(metrics.get('top5'), '.2f')} val_loss {_number(metrics.get('val_loss'), '.3f')} "
            f"(lr {_number(metrics.get('lr'), '.3g')})")


class Progress(StudyObserver):
    """Prints progress lines to ``stream`` (stdout by default), a :class:`StudyObserver` of
    the bridge. ``quiet`` prints nothing; ``brief`` prints one line per trial (when it ends,
    or fails before training) and no other line."""

    def __init__(self, stream: IO[str] | None = None, *, quiet: bool = False, brief: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.brief = brief

    def line(self, text: str, bridge: Any | None = None) -> None:
        """A progress line (not shown when ``quiet`` or ``brief``)."""
        if not self.brief:
            self._print(text, bridge)

    def _print(self, text: str, bridge: Any | None) -> None:
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

    def epoch(self, live: Any, metrics: Mapping[str, Any], bridge: Any) -> None:
        self.line(format_epoch(live.number, metrics, live.config.recipe.epochs), bridge)

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
            text = error_line(live.error or live.diverged)
            what = f"failed after {took}: {text[:160] if text else 'no error text'}"
        self._print(f"trial {live.number} {what} | {self._status(bridge)}", bridge)

    def trial_failed(self, trial: Any, error: str, bridge: Any) -> None:
        self._print(f"trial {trial.number} failed before training: {error[:160]} | {self._status(bridge)}", bridge)
