"""The two_loop algorithm compiled with numba.njit: explicit loops, no NumPy vector calls.

The same loops over examples and features as two_loop, turned into machine code by
Numba. The first call compiles (recorded apart as compile_s); later calls pay only a
small dispatch cost, so it shows what the loops cost without the interpreter.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from implementations.interface import FloatArray, Gradients, Implementation, summary_of
from implementations.logistic import sigmoid_and_loss

_sigmoid_and_loss = numba.njit(inline="always")(sigmoid_and_loss)


def _propagate_loops(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> tuple[FloatArray, float, float]:
    n_x, m = X.shape
    dw = np.zeros(n_x, dtype=X.dtype)
    db = 0.0
    cost = 0.0
    for i in range(m):
        z = b
        for j in range(n_x):
            z += w[j, 0] * X[j, i]
        a, loss = _sigmoid_and_loss(z, Y[0, i])
        cost += loss
        dz = a - Y[0, i]
        for j in range(n_x):
            dw[j] += X[j, i] * dz
        db += dz
    for j in range(n_x):
        dw[j] /= m
    return dw, db / m, cost / m


_kernel: Any = numba.njit(nogil=True)(_propagate_loops)


def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
    """One forward and backward pass in compiled loops."""
    dw, db, cost = _kernel(w, float(b), X, Y)
    return Gradients(dw=dw.reshape(-1, 1), db=float(db), cost=float(cost))


IMPLEMENTATION = Implementation(
    name="numba_loop",
    propagate=propagate,
    summary=summary_of(__doc__),
    jit=True,
    reads_of_x=1,
    strided_walk=True,
    layout_note="its inner loop walks one example's features, contiguous only in F order",
)
