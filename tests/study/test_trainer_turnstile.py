"""The trainer and the node's turnstile: its loops hold the shared lock and pass the gate
every step, a probe elsewhere on the node stops them, and its costs carry the probe's figures."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import torch

from study.config import ArchSpec, ProxySpec, Recipe, TrialConfig
from study.data import load_proxy
from study.metrics import Reporter
from study.trainer import train
from study.turnstile import ENV, Turnstile

PROXY = ProxySpec(num_classes=10, resolution=16, images_per_class=20, val_per_class=10)
CONFIG = TrialConfig(arch=ArchSpec.uniform("resnet18", "eca", stem="lowres", width=0.25, num_classes=10),
                     recipe=Recipe(epochs=2, batch_size=16, lr=0.1, warmup_epochs=0), proxy=PROXY, seed=0)


class Spy(Turnstile):
    """The node's turnstile, counting the loops that hold it and their gate passes."""

    def __init__(self, folder):
        super().__init__(folder)
        self.gates: list = []
        self.steps = 0

    @contextlib.contextmanager
    def computing(self, **kw):
        with super().computing(**kw) as gate:
            self.gates.append(gate)
            step = gate.step

            def counted():
                self.steps += 1
                step()
            gate.step = counted
            yield gate


class ProbeAfterEpoch1(Reporter):
    """At epoch 1's report, a probe in another thread has the node for 0.5 s."""

    def __init__(self, folder):
        self.folder, self.costs, self.probe = folder, None, None

    def start(self, costs, stages):
        self.costs = costs

    def report(self, metrics):
        if metrics.epoch == 1:
            entered = threading.Event()

            def probe():
                with Turnstile(self.folder).alone(wait_s=30) as alone:
                    assert alone
                    entered.set()
                    time.sleep(0.5)
            self.probe = threading.Thread(target=probe)
            self.probe.start()
            assert entered.wait(30)
        return False


def test_the_training_loops_pass_the_gate_and_wait_for_a_probe(tmp_path, monkeypatch):
    import study.turnstile

    folder = tmp_path / "node"
    spy = Spy(folder)
    monkeypatch.setattr(study.turnstile, "node_turnstile", lambda: spy)
    data = load_proxy(PROXY)
    reporter = ProbeAfterEpoch1(folder)
    result = train(CONFIG, reporter, device="cpu", data=data)
    reporter.probe.join(30)
    assert result.outcome == "complete"
    train_steps = len(data.train) // 16  # full batches
    val_steps = -(-len(data.val) // 32)
    # the data's check (and loading, when not given), then per epoch training and evaluation
    assert len(spy.gates) == 1 + 2 * 2 and spy.steps == 2 * (train_steps + val_steps)
    assert all(g.held for g in spy.gates)
    assert sum(g.waited_s for g in spy.gates[3:]) >= 0.4  # epoch 2 waited for the probe
    costs = reporter.costs
    assert costs.latency_ms > 0 and costs.latency_iqr_ms >= 0 and costs.latency_exclusive is True
    assert (costs.latency_device, costs.latency_threads) == ("cpu", torch.get_num_threads()) and len(costs.arch_digest) == 16


def test_a_data_parallel_rank_does_not_take_part(monkeypatch):
    from study.trainer._setup import trial_turnstile as _turnstile

    monkeypatch.delenv(ENV, raising=False)

    class Rank:
        world_size = 2

    class Alone:
        world_size = 1

    assert not _turnstile(Rank()).enabled and _turnstile(Alone()).enabled


@pytest.mark.parametrize("value", ["off", "OFF"])
def test_the_turnstile_can_be_turned_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    result = train(CONFIG, None, device="cpu", data=load_proxy(PROXY))
    assert result.costs.latency_exclusive is None and result.costs.latency_ms > 0
