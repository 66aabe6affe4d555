"""What common random numbers buy a paired comparison: the spread of a paired difference between
two attentions trained from one seed, with and without common random numbers, against
sqrt(2) x the spread of a single run (what unpaired runs would give).

Two arms, the paper's psi and k = 3 everywhere (ECA in every stage of ResNet-18, lowres stem),
each trained from ``--seeds`` seeds:

- **with** common random numbers (the harness's way, :mod:`study.models`): one seed gives both
  arms the same backbone weights (attention modules draw from a stream of their own), data
  order and augmentation;
- **without**: one seed gives both arms their data order and augmentation, but each arm's
  backbone is initialised from a seed of its own (``TrialConfig.init_seed``), as before the
  harness drew attention parameters from a stream of their own.

on two proxies: the built-in synthetic one, and a small folder of real JPEG files this script
writes (classes of smooth colour prototypes, shifted and noised) and prepares into a cache.
It prints per proxy the single-run spread (pooled over the arms), the paired differences'
spread with and without, each as a ratio to sqrt(2) x the single-run spread (with a 95 %
percentile-bootstrap interval over the seeds), and the correlation between the arms.

    python benchmarks/crn_pairing.py --seeds 8 --result
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _images import write_class_folder
from _results import write_result


def _arms(width: float) -> dict[str, list[int]]:
    from study.catalogue import psi, stage_plans

    return {"paper_psi": [psi(p.channels, 2.0, 1.0) for p in stage_plans("resnet18", width, "lowres")], "k3": [3, 3, 3, 3]}


def _top1(config: Any, data: Any) -> float:
    from study.trainer import train

    result = train(config, None, device="cpu", data=data)
    return float(result.history[-1].top1)


def measure(proxy: Any, seeds: int, width: float, epochs: int) -> dict[str, Any]:
    import numpy as np

    from study.config import ArchSpec, AttentionSpec, Recipe, TrialConfig
    from study.data import load_proxy

    data = load_proxy(proxy)
    recipe = Recipe(epochs=epochs, batch_size=64, lr=0.05, warmup_epochs=0.5)
    runs: dict[str, dict[str, list[float]]] = {"with": {}, "without": {}}
    for s in range(seeds):
        for j, (arm, ks) in enumerate(_arms(width).items()):
            arch = ArchSpec(backbone="resnet18", stem="lowres", width=width, num_classes=proxy.num_classes,
                            stages=tuple(AttentionSpec.of("eca", k=k) for k in ks))
            base = TrialConfig(arch=arch, recipe=recipe, proxy=proxy, seed=1000 + s)
            runs["with"].setdefault(arm, []).append(_top1(base, data))
            runs["without"].setdefault(arm, []).append(_top1(base.replace(init_seed=500_000 + 100 * s + j), data))
    out: dict[str, Any] = {}
    for mode, by_arm in runs.items():
        a, b = (np.array(v) for v in by_arm.values())
        single, pair = _spreads(a, b)
        # the ratio's 95 % interval: a percentile bootstrap over the seeds (each seed's two runs kept together)
        draws = np.random.default_rng(0).integers(0, len(a), size=(2000, len(a)))
        boot = [p / (math.sqrt(2) * s) for s, p in (_spreads(a[i], b[i]) for i in draws) if s > 0]
        out[mode] = {"single_sd": single, "pair_sd": pair, "ratio": pair / (math.sqrt(2) * single) if single > 0 else math.nan,
                     "ratio_ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))] if boot else [math.nan, math.nan],
                     "correlation": float(np.corrcoef(a, b)[0, 1]), "top1": {k: list(map(float, v)) for k, v in by_arm.items()}}
    return out


def _spreads(a: Any, b: Any) -> tuple[float, float]:
    """The single-run spread (pooled over the two arms) and the paired difference's."""
    return math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2), float((a - b).std(ddof=1))


def _ratio(f: dict[str, Any]) -> str:
    lo, hi = f["ratio_ci"]
    return f"{f['ratio']:.2f} ({lo:.2f}-{hi:.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--result", action="store_true", help="write benchmarks/results/crn_pairing.json (the docs table)")
    a = p.parse_args()
    import torch

    from study.config import ProxySpec
    from study.data import prepare

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    proxies = {"synthetic": ProxySpec(source="synthetic", resolution=32, num_classes=10, images_per_class=100, val_per_class=50)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_class_folder(root, classes=10, train=100, val=50, size=48, seed=3)
        prepare("imagefolder", root, Path(tmp) / "cache", resolution=32, workers=1, progress=False)
        proxies["jpeg folder"] = ProxySpec(source="cache", data=str(Path(tmp) / "cache"), resolution=32, num_classes=10)
        found = {name: measure(proxy, a.seeds, a.width, a.epochs) for name, proxy in proxies.items()}
    wall = time.perf_counter() - t0
    print(f"common random numbers: ResNet-18 lowres x{a.width:g}, the paper's psi against k=3, {a.seeds} seeds, {a.epochs} epochs at 32 px")
    for name, f in found.items():
        w, wo = f["with"], f["without"]
        print(f"[{name}] single runs spread {w['single_sd']:.2f} / {wo['single_sd']:.2f} points (with / without); paired difference "
              f"{w['pair_sd']:.2f} with common random numbers ({_ratio(w)} x sqrt(2) x single, correlation "
              f"{w['correlation']:+.2f}), {wo['pair_sd']:.2f} without ({_ratio(wo)}, correlation {wo['correlation']:+.2f})")
    print(f"time: {wall:.0f} s")
    if a.result:
        headline: dict[str, Any] = {"seeds": a.seeds}
        for name, f in found.items():
            headline[f"{name}: paired sd / (sqrt 2 x single), with / without"] = f"{_ratio(f['with'])} / {_ratio(f['without'])}"
            headline[f"{name}: correlation of the arms, with / without"] = (f"{f['with']['correlation']:+.2f} / "
                                                                             f"{f['without']['correlation']:+.2f}")
        headline["wall (s)"] = round(wall)
        write_result("crn_pairing", goal="a paired difference's spread below sqrt(2) x a single run's, and lower with common random "
                                         "numbers than without", headline=headline, detail={"found": found, "wall_s": wall})


if __name__ == "__main__":
    main()
