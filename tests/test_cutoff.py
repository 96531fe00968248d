"""The cut-off's prediction: the largest measured cell below, its per-element part scaled by elements."""

from __future__ import annotations

import pytest

from bench.measure.cutoff import predict_call_s


def test_nothing_below_gives_no_prediction() -> None:
    assert predict_call_s([], 10, 10) is None
    assert predict_call_s([(10, 10, 1e-3)], 5, 100) is None  # (10, 10) does not fit inside (5, 100)


def test_one_cell_scales_by_elements() -> None:
    # With one cell there is no smaller one to tell the fixed cost: all of its time scales.
    assert predict_call_s([(10, 10, 1e-3)], 20, 10) == pytest.approx(2e-3)


def test_a_fixed_cost_is_not_scaled() -> None:
    # A step of 1 µs fixed plus 1 ns per element: the smallest cell carries the fixed cost.
    def step(m: int, n: int) -> float:
        return 1e-6 + 1e-9 * m * n

    measured = [(m, n, step(m, n)) for m in (1, 10, 100) for n in (1, 10, 100)]
    predicted = predict_call_s(measured, 1_000, 1_000)
    assert predicted == pytest.approx(step(1_000, 1_000), rel=0.01)
    # Scaling the whole time instead would predict 100x the largest cell: about 1.1 ms, not 1.0 ms.
    assert predicted is not None and predicted < 1.05e-3


def test_the_largest_contained_cell_is_used() -> None:
    measured = [(10, 10, 1.0), (100, 10, 2.0), (10, 100, 50.0)]
    # (10, 100) is not inside (200, 20); (100, 10) is the largest that is.
    assert predict_call_s(measured, 200, 20) == pytest.approx(1.0 + 1.0 * 4)
