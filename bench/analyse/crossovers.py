"""Where one implementation overtakes another: the cost model's speedups against n_x, beside the measured cells.

One table for the static crossovers plot and the page's interactive one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analyse.model import CostModel, model_speedup
from bench.analyse.views import cell_items, grid_axes, implementation_order, speedups
from implementations import BASELINE

CURVE_POINTS = 60


def crossover_table(data: pd.DataFrame, models: dict[str, CostModel]) -> pd.DataFrame:
    """The crossovers plot's numbers: model speedups over the baseline against n_x at each grid m, and measured cells.

    `data` is the headline slice the `models` were fitted on.
    """
    base = models.get(BASELINE)
    speed = speedups(data)
    names = [n for n in implementation_order(data) if n != BASELINE and n in models and n in speed]
    if base is None or not names:
        return pd.DataFrame(columns=["implementation", "m", "n_x", "speedup", "source"])
    ms, _ = grid_axes(data)
    n_grid = np.geomspace(1, max(float(data["n_x"].max()), 2.0), CURVE_POINTS)
    rows = []
    for name in names:
        for m in ms:
            for n_x, value in zip(n_grid, model_speedup(base, models[name], m, n_grid), strict=True):
                rows.append(
                    {"implementation": name, "m": m, "n_x": float(n_x), "speedup": float(value), "source": "model"}
                )
        for m, n_x, value in cell_items(speed[name].dropna()):
            if m in ms:
                rows.append({"implementation": name, "m": m, "n_x": n_x, "speedup": value, "source": "measured"})
    return pd.DataFrame(rows)
