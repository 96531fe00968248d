"""Propagates with the usual mistakes, each wrong on purpose, to see what `python -m bench check` says.

python -m bench check examples/wrong_propagates.py:missing_one_over_m
python -m bench check examples/wrong_propagates.py:broadcast_mixup examples/wrong_propagates.py:raises
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def missing_one_over_m(w, b, X, Y):
    """db without its 1/m."""
    m = X.shape[1]
    A = sigmoid(np.dot(w.T, X) + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    dw = np.dot(X, (A - Y).T) / m
    db = np.sum(A - Y)  # the mistake: / m is missing
    return {"dw": dw, "db": db}, np.squeeze(cost)


def broadcast_mixup(w, b, X, Y):
    """A made (m,) while Y is (1, m): A - Y broadcasts to (m, m)."""
    m = X.shape[1]
    A = sigmoid(np.dot(X.T, w[:, 0]) + b)  # shape (m,), not (1, m)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    dZ = A - Y.T  # (m,) against (m, 1): an (m, m) array
    dw = np.dot(X, dZ) / m
    db = np.sum(dZ) / m
    return {"dw": dw, "db": db}, np.squeeze(cost)


def transposed_product(w, b, X, Y):
    """dw from X.T: no shape error when X happens to be square, wrong values all the same."""
    m = X.shape[1]
    A = sigmoid(np.dot(w.T, X) + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    dw = np.dot(X.T, (A - Y).T) / m  # the mistake: X, not X.T
    db = np.sum(A - Y) / m
    return {"dw": dw, "db": db}, np.squeeze(cost)


def changes_its_input(w, b, X, Y):
    """Right numbers, but Y is overwritten by A - Y in place."""
    m = X.shape[1]
    A = sigmoid(np.dot(w.T, X) + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    np.subtract(A, Y, out=Y)  # the mistake: the caller's Y now holds dZ
    dw = np.dot(X, Y.T) / m
    db = np.sum(Y) / m
    return {"dw": dw, "db": db}, np.squeeze(cost)


def raises(w, b, X, Y):
    """w, not w.T, in the forward pass: a shape error for any n_x > 1."""
    m = X.shape[1]
    A = sigmoid(np.dot(w, X) + b)  # the mistake: (n_x, 1) times (n_x, m)
    dw = np.dot(X, (A - Y).T) / m
    db = np.sum(A - Y) / m
    return {"dw": dw, "db": db}, 0.0
