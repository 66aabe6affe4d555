"""The local runner: the study in-process with plain Optuna, one trial at a time.

Same semantics as the Ray runner (:mod:`runners._ray_tune`): the trial is
``study.trainer.train(config, reporter)``; the reporter hands each epoch to the
:class:`~runners._bridge.StudyBridge`, which reports the validation top-1 as the
intermediate value and asks the pruner; pruning stops the trial after that epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runners._bridge import LiveTrial, StudyBridge
from study.metrics import EpochMetrics, Reporter
from study.record import error_text

__all__ = ["run_local", "BridgeReporter"]


class BridgeReporter(Reporter):
    """The trainer's reporter for one trial: costs and epochs go to the bridge; ``report``
    returns True (stop after this epoch) when the pruner says prune."""

    def __init__(self, bridge: StudyBridge, live: LiveTrial):
        self.bridge = bridge
        self.live = live

    def start(self, costs: Any, stages: Sequence[Mapping[str, Any]]) -> None:
        self.bridge.start(self.live, costs, stages)

    def report(self, metrics: EpochMetrics) -> bool:
        return self.bridge.report(self.live, metrics.to_dict())


def run_local(bridge: StudyBridge, *, train: Any = None, load_proxy: Any = None) -> None:
    """Run trials one after another until :meth:`StudyBridge.done`. ``train`` and
    ``load_proxy`` default to :func:`study.trainer.train` and :func:`study.data.load_proxy`
    (a simulated study, :func:`runners.simulate_study`, passes its own)."""
    import torch

    if train is None:
        from study.trainer import train
    if load_proxy is None:
        from study.data import load_proxy

    settings = bridge.settings
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        _loop(bridge, train, load_proxy)
    finally:
        torch.set_num_threads(threads)


def _loop(bridge: StudyBridge, train: Any, load_proxy: Any) -> None:
    settings = bridge.settings
    data, data_spec = None, None  # the trials of a study share one proxy: load it once
    while bridge.needs_more():
        live = bridge.ask()
        if live is None:
            continue
        try:
            if data is None or data_spec != live.config.proxy:
                data, data_spec = load_proxy(live.config.proxy), live.config.proxy
            result = train(live.config, BridgeReporter(bridge, live), device=settings.device, data=data)
        except KeyboardInterrupt:
            bridge.interrupt()
            raise
        except Exception as exc:  # the trial fails, the study goes on
            bridge.finish(live, error=error_text(exc))
            continue
        if result.outcome == "diverged":
            bridge.finish(live, diverged=f"diverged: {result.message}" if result.message else "diverged: the loss became NaN or inf")
        else:
            bridge.finish(live)
