"""An independent reference for one gradient step, in arbitrary precision (mpmath).

It uses the textbook formulas, at 50 significant digits and with mpmath's unbounded
exponent, so a = 1 / (1 + exp(-z)) neither overflows nor rounds to 0 for any |z| the
tests use; log a and log(1 - a) are written with log1p so that tiny losses keep their digits.
Nothing here imports the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from numpy.typing import NDArray

mpmath.mp.dps = 50


@dataclass(frozen=True)
class Reference:
    """Exact gradients, and the size of the terms each sum adds up (for tolerances)."""

    dw: NDArray[np.float64]
    db: float
    cost: float
    dw_scale: NDArray[np.float64]  # mean_i |x_ji dz_i|: the rounding error of dw is relative to this
    db_scale: float  # mean_i |dz_i|
    x_scale: NDArray[np.float64]  # mean_i |x_ji|: dz = a - y carries ~1 ulp of 1, times x_ji


def _as_mp(w: Any, b: float, X: Any, Y: Any) -> tuple[list[Any], Any, list[list[Any]], list[Any]]:
    w_mp = [mpmath.mpf(float(v)) for v in np.asarray(w, dtype=np.float64).ravel()]
    X64 = np.asarray(X, dtype=np.float64)
    X_mp = [[mpmath.mpf(float(v)) for v in row] for row in X64]
    Y_mp = [mpmath.mpf(float(v)) for v in np.asarray(Y, dtype=np.float64).ravel()]
    return w_mp, mpmath.mpf(float(b)), X_mp, Y_mp


def _cost_mp(w_mp: list[Any], b_mp: Any, X_mp: list[list[Any]], Y_mp: list[Any]) -> Any:
    m = len(Y_mp)
    total = mpmath.mpf(0)
    for i in range(m):
        z = b_mp + mpmath.fsum(w_mp[j] * X_mp[j][i] for j in range(len(w_mp)))
        # log a = -log(1 + e^-z) and log(1 - a) = -log(1 + e^z), with log1p so that a
        # loss as small as 1e-400 (confident and right at |z| = 1e3) is not rounded to 0.
        log_a = -mpmath.log1p(mpmath.exp(-z))
        log_one_minus_a = -mpmath.log1p(mpmath.exp(z))
        total += -(Y_mp[i] * log_a + (1 - Y_mp[i]) * log_one_minus_a)
    return total / m


def reference_gradients(w: Any, b: float, X: Any, Y: Any) -> Reference:
    """The closed form dw = X (A - Y)^T / m, db = sum(A - Y) / m and the cross-entropy cost."""
    w_mp, b_mp, X_mp, Y_mp = _as_mp(w, b, X, Y)
    n_x, m = len(X_mp), len(Y_mp)
    dz = []
    for i in range(m):
        z = b_mp + mpmath.fsum(w_mp[j] * X_mp[j][i] for j in range(n_x))
        dz.append(1 / (1 + mpmath.exp(-z)) - Y_mp[i])
    dw = [mpmath.fsum(X_mp[j][i] * dz[i] for i in range(m)) / m for j in range(n_x)]
    dw_scale = [mpmath.fsum(abs(X_mp[j][i] * dz[i]) for i in range(m)) / m for j in range(n_x)]
    return Reference(
        dw=np.array([float(v) for v in dw]).reshape(n_x, 1),
        db=float(mpmath.fsum(dz) / m),
        cost=float(_cost_mp(w_mp, b_mp, X_mp, Y_mp)),
        dw_scale=np.array([float(v) for v in dw_scale]).reshape(n_x, 1),
        db_scale=float(mpmath.fsum(abs(d) for d in dz) / m),
        x_scale=np.abs(np.asarray(X, dtype=np.float64)).mean(axis=1, keepdims=True),
    )


def finite_difference_gradients(
    w: Any, b: float, X: Any, Y: Any, h: float = 1e-20
) -> tuple[NDArray[np.float64], float]:
    """Central differences (J(p + h) - J(p - h)) / 2h of the mpmath cost, in 50 digits.

    The truncation error is O(h^2 J''') and the rounding error O(1e-50 / h), both far below
    float64's resolution at h = 1e-20, so this checks the closed form independently.
    """
    w_mp, b_mp, X_mp, Y_mp = _as_mp(w, b, X, Y)
    step = mpmath.mpf(h)
    dw = []
    for j in range(len(w_mp)):
        plus, minus = list(w_mp), list(w_mp)
        plus[j] += step
        minus[j] -= step
        diff = _cost_mp(plus, b_mp, X_mp, Y_mp) - _cost_mp(minus, b_mp, X_mp, Y_mp)
        dw.append(float(diff / (2 * step)))
    db_diff = _cost_mp(w_mp, b_mp + step, X_mp, Y_mp) - _cost_mp(w_mp, b_mp - step, X_mp, Y_mp)
    return np.array(dw).reshape(-1, 1), float(db_diff / (2 * step))
