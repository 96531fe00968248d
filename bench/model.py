"""A three-term cost model per implementation: t(m, n_x) = overhead + m * per_example + m * n_x * per_element.

Fitted on measured cells with nonnegative coefficients and a robust (Huber) loss on the
relative error, so a few noisy or cache-boundary cells do not drag the whole fit. The
grid runner's cut-off uses it to predict a cell's time before running it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls

MIN_POINTS = 3
HUBER_DELTA = 0.1  # relative residuals beyond 10% count linearly, not quadratically


@dataclass(frozen=True)
class CostModel:
    """Seconds per call as a function of (m, n_x), and how well it fits the measured cells."""

    overhead_s: float
    per_example_s: float
    per_element_s: float
    points: int
    median_rel_error: float
    max_rel_error: float

    def predict(self, m: float, n_x: float) -> float:
        return self.overhead_s + m * self.per_example_s + m * n_x * self.per_element_s

    def predict_many(self, m: NDArray[np.float64], n_x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.overhead_s + m * self.per_example_s + m * n_x * self.per_element_s


def _features(m: np.ndarray, n_x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(m), m, m * n_x]).astype(float)


def fit_cost_model(m: ArrayLike, n_x: ArrayLike, seconds: ArrayLike) -> CostModel | None:
    """Robust nonnegative fit of the relative error; None with fewer than MIN_POINTS distinct cells."""
    m_arr = np.asarray(m, dtype=float)
    n_arr = np.asarray(n_x, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len({(a, b) for a, b in zip(m_arr, n_arr, strict=True)}) < MIN_POINTS:
        return None
    # Divide each row by its time: least squares then minimises relative, not absolute, error,
    # so microsecond cells count as much as second-long ones.
    A = _features(m_arr, n_arr) / t[:, None]
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    A_scaled = A / scale
    weights = np.ones_like(t)
    coef = np.zeros(3)
    for _ in range(30):  # iteratively reweighted least squares with Huber weights
        coef, _ = nnls(A_scaled * weights[:, None], weights)
        residual = A_scaled @ coef - 1.0
        new_weights = np.sqrt(np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(residual), 1e-12)))
        if np.allclose(new_weights, weights, atol=1e-6):
            break
        weights = new_weights
    overhead, per_example, per_element = coef / scale
    model = CostModel(float(overhead), float(per_example), float(per_element), len(t), 0.0, 0.0)
    rel = np.abs(model.predict_many(m_arr, n_arr) / t - 1.0)
    return CostModel(
        model.overhead_s,
        model.per_example_s,
        model.per_element_s,
        len(t),
        float(np.median(rel)),
        float(rel.max()),
    )


def predict_seconds(measured: Sequence[tuple[int, int, float]], m: int, n_x: int) -> float | None:
    """Predict one call at (m, n_x) from the same implementation's measured (m, n_x, seconds).

    With enough cells, the fitted model. With fewer, the largest measured cell that this one
    contains, scaled by the ratio of elements (time grows at least that fast once the
    per-element cost dominates, and no faster). None if nothing to go on.
    """
    if not measured:
        return None
    ms, ns, ts = zip(*measured, strict=True)
    model = fit_cost_model(ms, ns, ts)
    if model is not None:
        return model.predict(m, n_x)
    below = [(a, b, t) for a, b, t in measured if a <= m and b <= n_x]
    if not below:
        return None
    a, b, t = max(below, key=lambda c: c[0] * c[1])
    return t * (m * n_x) / (a * b)


def fit_models(frame: pd.DataFrame) -> dict[str, CostModel]:
    """One model per implementation, fitted on the ok rows of the given (single-setting) table."""
    models = {}
    ok = frame[frame["status"] == "ok"]
    for name, rows in ok.groupby("implementation", sort=False):
        model = fit_cost_model(rows["m"].to_numpy(), rows["n_x"].to_numpy(), rows["median_s"].to_numpy())
        if model is not None:
            models[str(name)] = model
    return models


def speedup_limit(slow: CostModel, fast: CostModel, n_x: np.ndarray) -> np.ndarray:
    """Model speedup of `fast` over `slow` at large m (per-call overhead amortised), against n_x."""
    num = slow.per_example_s + slow.per_element_s * n_x
    den = fast.per_example_s + fast.per_element_s * n_x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.inf)


def crossover_n_x(slow: CostModel, fast: CostModel, ratio: float) -> float | None:
    """Smallest n_x at which `fast` is `ratio` times faster than `slow` at large m (None: never, 0: always)."""
    # (a1 + a2 n) >= ratio (b1 + b2 n)  <=>  n (a2 - ratio b2) >= ratio b1 - a1
    lhs = slow.per_element_s - ratio * fast.per_element_s
    rhs = ratio * fast.per_example_s - slow.per_example_s
    if lhs <= 0:
        return 0.0 if rhs <= 0 else None
    return max(0.0, rhs / lhs)
