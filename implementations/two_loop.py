"""Two Python loops, over the m examples and the n_x features, for every scalar operation.

The course's `dw1 += x1 * dz; dw2 += x2 * dz; ...` pseudo-code generalised to n_x
features: z, the cost, dz and dw are built one scalar at a time with plain math.
This is the 1x baseline of the note's speed table.
"""

from __future__ import annotations

import numpy as np

from implementations.interface import FloatArray, Gradients, Implementation, summary_of
from implementations.logistic import sigmoid_and_loss


def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
    """One forward and backward pass with a loop over examples and one over features."""
    n_x, m = X.shape
    dw = [0.0] * n_x
    db = 0.0
    cost = 0.0
    for i in range(m):
        z = b
        for j in range(n_x):
            z += w[j, 0] * X[j, i]
        a, loss = sigmoid_and_loss(z, Y[0, i])
        cost += loss
        dz = a - Y[0, i]
        for j in range(n_x):
            dw[j] += X[j, i] * dz
        db += dz
    dw_col = (np.asarray(dw, dtype=np.float64) / m).astype(X.dtype).reshape(n_x, 1)
    return Gradients(dw=dw_col, db=float(db) / m, cost=float(cost) / m)


IMPLEMENTATION = Implementation(
    name="two_loop",
    propagate=propagate,
    summary=summary_of(__doc__),
    python_loops=True,
    claim=("Original (two loops)", 1.0),
    role="baseline",
    reads_of_x=1,  # each example's column twice, the second time from cache
    strided_walk=True,
    layout_note="the interpreter's cost per element hides the memory access pattern",
)
