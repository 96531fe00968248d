"""A cost model per implementation whose per-element cost depends on where X lives.

    t(m, n_x) = call + m * (per_example + alloc [m x itemsize >= 128 KiB]) + n_x * per_feature
                + m * n_x * (compute + (passes + strided * beyond_reach(pages per example))
                                       * itemsize / bandwidth(bytes of X))

bandwidth(B) is this machine's measured read bandwidth for a working set of B bytes (the
memory sweep in metadata.json), so one constant, `passes` (how many times a step reads X at
that speed), follows the step from L1 to L2 to the last cache to main memory. `compute` is
the per-element cost that no cache removes: for the interpreted loops, the interpreter.

Fitted with nonnegative coefficients and a robust (Huber) loss on the relative error, so
microsecond cells count as much as second-long ones and a few noisy cells do not drag the
fit. Runs made before the sweep get the same model without the bandwidth term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls

from bench.measure.robustness import DEFAULT_MMAP_THRESHOLD_BYTES

MIN_POINTS = 3
HUBER_DELTA = 0.1  # relative residuals beyond 10% count linearly, not quadratically
TERMS = ("call_s", "per_example_s", "per_feature_s", "compute_s", "passes", "strided_passes", "alloc_per_example_s")
PAGE = 4096
# A kernel that walks one example's features in C order touches n_x rows m x itemsize bytes apart:
# past a few thousand distinct pages per example the TLB no longer holds them, the prefetchers
# lose the stream, and each element costs more reads at the speed of wherever X lives. The reach
# is chosen from these (in pages) by the fit, per implementation.
TLB_REACH_PAGES = (512, 1024, 1536, 2048, 3072, 4096, 8192)
# glibc mmaps blocks of 128 KiB and more by default and gives freed memory back, so once a (1, m)
# temporary passes this, every step page-faults its temporaries in again (the robustness study
# measures it): a per-example cost that only large m pays.
MMAP_THRESHOLD = DEFAULT_MMAP_THRESHOLD_BYTES


@dataclass(frozen=True)
class Bandwidth:
    """Read bandwidth against working-set size, from the sweep: log-log interpolation, flat beyond its ends."""

    sizes: tuple[float, ...]
    gbps: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.gbps) or not self.sizes:
            raise ValueError("a bandwidth curve needs matching, non-empty sizes and GB/s")

    def seconds_per_byte(self, nbytes: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.log(np.asarray(self.sizes, dtype=float))
        # A running median of three smooths single disturbed reads without moving the steps.
        y = np.log(np.asarray(self.gbps, dtype=float))
        if len(y) >= 3:
            y = np.concatenate([[y[0]], np.median(np.lib.stride_tricks.sliding_window_view(y, 3), axis=1), [y[-1]]])
        # A smaller working set is never read slower than a larger one: the dips at the smallest
        # sizes are call overhead, not the memory, and would make tiny cells look memory-bound.
        y = np.maximum.accumulate(y[::-1])[::-1]
        gbps = np.exp(np.interp(np.log(np.maximum(nbytes, 1.0)), x, y))
        return np.asarray(1.0 / (gbps * 1e9), dtype=np.float64)


@dataclass(frozen=True)
class CostModel:
    """Seconds per call as a function of (m, n_x), and how well it fits the measured cells."""

    call_s: float
    per_example_s: float
    per_feature_s: float
    compute_s: float  # per element, wherever X lives
    passes: float  # reads of X per step at the measured bandwidth for its size
    strided_passes: float  # more such reads, once one example's features span more pages than the TLB holds
    alloc_per_example_s: float  # per example, once a (1, m) temporary is past glibc's mmap threshold
    points: int
    median_rel_error: float
    max_rel_error: float
    itemsize: int = 8
    bandwidth: Bandwidth | None = None
    tlb_pages: int = TLB_REACH_PAGES[-1]

    def predict(self, m: float, n_x: float) -> float:
        return float(self.predict_many(np.array([m], dtype=float), np.array([n_x], dtype=float))[0])

    def predict_many(self, m: NDArray[np.float64], n_x: NDArray[np.float64]) -> NDArray[np.float64]:
        coef = np.array([getattr(self, term) for term in TERMS])
        features = _features(
            np.asarray(m, float), np.asarray(n_x, float), self.itemsize, self.bandwidth, self.tlb_pages
        )
        return np.asarray(features @ coef, dtype=np.float64)

    def per_element_s(self, nbytes: float) -> float:
        """Seconds per element of X for a working set of nbytes: compute plus the reads."""
        read = self.bandwidth.seconds_per_byte(np.array([nbytes]))[0] if self.bandwidth is not None else 0.0
        return self.compute_s + self.passes * self.itemsize * float(read)


def pages_per_example(m: np.ndarray, n_x: np.ndarray, itemsize: int) -> np.ndarray:
    """Distinct pages one example's features span in a C-ordered (n_x, m) array."""
    return np.asarray(np.minimum(n_x, np.ceil(n_x * m * itemsize / PAGE)), dtype=float)


def beyond_reach(pages: np.ndarray, reach: int) -> np.ndarray:
    """The share of an example's page walks the TLB cannot serve: none up to its reach, all from twice it.

    Linear in log2(pages / reach) in between, since the TLB is not a strict LRU over one example's pages.
    """
    return np.asarray(np.clip(np.log2(np.maximum(pages, 1.0) / reach), 0.0, 1.0), dtype=float)


def _features(m: np.ndarray, n_x: np.ndarray, itemsize: int, bandwidth: Bandwidth | None, tlb_pages: int) -> np.ndarray:
    elements = m * n_x
    if bandwidth is None:
        read = np.zeros_like(elements)
    else:
        read = elements * itemsize * bandwidth.seconds_per_byte(elements * itemsize)
    strided = read * beyond_reach(pages_per_example(m, n_x, itemsize), tlb_pages)
    alloc = m * (m * itemsize >= MMAP_THRESHOLD)
    return np.column_stack([np.ones_like(m), m, n_x, elements, read, strided, alloc]).astype(float)


def _huber_fit(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nonnegative coefficients minimising a Huber loss of A @ coef - 1 (rows already divided by their time)."""
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    A_scaled = A / scale
    weights = np.ones(A.shape[0])
    coef = np.zeros(A.shape[1])
    for _ in range(50):  # iteratively reweighted least squares with Huber weights
        coef, _ = nnls(A_scaled * weights[:, None], weights)
        residual = A_scaled @ coef - 1.0
        new_weights = np.sqrt(np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(residual), 1e-12)))
        if np.allclose(new_weights, weights, atol=1e-6):
            break
        weights = new_weights
    values = coef / scale
    return values, np.abs(A @ values - 1.0)


def _huber_loss(rel: np.ndarray) -> float:
    return float(np.where(rel <= HUBER_DELTA, rel**2 / 2, HUBER_DELTA * (rel - HUBER_DELTA / 2)).sum())


def fit_cost_model(
    m: ArrayLike, n_x: ArrayLike, seconds: ArrayLike, *, itemsize: int = 8, bandwidth: Bandwidth | None = None
) -> CostModel | None:
    """Robust nonnegative fit of the relative error; None with fewer than MIN_POINTS distinct cells."""
    m_arr = np.asarray(m, dtype=float)
    n_arr = np.asarray(n_x, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len({(a, b) for a, b in zip(m_arr, n_arr, strict=True)}) < MIN_POINTS:
        return None
    # Divide each row by its time: least squares then minimises relative, not absolute, error.
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    for reach in TLB_REACH_PAGES:
        A = _features(m_arr, n_arr, itemsize, bandwidth, reach) / t[:, None]
        values, rel = _huber_fit(A)
        loss = _huber_loss(rel)
        if best is None or loss < best[0] - 1e-12:
            best = (loss, reach, values, rel)
    assert best is not None
    _, reach, values, rel = best
    return CostModel(
        **{term: float(v) for term, v in zip(TERMS, values, strict=True)},
        points=len(t),
        median_rel_error=float(np.median(rel)),
        max_rel_error=float(rel.max()),
        itemsize=itemsize,
        bandwidth=bandwidth,
        tlb_pages=reach,
    )


def predict_seconds(
    measured: Sequence[tuple[int, int, float]],
    m: int,
    n_x: int,
    *,
    itemsize: int = 8,
    bandwidth: Bandwidth | None = None,
) -> float | None:
    """Predict one call at (m, n_x) from the same implementation's measured (m, n_x, seconds).

    With enough cells, the fitted model. With fewer, the largest measured cell that this one
    contains, scaled by the ratio of elements (time grows at least that fast once the
    per-element cost dominates, and no faster). None if nothing to go on.
    """
    if not measured:
        return None
    ms, ns, ts = zip(*measured, strict=True)
    model = fit_cost_model(ms, ns, ts, itemsize=itemsize, bandwidth=bandwidth)
    if model is not None:
        return model.predict(m, n_x)
    below = [(a, b, t) for a, b, t in measured if a <= m and b <= n_x]
    if not below:
        return None
    a, b, t = max(below, key=lambda c: c[0] * c[1])
    return t * (m * n_x) / (a * b)


def fit_models(frame: pd.DataFrame, bandwidth: Bandwidth | None = None) -> dict[str, CostModel]:
    """One model per implementation, fitted on the ok rows of the given (single-setting) table."""
    models = {}
    ok = frame[frame["status"] == "ok"]
    for name, rows in ok.groupby("implementation", sort=False):
        itemsize = int(np.dtype(str(rows["dtype"].iloc[0])).itemsize) if "dtype" in rows else 8
        model = fit_cost_model(
            rows["m"].to_numpy(),
            rows["n_x"].to_numpy(),
            rows["median_s"].to_numpy(),
            itemsize=itemsize,
            bandwidth=bandwidth,
        )
        if model is not None:
            models[str(name)] = model
    return models


def model_speedup(slow: CostModel, fast: CostModel, m: float, n_x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Model speedup of `fast` over `slow` at one m, against n_x."""
    ms = np.full_like(n_x, m, dtype=float)
    return slow.predict_many(ms, n_x) / fast.predict_many(ms, n_x)
