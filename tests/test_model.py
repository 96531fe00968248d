"""The cost model recovers known constants across cache levels and resists an outlier."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analyse.model import (
    Bandwidth,
    CostModel,
    beyond_reach,
    fit_cost_model,
    model_speedup,
    pages_per_example,
    predict_seconds,
)

# A machine with 100 GB/s up to 1 MiB, 40 GB/s up to 32 MiB and 15 GB/s beyond (steps over a doubling).
CURVE = Bandwidth(
    sizes=(1e3, 1.0 * 2**20, 2.0 * 2**20, 32.0 * 2**20, 64.0 * 2**20, 1e10),
    gbps=(100.0, 100.0, 40.0, 40.0, 15.0, 15.0),
)
TRUE = {
    "call_s": 2e-6,
    "per_example_s": 3e-8,
    "per_feature_s": 1e-9,
    "compute_s": 2e-10,
    "passes": 2.0,
    "strided_passes": 0.0,
    "alloc_per_example_s": 0.0,
}


def _grid() -> tuple[np.ndarray, np.ndarray]:
    m, n = np.meshgrid([1, 10, 100, 1_000, 10_000, 100_000], [1, 10, 100, 1_000])
    return m.ravel().astype(float), n.ravel().astype(float)


def _true_times(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    read = 8 * CURVE.seconds_per_byte(m * n * 8)
    return np.asarray(
        TRUE["call_s"]
        + TRUE["per_example_s"] * m
        + TRUE["per_feature_s"] * n
        + m * n * (TRUE["compute_s"] + TRUE["passes"] * read)
    )


def test_fit_recovers_exact_constants_across_cache_levels() -> None:
    m, n = _grid()
    model = fit_cost_model(m, n, _true_times(m, n), bandwidth=CURVE)
    assert model is not None
    for name, value in TRUE.items():
        assert getattr(model, name) == pytest.approx(value, rel=1e-3), name
    assert model.max_rel_error < 1e-3
    # The per-element cost follows X out of the cache: 2 reads of 8 bytes at 100 GB/s, then at 15 GB/s.
    assert model.per_element_s(1e4) == pytest.approx(2e-10 + 2 * 8 / 100e9, rel=1e-3)
    assert model.per_element_s(1e9) == pytest.approx(2e-10 + 2 * 8 / 15e9, rel=1e-3)


def test_the_strided_and_allocation_terms_are_found_with_the_tlb_reach() -> None:
    # A C-order kernel that reads X up to 3 more times once an example spans more than 2,048 pages, and
    # pays 20 ns more per example once a (1, m) float64 temporary passes 128 KiB (m >= 16,384).
    mm, nn = np.meshgrid([1, 10, 100, 1_000, 10_000, 209, 100_000], [1, 10, 100, 1_000, 10_000, 12_288])
    m, n = mm.ravel().astype(float), nn.ravel().astype(float)
    strided = 3 * m * n * 8 * CURVE.seconds_per_byte(m * n * 8) * beyond_reach(pages_per_example(m, n, 8), 2048)
    t = _true_times(m, n) + strided + 2e-8 * m * (m >= 16_384)
    model = fit_cost_model(m, n, t, bandwidth=CURVE)
    assert model is not None and model.max_rel_error < 1e-3
    assert model.tlb_pages == 2048 and model.strided_passes == pytest.approx(3.0, rel=1e-3)
    assert model.alloc_per_example_s == pytest.approx(2e-8, rel=1e-3)
    assert pages_per_example(np.array([209.0]), np.array([12_288.0]), 8)[0] == 5016  # the course's array
    np.testing.assert_allclose(
        beyond_reach(np.array([1000.0, 2048.0, 2896.3, 4096.0, 9000.0]), 2048), [0, 0, 0.5, 1, 1], atol=1e-4
    )


def test_without_the_bandwidth_term_one_per_element_cost_cannot_follow_the_levels() -> None:
    m, n = _grid()
    blind = fit_cost_model(m, n, _true_times(m, n))
    assert blind is not None and blind.passes == 0.0
    assert blind.max_rel_error > 0.3  # what the regime term is for


def test_fit_is_robust_to_one_bad_cell() -> None:
    m, n = _grid()
    t = _true_times(m, n)
    t[7] *= 5  # one cell disturbed by another process
    model = fit_cost_model(m, n, t, bandwidth=CURVE)
    assert model is not None
    assert model.passes == pytest.approx(2.0, rel=0.05)
    assert model.max_rel_error == pytest.approx(0.8, abs=0.01)  # the outlier shows here, not in the fit


def test_too_few_cells_fall_back_to_scaling_the_largest_contained_cell() -> None:
    assert fit_cost_model([1, 1], [1, 1], [1e-6, 1e-6]) is None
    assert predict_seconds([], 10, 10) is None
    assert predict_seconds([(10, 10, 1e-3)], 20, 10) == pytest.approx(2e-3)
    assert predict_seconds([(10, 10, 1e-3)], 5, 100) is None  # (10, 10) does not fit inside (5, 100)


def test_model_speedup_is_the_ratio_of_predictions() -> None:
    slow = CostModel(0.0, 1e-7, 0.0, 4e-7, 0.0, 0.0, 0.0, 10, 0.0, 0.0)  # interpreted: 0.4 µs per element
    fast = CostModel(3e-6, 0.0, 0.0, 1e-9, 0.0, 0.0, 0.0, 10, 0.0, 0.0)  # NumPy: 3 µs a call + 1 ns per element
    n = np.array([1.0, 1e3])
    got = model_speedup(slow, fast, 100.0, n)
    expected = (1e-5 + 100 * n * 4e-7) / (3e-6 + 100 * n * 1e-9)
    np.testing.assert_allclose(got, expected)
    with pytest.raises(ValueError, match="matching"):
        Bandwidth((1.0,), ())
