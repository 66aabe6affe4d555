"""Small studies written through Optuna's public API with the attributes of study.record,
as the runners record them: ECA trials whose true preferred k follows psi(C; gamma, b),
psi-(gamma, b) trials, SE and no-attention trials, pruned and failed trials."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from study import record
from study.attention import psi
from study.config import ArchSpec, AttentionSpec, ProxySpec, Recipe, TrialConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

BLOCKS = (3, 4, 6, 3)  # resnet50
KS = (1, 3, 5, 7, 9)
EPOCHS = 4


def _stages(width: float, specs: Sequence[dict[str, Any]], truth: tuple[float, float, str]) -> list[dict[str, Any]]:
    out = []
    for i, sp in enumerate(specs):
        planes = int(64 * 2**i * width)
        C = planes * 4
        d = {"stage": i, "channels": C, "planes": planes, "blocks": BLOCKS[i], "kind": sp["kind"]}
        params = {k: v for k, v in sp.items() if k != "kind"}
        if sp["kind"] == "eca":
            if "k" not in params:
                params = {"gamma": params.get("gamma", 2), "b": params.get("b", 1)}
                params["k"] = psi(C, params["gamma"], params["b"])
        d.update(params)
        out.append(d)
    return out


def _true_top1(width: float, stages: list[dict[str, Any]], truth: tuple[float, float, str], lam: float) -> float:
    g, b, rule = truth
    acc = 62.0 + 3.0 * math.log2(width)
    for st in stages:
        if st["kind"] == "eca":
            acc += 0.4 - lam * (st["k"] - psi(st["channels"], g, b, rule)) ** 2
        elif st["kind"] == "se":
            acc += 0.3 - 0.02 * st["r"]
    return acc


def _costs(width: float, stages: list[dict[str, Any]], res: int, rng: np.random.Generator) -> dict[str, Any]:
    att = 0
    for st in stages:
        if st["kind"] == "eca":
            att += st["blocks"] * st["k"]
        elif st["kind"] == "se":
            att += st["blocks"] * (2 * st["channels"] * (st["channels"] // st["r"]) + st["channels"] + st["channels"] // st["r"])
    params = int(23_500_000 * width**2) + att
    macs_224 = int(4_100_000_000 * width**2) + 50 * att
    return {"params": params, "macs": int(macs_224 * (res / 224) ** 2), "macs_224": macs_224,
            "latency_ms": float(1.0 + 10 * width**2 + 0.3 * sum(s["kind"] != "none" for s in stages) + rng.uniform(0, 0.05)),
            "resolution": res, "attention_params": att}


def build_study(
    run_dir: Path,
    *,
    name: str = "demo",
    n_eca: int = 120,
    n_psi: int = 24,
    n_se: int = 12,
    n_none: int = 8,
    n_pruned: int = 10,
    n_failed: int = 3,
    truth: tuple[float, float, str] = (2.0, 1.0, "paper"),
    widths: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    noise: float = 0.1,
    lam: float = 0.3,
    seed: int = 0,
    noise_seed: int | None = None,
    transform=None,
    objectives: Sequence[str] = ("top1",),
    space: str = "eca_kmap",
) -> Path:
    """Write ``run_dir/study.db`` and ``run_dir/settings.json``; return ``run_dir``.

    ``seed`` draws the configurations, ``noise_seed`` (default: seed) the noise, so two
    studies with one seed hold the same configurations. ``transform(top1) -> top1`` maps
    the true accuracy (e.g. another fidelity).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{run_dir / 'study.db'}"
    directions = [record.OBJECTIVES[o][1] for o in objectives]
    study = optuna.create_study(storage=url, study_name=name, directions=directions)
    (run_dir / "settings.json").write_text(json.dumps({"name": name, "storage": url, "space": space, "objectives": list(objectives)}))
    rng = np.random.default_rng(seed)
    nrng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    plan = (["eca"] * n_eca + ["psi"] * n_psi + ["se"] * n_se + ["none"] * n_none + ["pruned"] * n_pruned + ["failed"] * n_failed)
    dists: dict[str, Any] = {"width": CategoricalDistribution(list(widths)),
                             "attention": CategoricalDistribution(["eca", "psi", "se", "none"])}
    for i in range(4):
        dists[f"stage{i}_k"] = IntDistribution(1, 9, step=2)
    dists["se_r"] = CategoricalDistribution([4, 8, 16])
    dists["gamma"] = CategoricalDistribution([1.5, 2.0, 2.5, 3.0])
    dists["b"] = CategoricalDistribution([0.0, 1.0, 2.0])
    for n, what in enumerate(plan):
        width = float(widths[rng.integers(len(widths))])
        kind = "eca" if what in ("eca", "pruned", "failed") else what
        params: dict[str, Any] = {"width": width, "attention": kind}
        if kind == "eca":
            ks = [int(rng.choice(KS)) for _ in range(4)]
            specs = [{"kind": "eca", "k": k} for k in ks]
            params.update({f"stage{i}_k": k for i, k in enumerate(ks)})
        elif kind == "psi":
            g, b = float(rng.choice([1.5, 2.0, 2.5, 3.0])), float(rng.choice([0.0, 1.0, 2.0]))
            specs = [{"kind": "eca", "gamma": g, "b": b} for _ in range(4)]
            params.update({"gamma": g, "b": b})
        elif kind == "se":
            r = int(rng.choice([4, 8, 16]))
            specs = [{"kind": "se", "r": r} for _ in range(4)]
            params["se_r"] = r
        else:
            specs = [{"kind": "none"} for _ in range(4)]
        arch = ArchSpec(backbone="resnet50", stages=tuple(AttentionSpec.from_dict(s) for s in specs), stem="lowres", width=width,
                        num_classes=100)
        config = TrialConfig(arch=arch, recipe=Recipe(epochs=EPOCHS, batch_size=64, lr=0.1), proxy=ProxySpec(resolution=32), seed=n)
        stages = _stages(width, specs, truth)
        costs = _costs(width, stages, 32, rng)
        true = _true_top1(width, stages, truth, lam)
        if transform is not None:
            true = transform(true)
        run = {"pruned": int(rng.integers(1, 3)), "failed": 0}.get(what, EPOCHS)
        hist = []
        for e in range(1, run + 1):
            top1 = true * (1 - 0.5**e) / (1 - 0.5**EPOCHS) + float(nrng.normal(0, noise)) - (0.2 if what == "pruned" else 0)
            hist.append({"epoch": e, "top1": top1, "top5": min(100.0, top1 + 20), "val_loss": 5 - top1 / 25, "train_loss": 5 - top1 / 24,
                         "lr": 0.1 * 0.5 * (1 + math.cos(math.pi * e / EPOCHS)), "epoch_time_s": 1.0, "wall_time_s": float(e),
                             "images_per_s": 1000.0})
        attrs = {record.CONFIG: config.to_dict(), record.STAGES: stages, record.COSTS: costs, record.HISTORY: hist}
        state = optuna.trial.TrialState.COMPLETE
        values = None
        if what == "pruned":
            state, attrs[record.OUTCOME] = optuna.trial.TrialState.PRUNED, record.OUTCOME_PRUNED
        elif what == "failed":
            state, attrs[record.OUTCOME] = optuna.trial.TrialState.FAIL, record.OUTCOME_FAILED
            attrs[record.ERROR] = "RuntimeError: out of memory"
        else:
            attrs[record.OUTCOME] = record.OUTCOME_COMPLETE
            best = max(h["top1"] for h in hist)
            values = [best if o == "top1" else float(costs[record.OBJECTIVES[o][0]]) for o in objectives]
        if n == 0:
            attrs[record.REFERENCE] = "first"
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values, params=params, distributions={k: dists[k] for k in params},
            user_attrs=attrs, intermediate_values={h["epoch"]: h["top1"] for h in hist},
        ))
    return run_dir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One shared study (read-only for every test): runs/demo."""
    return build_study(tmp_path_factory.mktemp("runs") / "demo")


@pytest.fixture
def make_study(tmp_path):
    """``make_study(name, **build_study options)`` -> a new run folder under tmp_path."""

    def make(name: str = "s", **kw: Any) -> Path:
        return build_study(tmp_path / name, name=name, **kw)

    return make


@pytest.fixture(scope="session")
def make_real_study(tmp_path_factory):
    """``make_real_study(archs, name=...)`` -> a run folder whose trials are real models."""

    def make(archs: Sequence[ArchSpec], name: str = "real", **kw: Any) -> Path:
        return build_real_study(tmp_path_factory.mktemp(name) / name, archs, name=name, **kw)

    return make


def build_real_study(run_dir: Path, archs: Sequence[ArchSpec], *, name: str = "real", seed: int = 0) -> Path:
    """A study whose trials carry what the runner records for real models: stages from
    ``study.models.describe_stages`` and costs measured on ``study.models.build_model``."""
    from study.costs import count_attention_params, count_macs, count_params
    from study.models import build_model, describe_stages

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    (run_dir / "settings.json").write_text(json.dumps({"name": name, "storage": url, "space": "test", "objectives": ["top1"]}))
    rng = np.random.default_rng(seed)
    for n, arch in enumerate(archs):
        cfg = TrialConfig(arch=arch, recipe=Recipe(epochs=2, batch_size=32), proxy=ProxySpec(resolution=16, num_classes=arch.num_classes),
                          seed=n)
        model = build_model(arch)
        costs = {"params": count_params(model), "macs": count_macs(model, 16), "macs_224": None, "latency_ms": None,
                 "resolution": 16, "attention_params": count_attention_params(model)}
        hist = [{"epoch": e, "top1": float(10 + 5 * e + rng.normal()), "top5": 50.0, "val_loss": 3.0, "train_loss": 3.0, "lr": 0.1,
                 "epoch_time_s": 0.1, "wall_time_s": 0.1 * e, "images_per_s": 100.0} for e in (1, 2)]
        attrs = {record.CONFIG: cfg.to_dict(), record.STAGES: [s.to_dict() for s in describe_stages(arch)], record.COSTS: costs,
                 record.HISTORY: hist, record.OUTCOME: record.OUTCOME_COMPLETE}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=max(h["top1"] for h in hist), params={"i": n},
            distributions={"i": IntDistribution(0, len(archs))}, user_attrs=attrs,
                intermediate_values={h["epoch"]: h["top1"] for h in hist}))
    return run_dir
