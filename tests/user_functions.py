"""Propagates written as learners write them, right and wrong, for the tests of `check` and of user targets."""

from __future__ import annotations

from typing import Any

import numpy as np

from implementations import Gradients

Array = np.ndarray[Any, Any]


def _sigmoid(z: Array) -> Array:
    result: Array = 1 / (1 + np.exp(-z))
    return result


def course(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    """The course's convention and formulas (textbook cost)."""
    m = X.shape[1]
    A = _sigmoid(w.T @ X + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    return {"dw": X @ (A - Y).T / m, "db": np.sum(A - Y) / m}, np.squeeze(np.array(cost))


def suite_style(w: Array, b: float, X: Array, Y: Array) -> Gradients:
    """The suite's convention: Gradients(dw, db, cost)."""
    grads, cost = course(w, b, X, Y)
    return Gradients(dw=grads["dw"], db=float(grads["db"]), cost=float(cost))


def sign_flipped(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    grads, cost = course(w, b, X, Y)
    return {"dw": -grads["dw"], "db": -grads["db"]}, cost


def sigmoid_of_plus_z(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    m = X.shape[1]
    A = 1 / (1 + np.exp(w.T @ X + b))
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    return {"dw": X @ (A - Y).T / m, "db": np.sum(A - Y) / m}, cost


def dw_flat(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    grads, cost = course(w, b, X, Y)
    return {"dw": grads["dw"].ravel(), "db": grads["db"]}, cost


def dw_from_x_transposed(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    """Raises a shape error unless X is square; wrong there all the same."""
    m = X.shape[1]
    A = _sigmoid(w.T @ X + b)
    grads, cost = course(w, b, X, Y)
    return {"dw": X.T @ (A - Y).T / m, "db": grads["db"]}, cost


def cost_without_m(w: Array, b: float, X: Array, Y: Array) -> tuple[dict[str, Any], Any]:
    grads, cost = course(w, b, X, Y)
    return grads, cost * X.shape[1]


def returns_a_list(w: Array, b: float, X: Array, Y: Array) -> list[float]:
    return [0.0]


NOT_A_FUNCTION = 3
