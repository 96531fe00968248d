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


# exp(x) for x in [-745.2, 0] as 2^k x exp(r), |r| <= ln(2) / 2: Cody and Waite's two-part ln 2
# keeps r exact to the last bits, a degree-13 Taylor polynomial is within 4e-18 of exp(r), and
# 2^k is looked up (k from -1075, where exp underflows to 0, to 0; subnormals included).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))
_POW2 = 2.0 ** np.arange(-1075, 1, dtype=np.float64)
# log1p(e) for e in [0, 1] as 2 atanh(t), t = e / (2 + e) <= 1/3: the series' 17 terms reach 2e-17.
_ATANH_SERIES = tuple(1.0 / (2 * k + 1) for k in range(17))


def sigmoid_and_loss_block(z: NDArray[np.float64], y: NDArray[np.floating[Any]]) -> tuple[float, float]:
    """sigmoid_and_loss over a block of examples, in place: z becomes a - y; returns (sum of a - y, sum of losses).

    The same stable forms, with exp and log1p written out as polynomials (within about 1 ulp of
    libm's) so that a compiler can vectorise the loop: libm's exp and log1p are calls it cannot.
    """
    db = 0.0
    cost = 0.0
    c = _EXP_TAYLOR
    q = _ATANH_SERIES
    for i in range(z.shape[0]):
        zi = z[i]
        x = max(-abs(zi), -745.2)
        k = math.floor(x * _INV_LN2 + 0.5)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = ((((((c[13] * r + c[12]) * r + c[11]) * r + c[10]) * r + c[9]) * r + c[8]) * r + c[7]) * r + c[6]
        p = (((((p * r + c[5]) * r + c[4]) * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
        e = p * _POW2[int(k) + 1075]
        t = e / (2.0 + e)
        t2 = t * t
        s = ((((((((q[16] * t2 + q[15]) * t2 + q[14]) * t2 + q[13]) * t2 + q[12]) * t2 + q[11]) * t2 + q[10]) * t2
              + q[9]) * t2 + q[8]) * t2 + q[7]  # fmt: skip
        s = (((((((s * t2 + q[6]) * t2 + q[5]) * t2 + q[4]) * t2 + q[3]) * t2 + q[2]) * t2 + q[1]) * t2) + q[0]
        a = (e if zi < 0 else 1.0) / (1.0 + e)
        margin = zi * (1.0 - 2.0 * y[i])
        cost += max(margin, 0.0) + 2.0 * t * s
        d = a - y[i]
        z[i] = d
        db += d
    return db, cost
