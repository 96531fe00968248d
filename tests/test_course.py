"""The course's conventions: its test case with integer labels, its optimize, predict and model, published outputs.

Expected values are the course assignment's published outputs, not this code's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.measure.data import make_problem
from implementations import REGISTRY, course, validate_inputs
from tests.reference import reference_gradients

NAMES = list(REGISTRY)


def _course_case() -> tuple[np.ndarray[Any, Any], float, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    # Exactly as the assignment writes it: Y is an integer array.
    return np.array([[1.0], [2.0]]), 2.0, np.array([[1.0, 2.0, -1.0], [3.0, 4.0, -3.2]]), np.array([[1, 0, 1]])


def test_published_propagate_matches_the_independent_reference() -> None:
    w, b, X, Y = _course_case()
    ref = reference_gradients(w, b, X, Y)
    np.testing.assert_allclose(ref.dw, [[0.99845601], [2.39507239]], atol=1e-8)
    assert ref.db == pytest.approx(0.00145557813678, abs=1e-13)
    assert ref.cost == pytest.approx(5.801545319394553, rel=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_propagate_on_the_course_case_with_integer_labels(name: str) -> None:
    w, b, X, Y = validate_inputs(*_course_case())
    assert Y.dtype == np.float64
    grads = REGISTRY[name].propagate(w, b, X, Y)
    np.testing.assert_allclose(grads.dw, [[0.99845601], [2.39507239]], atol=1e-8)
    assert grads.db == pytest.approx(0.00145557813678, abs=1e-13)
    assert grads.cost == pytest.approx(5.801545319394553, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_course_optimize_gives_the_published_outputs(name: str) -> None:
    w, b, X, Y = _course_case()
    params, grads, costs = course.optimize(
        REGISTRY[name].propagate, w, b, X, Y, num_iterations=100, learning_rate=0.009
    )
    np.testing.assert_allclose(params["w"], [[0.19033591], [0.12259159]], atol=1e-8)
    assert params["b"] == pytest.approx(1.92535983008, abs=1e-11)
    np.testing.assert_allclose(grads["dw"], [[0.67752042], [1.41625495]], atol=1e-8)
    assert grads["db"] == pytest.approx(0.219194504541, abs=1e-11)
    np.testing.assert_allclose(costs, [5.80154532], atol=1e-8)
    assert w.tolist() == [[1.0], [2.0]], "the caller's w is left as it was"


@pytest.mark.parametrize("name", NAMES)
def test_optimize_accepts_integer_labels_and_keeps_its_return_value(name: str) -> None:
    w, b, X, Y = _course_case()
    w_out, b_out, costs = REGISTRY[name].optimize(w, b, X, Y, 100, 0.009)
    np.testing.assert_allclose(w_out, [[0.19033591], [0.12259159]], atol=1e-8)
    assert b_out == pytest.approx(1.92535983008, abs=1e-11) and len(costs) == 100


def test_predict_gives_the_published_outputs() -> None:
    w = np.array([[0.1124579], [0.23106775]])
    X = np.array([[1.0, -1.1, -3.2], [1.2, 2.0, 0.1]])
    prediction = course.predict(w, -0.3, X)
    assert prediction.shape == (1, 3) and prediction.dtype == np.float64
    assert prediction.tolist() == [[1.0, 1.0, 0.0]]


def test_predict_refuses_integer_x_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"X holds integers \(uint8\); scale it to floats first, e\.g\. X / 255"):
        course.predict(np.zeros((2, 1)), 0.0, np.ones((2, 3), dtype=np.uint8))


def test_costs_every_100_iterations_follow_the_reference() -> None:
    p = make_problem(10, 3, seed=5)
    _, _, costs = course.optimize(REGISTRY["fully_vectorized"].propagate, p.w, p.b, p.X, p.Y, 250, 0.5)
    assert len(costs) == 3
    w, b = p.w.copy(), p.b
    expected = []
    for i in range(201):
        ref = reference_gradients(w, b, p.X, p.Y)
        if i % 100 == 0:
            expected.append(ref.cost)
        w, b = w - 0.5 * ref.dw, b - 0.5 * ref.db
    np.testing.assert_allclose(costs, expected, rtol=1e-9)


@pytest.mark.parametrize("name", ["two_loop", "fully_vectorized"])
def test_model_returns_the_course_dictionary(name: str) -> None:
    train = make_problem(40, 3, seed=1)
    test = make_problem(15, 3, seed=2)
    Y_train = train.Y.astype(np.int64)  # the course's data set loads its labels as integers
    d = course.model(
        REGISTRY[name].propagate,
        train.X,
        Y_train,
        test.X,
        test.Y.astype(np.int64),
        num_iterations=300,
        learning_rate=0.1,
    )
    assert set(d) == {"costs", "Y_prediction_test", "Y_prediction_train", "w", "b", "learning_rate", "num_iterations"}
    assert d["learning_rate"] == 0.1 and d["num_iterations"] == 300 and len(d["costs"]) == 3
    assert d["Y_prediction_train"].shape == (1, 40) and d["Y_prediction_test"].shape == (1, 15)
    # From zeros, as the course starts: the first recorded cost is log 2 whatever the data.
    assert d["costs"][0] == pytest.approx(np.log(2.0), rel=1e-12)
    params, _, _ = course.optimize(REGISTRY[name].propagate, np.zeros((3, 1)), 0.0, train.X, train.Y, 300, 0.1)
    np.testing.assert_allclose(d["w"], params["w"], rtol=1e-12)
    expected = 1 / (1 + np.exp(-(d["w"].T @ test.X + d["b"]))) > 0.5
    assert np.array_equal(d["Y_prediction_test"], expected.astype(float))


def test_model_prints_costs_and_accuracy_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    train = make_problem(20, 2, seed=3)
    course.model(REGISTRY["fully_vectorized"].propagate, train.X, train.Y, train.X, train.Y, 101, 0.1, print_cost=True)
    out = capsys.readouterr().out
    assert "Cost after iteration 0:" in out and "Cost after iteration 100:" in out
    assert "train accuracy:" in out and "test accuracy:" in out
