"""The cost model recovers known constants and resists an outlier; crossovers solve the right equation."""

from __future__ import annotations

import numpy as np
import pytest

from bench.model import CostModel, crossover_n_x, fit_cost_model, predict_seconds


def _grid() -> tuple[list[float], list[float]]:
    m, n = np.meshgrid([1, 8, 64, 512, 4096], [1, 8, 64, 512])
    return m.ravel().astype(float).tolist(), n.ravel().astype(float).tolist()


def test_fit_recovers_exact_constants() -> None:
    m, n = _grid()
    t = [2e-6 + 3e-7 * a + 4e-9 * a * b for a, b in zip(m, n, strict=True)]
    model = fit_cost_model(m, n, t)
    assert model is not None
    assert model.overhead_s == pytest.approx(2e-6, rel=1e-3)
    assert model.per_example_s == pytest.approx(3e-7, rel=1e-3)
    assert model.per_element_s == pytest.approx(4e-9, rel=1e-3)
    assert model.max_rel_error < 1e-3


def test_fit_is_robust_to_one_bad_cell() -> None:
    m, n = _grid()
    t = [2e-6 + 3e-7 * a + 4e-9 * a * b for a, b in zip(m, n, strict=True)]
    t[7] *= 5  # one cell disturbed by another process
    model = fit_cost_model(m, n, t)
    assert model is not None
    assert model.per_element_s == pytest.approx(4e-9, rel=0.05)
    assert model.max_rel_error == pytest.approx(0.8, abs=0.01)  # the outlier shows here, not in the fit


def test_too_few_cells_fall_back_to_scaling_the_largest_contained_cell() -> None:
    assert fit_cost_model([1, 1], [1, 1], [1e-6, 1e-6]) is None
    assert predict_seconds([], 10, 10) is None
    assert predict_seconds([(10, 10, 1e-3)], 20, 10) == pytest.approx(2e-3)
    assert predict_seconds([(10, 10, 1e-3)], 5, 100) is None  # (10, 10) does not fit inside (5, 100)


def test_crossover_n_x() -> None:
    slow = CostModel(0.0, 1e-7, 4e-7, 10, 0, 0)  # interpreted: 0.1 µs per example + 0.4 µs per element
    fast = CostModel(0.0, 3e-6, 1e-9, 10, 0, 0)  # NumPy per example: 3 µs + 1 ns per element
    n1 = crossover_n_x(slow, fast, 1.0)
    assert n1 is not None
    assert slow.per_example_s + slow.per_element_s * n1 == pytest.approx(fast.per_example_s + fast.per_element_s * n1)
    assert crossover_n_x(slow, fast, 1000.0) is None  # 400x is the most it can ever reach
    assert crossover_n_x(slow, slow, 1.0) == 0.0
