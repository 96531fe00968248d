"""optimize: all implementations follow one gradient-descent trajectory, and copy their inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.data import make_problem
from implementations import REGISTRY
from tests.reference import reference_gradients

NAMES = list(REGISTRY)
ITERATIONS = 120
LEARNING_RATE = 0.5


def _reference_trajectory(m: int, n_x: int) -> tuple[np.ndarray, float, list[float]]:
    """Gradient descent driven by the mpmath reference, rounded to float64 after each step."""
    p = make_problem(m, n_x, seed=11)
    w, b, costs = p.w.copy(), p.b, []
    for _ in range(ITERATIONS):
        ref = reference_gradients(w, b, p.X, p.Y)
        costs.append(ref.cost)
        w = w - LEARNING_RATE * ref.dw
        b = b - LEARNING_RATE * ref.db
    return w, b, costs


@pytest.fixture(scope="module")
def trajectory() -> tuple[np.ndarray, float, list[float]]:
    return _reference_trajectory(12, 3)


@pytest.mark.parametrize("name", NAMES)
def test_optimize_follows_the_reference_trajectory(
    name: str, trajectory: tuple[np.ndarray, float, list[float]]
) -> None:
    p = make_problem(12, 3, seed=11)
    w, b, costs = REGISTRY[name].optimize(p.w, p.b, p.X, p.Y, ITERATIONS, LEARNING_RATE)
    w_ref, b_ref, costs_ref = trajectory
    assert len(costs) == ITERATIONS
    np.testing.assert_allclose(costs, costs_ref, rtol=1e-9)
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-12)
    assert abs(b - b_ref) <= 1e-8 * max(1.0, abs(b_ref))
    assert costs[-1] < costs[0], "gradient descent should lower the cost"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimize_keeps_dtype_and_never_modifies_inputs(name: str, dtype: str) -> None:
    p = make_problem(15, 4, seed=4, dtype=dtype)
    before = [a.copy() for a in (p.w, p.X, p.Y)]
    w, b, costs = REGISTRY[name].optimize(p.w, p.b, p.X, p.Y, 5, 0.1)
    assert w.dtype == np.dtype(dtype) and w.shape == (4, 1)
    assert isinstance(b, float)
    assert all(isinstance(c, float) for c in costs)
    for a, orig in zip((p.w, p.X, p.Y), before, strict=True):
        assert np.array_equal(a, orig)
    assert w is not p.w


@pytest.mark.parametrize("name", NAMES)
def test_zero_iterations_returns_the_start(name: str) -> None:
    p = make_problem(5, 2, seed=0)
    w, b, costs = REGISTRY[name].optimize(p.w, p.b, p.X, p.Y, 0, 0.1)
    assert costs == [] and b == p.b and np.array_equal(w, p.w)


def test_all_trajectories_agree_with_each_other() -> None:
    p = make_problem(30, 6, seed=21)
    runs = {n: REGISTRY[n].optimize(p.w, p.b, p.X, p.Y, ITERATIONS, 0.2) for n in NAMES if not REGISTRY[n].unavailable}
    first = next(iter(runs.values()))
    for name, (w, _b, costs) in runs.items():
        np.testing.assert_allclose(costs, first[2], rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(w, first[0], rtol=1e-9, atol=1e-13, err_msg=name)
