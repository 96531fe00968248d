"""The two_loop algorithm over Python lists of floats, converted in set-up: the lecture's faster baseline.

Indexing a NumPy array from Python boxes every element into a new scalar object; indexing a
list hands back a float that already exists. The lecture's dot-product demo loops over lists
of this kind, so this row shows how much the note's 1x baseline depends on how it holds its data.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from implementations.interface import (
    FloatArray,
    Gradients,
    Implementation,
    Prepared,
    propagate_via,
    summary_of,
)
from implementations.logistic import sigmoid_and_loss

ListStep = tuple[list[float], float, float]


def step(w: list[float], b: float, X: list[list[float]], Y: list[float]) -> ListStep:
    """One forward and backward pass; X is n_x rows of m floats, as X[j][i] mirrors two_loop's X[j, i]."""
    n_x, m = len(X), len(Y)
    dw = [0.0] * n_x
    db = 0.0
    cost = 0.0
    for i in range(m):
        z = b
        for j in range(n_x):
            z += w[j] * X[j][i]
        a, loss = sigmoid_and_loss(z, Y[i])
        cost += loss
        dz = a - Y[i]
        for j in range(n_x):
            dw[j] += X[j][i] * dz
        db += dz
    return [d / m for d in dw], db / m, cost / m


def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
    """Convert to lists (untimed); the step then never touches NumPy."""
    w_list: list[float] = w[:, 0].tolist()
    X_rows: list[list[float]] = X.tolist()
    Y_list: list[float] = Y[0].tolist()
    b_float = float(b)
    dtype, n_x = X.dtype, X.shape[0]

    def gradients(result: object) -> Gradients:
        dw, db, cost = cast(ListStep, result)
        return Gradients(dw=np.asarray(dw, dtype=dtype).reshape(n_x, 1), db=float(db), cost=float(cost))

    return Prepared(step=lambda: step(w_list, b_float, X_rows, Y_list), gradients=gradients)


IMPLEMENTATION = Implementation(
    name="two_loop_lists",
    propagate=propagate_via(setup),
    summary=summary_of(__doc__),
    python_loops=True,
    setup_fn=setup,
    role="baseline",
    layout_note="the step reads Python lists made in set-up, so the layout of X is gone before timing",
    temporaries="none",
    strided_walk=True,  # each example walks n_x row lists and their float objects, scattered in memory
)
