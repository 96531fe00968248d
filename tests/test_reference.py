"""The reference itself: its closed form must equal the derivative of its cost."""

from __future__ import annotations

import numpy as np

from bench.measure.data import make_problem
from tests.reference import finite_difference_gradients, reference_gradients


def test_closed_form_equals_finite_differences_of_the_cost() -> None:
    p = make_problem(7, 4, seed=1)
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    dw_fd, db_fd = finite_difference_gradients(p.w, p.b, p.X, p.Y)
    np.testing.assert_allclose(ref.dw, dw_fd, rtol=1e-12, atol=1e-15)
    assert abs(ref.db - db_fd) <= 1e-12 * max(1.0, abs(db_fd))


def test_reference_cost_of_a_hand_computed_case() -> None:
    # One example, one feature, w = 0, b = 0: a = 1/2, cost = log 2, dz = 1/2 - y.
    X = np.array([[3.0]])
    ref = reference_gradients(np.zeros((1, 1)), 0.0, X, np.array([[1.0]]))
    assert abs(ref.cost - np.log(2.0)) < 1e-15
    assert abs(ref.db - (-0.5)) < 1e-15
    assert abs(ref.dw[0, 0] - (-1.5)) < 1e-15
