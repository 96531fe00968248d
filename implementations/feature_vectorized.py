"""One Python loop over the m examples; NumPy vector operations over the n_x features inside it.

The note's "Partial" row: `z_i = np.dot(w.T, x_i) + b` and `dw += x_i * dz_i` for each
example, so the features loop runs in NumPy but the examples loop stays in Python.
"""

from __future__ import annotations

import numpy as np

from implementations.interface import FloatArray, Gradients, Implementation, summary_of
from implementations.logistic import sigmoid_and_loss


def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
    """One forward and backward pass with a Python loop over examples only."""
    n_x, m = X.shape
    w_vec = w[:, 0]
    dw = np.zeros(n_x, dtype=X.dtype)
    db = 0.0
    cost = 0.0
    for i in range(m):
        x_i = X[:, i]
        z_i = float(np.dot(w_vec, x_i)) + b
        a_i, loss = sigmoid_and_loss(z_i, Y[0, i])
        cost += loss
        dz_i = a_i - Y[0, i]
        dw += x_i * dz_i
        db += dz_i
    return Gradients(dw=(dw / m).reshape(n_x, 1), db=float(db) / m, cost=float(cost) / m)


IMPLEMENTATION = Implementation(
    name="feature_vectorized",
    propagate=propagate,
    summary=summary_of(__doc__),
    python_loops=True,
    claim=("Partial (features vectorised)", 10.0),
    role="vectorized",
    reads_of_x=1,  # X[:, i] for z, then again for dw while it is still in cache
    strided_walk=True,
    layout_note="each `X[:, i]` is one contiguous column in F order but a strided gather in C order",
)
