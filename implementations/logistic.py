"""Numerically stable sigmoid and cross-entropy, shared by every implementation.

The textbook forms overflow: exp(-z) is inf for z < -709 in float64 (z < -88 in float32),
and log(a) is -inf once a rounds to 0. Both forms below only ever take exp(-|z|), which
lies in (0, 1], so nothing overflows for any finite z.

The per-example loss -(y log a + (1 - y) log(1 - a)) equals softplus(s) with
s = (1 - 2y) z for y in {0, 1}, and softplus(s) = max(s, 0) + log1p(exp(-|s|)).
Since |s| = |z|, one exp serves both the activation and the loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray


def sigmoid_and_loss(z: float, y: float) -> tuple[float, float]:
    """Scalar a = sigmoid(z) and the cross-entropy loss of label y; plain math, no NumPy.

    Written in the subset of Python that Numba compiles, so the compiled kernels
    use exactly the same formula as the interpreted loops.
    """
    e = math.exp(-abs(z))
    a = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    s = z * (1.0 - 2.0 * y)
    loss = max(s, 0.0) + math.log1p(e)
    return a, loss


def sigmoid_and_loss_vec(
    Z: NDArray[np.floating[Any]], Y: NDArray[np.floating[Any]]
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Elementwise sigmoid_and_loss over arrays of the same shape; keeps the dtype."""
    e = np.exp(-np.abs(Z))
    one_plus_e = 1.0 + e
    A = np.where(Z >= 0, 1.0 / one_plus_e, e / one_plus_e)
    S = Z * (1.0 - 2.0 * Y)
    loss = np.maximum(S, 0.0) + np.log1p(e)
    return A, loss


def sigmoid_vec(Z: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Elementwise sigmoid with the same overflow-free form as sigmoid_and_loss_vec; keeps the dtype."""
    e = np.exp(-np.abs(Z))
    one_plus_e = 1.0 + e
    A: NDArray[np.floating[Any]] = np.where(Z >= 0, 1.0 / one_plus_e, e / one_plus_e)
    return A
