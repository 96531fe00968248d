"""A propagate as the course's assignment writes it: check it and time it beside the suite's.

    python -m bench check examples/course_propagate.py:propagate
    python -m bench run --profile quick --no-lecture --out results/mine \\
        --implementations two_loop,fully_vectorized,examples/course_propagate.py:propagate

The cost is the textbook formula, so at very large |z| np.log(A) takes log(0): the check
warns about that but does not fail it.
"""

import numpy as np


def sigmoid(z):
    """The logistic function, as the course writes it."""
    return 1 / (1 + np.exp(-z))


def propagate(w, b, X, Y):
    """Forward and backward pass: returns grads = {"dw", "db"} and the cost, as in the course."""
    m = X.shape[1]
    A = sigmoid(np.dot(w.T, X) + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    dw = np.dot(X, (A - Y).T) / m
    db = np.sum(A - Y) / m
    cost = np.squeeze(np.array(cost))
    grads = {"dw": dw, "db": db}
    return grads, cost


def propagate_loops(w, b, X, Y):
    """The same step with the course's explicit loops over examples and features (the slow way)."""
    n_x, m = X.shape
    dw = np.zeros((n_x, 1))
    db = 0.0
    cost = 0.0
    for i in range(m):
        z = b
        for j in range(n_x):
            z += w[j, 0] * X[j, i]
        a = 1 / (1 + np.exp(-z))
        cost += -(Y[0, i] * np.log(a) + (1 - Y[0, i]) * np.log(1 - a))
        dz = a - Y[0, i]
        for j in range(n_x):
            dw[j, 0] += X[j, i] * dz
        db += dz
    return {"dw": dw / m, "db": db / m}, cost / m
