"""Predicted seconds per gradient step at sizes a run did not measure, with a range from the model's own errors.

The models are the analysis's (fitted on the run's grid in the headline setting). The range
is the worst relative error the model made on cells it never saw: the run's off-grid cells
where it has them, else each grid cell predicted by a fit without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.analyse.model import CostModel
from bench.base.errors import BenchError

PREDICT_COLUMNS = [
    "implementation", "m", "n_x", "predicted_s", "low_s", "high_s", "iterations", "total_s", "total_low_s",
    "total_high_s", "error", "error_basis", "extrapolated",
]  # fmt: skip


def error_of(name: str, errors: pd.DataFrame) -> tuple[float, str]:
    """The relative error that bounds a prediction, and where it was measured."""
    row = errors[errors["implementation"] == name]
    if row.empty:
        return float("nan"), "none"
    r = row.iloc[0]
    if r["off_grid_cells"] and np.isfinite(r["off_grid_worst_error"]):
        return float(r["off_grid_worst_error"]), f"worst off-grid cell of {int(r['off_grid_cells'])}"
    if np.isfinite(r["held_out_worst_error"]):
        return float(r["held_out_worst_error"]), f"worst held-out cell of {int(r['cells'])}"
    return float(r["worst_rel_error"]), "worst fitted cell"


def predictions(
    models: dict[str, CostModel],
    errors: pd.DataFrame,
    cells: Sequence[tuple[int, int]],
    names: Sequence[str] | None = None,
    iterations: int = 1,
    largest: float = float("inf"),
) -> pd.DataFrame:
    """One row per implementation and cell: predicted seconds per step, a range, and for `iterations` steps.

    `largest` is the most elements the fit saw: beyond it a prediction is extrapolated (flagged).
    """
    wanted = list(names) if names else list(models)
    unknown = [n for n in wanted if n not in models]
    if unknown:
        raise BenchError(f"no model for {', '.join(unknown)} in this run (measured: {', '.join(models) or 'none'})")
    rows = []
    for name in wanted:
        error, basis = error_of(name, errors)
        spread = 1.0 + (error if np.isfinite(error) else 0.0)
        for m, n_x in cells:
            t = models[name].predict(m, n_x)
            low, high = t / spread, t * spread
            rows.append(
                {
                    "implementation": name, "m": m, "n_x": n_x, "predicted_s": t, "low_s": low, "high_s": high,
                    "iterations": iterations, "total_s": t * iterations, "total_low_s": low * iterations,
                    "total_high_s": high * iterations, "error": error, "error_basis": basis,
                    "extrapolated": m * n_x > largest,
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=PREDICT_COLUMNS)
