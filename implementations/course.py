"""The course assignment's optimize, predict and model: functions of any implementation's propagate.

    course.optimize(REGISTRY["fully_vectorized"].propagate, w, b, X, Y, 100, 0.009)

Implementation.optimize keeps its own return value, (w, b, costs) with the cost of every
step; these follow the assignment instead: optimize returns (params, grads, costs) with the
cost every 100 iterations, and model starts from w = 0, b = 0 as the course does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from implementations.interface import FloatArray, Gradients, PropagateFn, gradient_descent
from implementations.logistic import sigmoid_vec
from implementations.validation import require_features, validate_hyperparameters, validate_inputs

COST_EVERY = 100  # the course records the cost every 100 iterations


def optimize(
    propagate: PropagateFn,
    w: Any,
    b: Any,
    X: Any,
    Y: Any,
    num_iterations: int = 100,
    learning_rate: float = 0.009,
    print_cost: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """The course's optimize: (params {"w", "b"}, grads {"dw", "db"} of the last step, costs every 100)."""
    w, b, X, Y = validate_inputs(w, b, X, Y)
    validate_hyperparameters(num_iterations, learning_rate)
    last: list[Gradients] = []

    def recorded(w_: FloatArray, b_: float, X_: FloatArray, Y_: FloatArray) -> Gradients:
        grads = propagate(w_, b_, X_, Y_)
        last[:] = [grads]
        return grads

    w, b, every_cost = gradient_descent(recorded, w, b, X, Y, num_iterations, learning_rate)
    costs = every_cost[::COST_EVERY]
    if print_cost:
        for i, cost in zip(range(0, num_iterations, COST_EVERY), costs, strict=True):
            print(f"Cost after iteration {i}: {cost:f}")
    # No step taken: the gradients at the start (the course's code would fail here).
    grads = last[0] if last else propagate(w, b, X, Y)
    return {"w": w, "b": b}, {"dw": grads.dw, "db": grads.db}, costs


def predict(w: Any, b: Any, X: Any) -> FloatArray:
    """1.0 where the predicted probability sigmoid(w.T X + b) is above 0.5, else 0.0; shape (1, m), X's dtype."""
    X = require_features(X)
    w = np.asarray(w)
    if w.size != X.shape[0]:
        raise ValueError(f"w must have n_x = {X.shape[0]} entries to match X {X.shape}, got shape {w.shape}")
    w = w.reshape(X.shape[0], 1).astype(X.dtype, copy=False)
    A = sigmoid_vec(w.T @ X + float(b))
    return (A > 0.5).astype(X.dtype)


def model(
    propagate: PropagateFn,
    X_train: Any,
    Y_train: Any,
    X_test: Any,
    Y_test: Any,
    num_iterations: int = 2000,
    learning_rate: float = 0.5,
    print_cost: bool = False,
) -> dict[str, Any]:
    """The course's model: train from zeros, predict both sets, return the course's dictionary."""
    X_train = require_features(X_train)
    w = np.zeros((X_train.shape[0], 1), dtype=X_train.dtype)
    _, _, X_test, Y_test = validate_inputs(w, 0.0, X_test, Y_test)
    params, _grads, costs = optimize(propagate, w, 0.0, X_train, Y_train, num_iterations, learning_rate, print_cost)
    w, b = params["w"], params["b"]
    Y_prediction_train = predict(w, b, X_train)
    Y_prediction_test = predict(w, b, X_test)
    if print_cost:
        _, _, _, Y_train = validate_inputs(w, b, X_train, Y_train)
        print(f"train accuracy: {100 - np.mean(np.abs(Y_prediction_train - Y_train)) * 100} %")
        print(f"test accuracy: {100 - np.mean(np.abs(Y_prediction_test - Y_test)) * 100} %")
    return {
        "costs": costs,
        "Y_prediction_test": Y_prediction_test,
        "Y_prediction_train": Y_prediction_train,
        "w": w,
        "b": b,
        "learning_rate": learning_rate,
        "num_iterations": num_iterations,
    }
