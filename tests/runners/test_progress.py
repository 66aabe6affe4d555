"""Progress inside trials (issue 20 item 4): a line per epoch as it reaches the driver, and
``brief`` (``--quiet``) keeps one line per trial; through the real bookkeeping (bridge,
storage, local runner) with a planted trainer."""

from __future__ import annotations

import io
import math
import re

import optuna

from runners import Progress, StudyBridge, open_study, run_local
from runners._progress import format_epoch
from runners._simulate import Planted
from search_spaces import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCH_LINE = re.compile(r"^\[ *\d+:\d\d\] trial (\d+) epoch (\d)/2: top1 \d+\.\d\d top5 \d+\.\d\d val_loss -?\d+\.\d{3} \(lr \S+\)$")


def _run(settings, progress):
    space = get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings, progress=progress)
    bridge.enqueue_references()
    bridge.study_started()
    run_local(bridge, train=Planted(effect=1.0).train, load_proxy=lambda proxy: None)
    bridge.study_finished()
    return bridge


def test_each_epoch_is_a_line_as_it_arrives(tiny_settings):
    out = io.StringIO()
    _run(tiny_settings(trials=2), Progress(out))
    lines = out.getvalue().splitlines()
    epochs = [EPOCH_LINE.match(line) for line in lines if " epoch " in line]
    assert [(int(m[1]), int(m[2])) for m in epochs if m] == [(0, 1), (0, 2), (1, 1), (1, 2)], lines
    # started, its epochs, then its end: in the order the driver saw them
    kinds = [re.sub(r"^\[ *\d+:\d\d\] trial \d+ (\w+).*", r"\1", line) for line in lines if "] trial " in line]
    assert kinds == ["started", "epoch", "epoch", "complete"] * 2, lines


def test_brief_keeps_one_line_per_trial(tiny_settings):
    out = io.StringIO()
    _run(tiny_settings(trials=3), Progress(out, brief=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(re.search(rf"trial {n} complete: top1 \d+\.\d\d in 2 epochs \|", line) for n, line in enumerate(lines)), lines
    quiet = io.StringIO()
    _run(tiny_settings(name="q", trials=1, storage=tiny_settings().storage.replace("study.db", "q.db")), Progress(quiet, quiet=True))
    assert quiet.getvalue() == ""


def test_an_epoch_line_says_what_it_lacks():
    line = format_epoch(3, {"epoch": 2, "top1": math.nan, "top5": 51.234, "val_loss": 1.23456, "lr": 0.05}, 4)
    assert line == "trial 3 epoch 2/4: top1 nan top5 51.23 val_loss 1.235 (lr 0.05)"
