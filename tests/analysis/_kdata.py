"""Null k-vs-C studies as KData, for tests that need a batch of them (hundreds of studies' worth
of bookkeeping would take minutes)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.kmap import KData

__all__ = ["null_kdata"]


def null_kdata(rng: np.random.Generator, n_configs: int = 100, power: float = 1.0) -> KData:
    """One null study as KData: ResNet-18 C = 64 x 2^s x width, k uniform over {1,...,9} odd, 2
    runs per configuration with noise 0.5 / width ** power points (power 0: the same at every width)."""
    widths = (0.25, 0.375, 0.5, 0.75, 1.0)
    rows, runs = [], []
    for c in range(n_configs):
        w = widths[rng.integers(len(widths))]
        row = {"key": f"c{c}", "backbone": "resnet18", "width": w, "stratum": f"resnet18@{w:g}"}
        for s in range(4):
            row[f"kind{s}"] = "eca"
            row[f"C{s}"] = float(int(64 * 2**s * w))
            row[f"k{s}"] = float(rng.choice([1, 3, 5, 7, 9]))
        ys = 60 + 3 * math.log2(w) + rng.normal(0, 0.5 / w**power, 2)
        for r, y in enumerate(ys):
            runs.append({"number": 2 * c + r, "key": row["key"], "y": float(y), "state": "complete", "stratum": row["stratum"]})
        rows.append({**row, "y": float(ys.mean()), "n": 2})
    return KData(configs=pd.DataFrame(rows), trials=pd.DataFrame(runs), num_stages=4, kind="eca", by="C", epoch=1, budget_epochs=1)
