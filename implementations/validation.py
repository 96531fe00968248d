"""Input checks for optimize and every entry point of bench/.

propagate checks nothing: it is the unit that gets timed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np


class Inputs(NamedTuple):
    """(w, b, X, Y) after validate_inputs: labels and integer weights in X's floating dtype."""

    w: np.ndarray[Any, Any]
    b: float
    X: np.ndarray[Any, Any]
    Y: np.ndarray[Any, Any]


def _require_array(name: str, value: Any, ndim: int) -> np.ndarray[Any, Any]:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a NumPy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got ndim={value.ndim} (shape {value.shape})")
    return value


def _is_integer(value: np.ndarray[Any, Any]) -> bool:
    return bool(np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_)


def _require_float(name: str, value: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if not np.issubdtype(value.dtype, np.floating):
        raise ValueError(f"{name} must be a float array (float32 or float64), got dtype {value.dtype}")
    if value.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got dtype {value.dtype}")
    return value


def _require_finite(name: str, value: np.ndarray[Any, Any]) -> None:
    finite = np.isfinite(value)
    if not finite.all():
        bad = value[~finite]
        kind = "NaN" if np.isnan(bad).any() else "infinite"
        count = int(bad.size)
        raise ValueError(f"{name} contains {kind} values ({count} non-finite of {value.size})")


def require_features(X: Any) -> np.ndarray[Any, Any]:
    """X as a 2-d float32/float64 array; integer X (raw pixel values, say) is refused with what to do."""
    X = _require_array("X", X, 2)
    if _is_integer(X):
        # Not converted silently: the course scales pixel values to [0, 1] first, and a
        # plain cast would keep 0..255 and make exp(-z) overflow within a few steps.
        raise ValueError(
            f"X holds integers ({X.dtype}); scale it to floats first, e.g. X / 255 for pixel values as the course does"
        )
    return _require_float("X", X)


def validate_inputs(w: Any, b: Any, X: Any, Y: Any) -> Inputs:
    """Raise ValueError naming the first problem with (w, b, X, Y), or return them ready to use.

    Conventions: X (n_x, m), Y (1, m) with labels 0 and 1, w (n_x, 1), b a real number;
    X and w float32 or float64 of one dtype; everything finite; m >= 1 and n_x >= 1.
    Labels may be integers or booleans (the course loads them as integers) and integer w
    is accepted too: both are returned converted to X's dtype; the caller's arrays are never changed.
    """
    X = require_features(X)
    Y = _require_array("Y", Y, 2)
    w = _require_array("w", w, 2)
    n_x, m = X.shape
    if n_x == 0 or m == 0:
        raise ValueError(f"X must have at least one feature and one example, got shape (n_x={n_x}, m={m})")
    if Y.shape != (1, m):
        raise ValueError(f"Y must have shape (1, m) = (1, {m}) to match X {X.shape}, got {Y.shape}")
    if w.shape != (n_x, 1):
        raise ValueError(f"w must have shape (n_x, 1) = ({n_x}, 1) to match X {X.shape}, got {w.shape}")
    if _is_integer(w):
        w = w.astype(X.dtype)
    w = _require_float("w", w)
    if _is_integer(Y):
        Y = Y.astype(X.dtype)
    Y = _require_float("Y", Y)
    if not (X.dtype == Y.dtype == w.dtype):
        raise ValueError(f"X, Y and w must share one dtype, got X {X.dtype}, Y {Y.dtype}, w {w.dtype}")
    if isinstance(b, bool) or not isinstance(b, numbers.Real):
        raise ValueError(f"b must be a real number, got {type(b).__name__}")
    if not math.isfinite(float(b)):
        raise ValueError(f"b must be finite, got {b}")
    _require_finite("X", X)
    _require_finite("w", w)
    _require_finite("Y", Y)
    labels = np.unique(Y)
    if not np.isin(labels, (0.0, 1.0)).all():
        others = labels[~np.isin(labels, (0.0, 1.0))][:5].tolist()
        raise ValueError(f"Y must hold labels 0 and 1 only, found {others}")
    return Inputs(w=w, b=float(b), X=X, Y=Y)


def validate_hyperparameters(num_iterations: Any, learning_rate: Any) -> None:
    """num_iterations a non-negative int, learning_rate a positive finite number."""
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, numbers.Integral):
        raise ValueError(f"num_iterations must be an integer, got {type(num_iterations).__name__}")
    if int(num_iterations) < 0:
        raise ValueError(f"num_iterations must be >= 0, got {num_iterations}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise ValueError(f"learning_rate must be a real number, got {type(learning_rate).__name__}")
    if not (math.isfinite(float(learning_rate)) and float(learning_rate) > 0):
        raise ValueError(f"learning_rate must be positive and finite, got {learning_rate}")
