"""A cost model per implementation whose per-element cost depends on where X lives.

    t(m, n_x) = call + step [m >= M or m x n_x >= E]
                + m * (per_example + alloc [m x itemsize >= 128 KiB]) + n_x * per_feature
                + m * n_x * (per_element(bytes of X) + short [m < S]
                             + (strided * beyond(pages per example) + spanned * beyond(2 MiB regions per example))
                               * itemsize / bandwidth(bytes of X))

    per_element(B) = compute + passes * itemsize / bandwidth(B) + sum of the level steps X has gone past

bandwidth(B) is this machine's measured read bandwidth for a working set of B bytes (the memory
sweep in metadata.json), so `passes` (how many times a step reads X at that speed) follows the
step from L1 to main memory. Not every kernel streams: one that waits on each read, or a library
that switches algorithm, slows by more or less than the bandwidth does when X leaves a level. So
each measured level boundary has its own nonnegative step in the per-element cost, fitted where
enough cells lie beyond it (a larger working set never makes an element cheaper). Along the
curve, reads and steps are both linear in seconds per byte, so where every boundary has its step
only each level's cost is identifiable (`level_costs`, model_levels.csv), not how the fit splits
it; `passes` carries the cost into levels no cell has reached yet (the cut-off). The interpreted
loops keep their reading: `compute` is the interpreter's cost per element, the same at every level.

Terms only some cells pay, each with a reach or threshold the fit chooses (at least two measured
cells must pay it, and two not):
- walking one example's features in C order visits n_x rows m x itemsize bytes apart; once they
  span more 4 KiB pages, or more 2 MiB regions (the span of one page-directory entry, and of a
  huge page), than the translation caches hold, every element costs more reads;
- a second fixed cost per call from some size on: a framework that compiles per shape (XLA)
  emits a different program, with more kernels to launch, once its loops get long;
- more per element while the rows of X (m elements each in C order) are shorter than S: a
  compiled loop over a row pays its vector prologue and remainder once per row.

Fitted with nonnegative coefficients and a robust (Huber) loss on the relative error, so
microsecond cells count as much as second-long ones and a few noisy cells do not drag the fit.
Runs made before the sweep get the same model without the bandwidth terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls

from bench.base.constants import DEFAULT_MMAP_THRESHOLD_BYTES
from bench.base.hierarchy import Bandwidth

MIN_POINTS = 3
HUBER_DELTA = 0.1  # relative residuals beyond 10% count linearly, not quadratically
TERMS = (
    "call_s",
    "step_s",
    "per_example_s",
    "per_feature_s",
    "compute_s",
    "short_row_s",
    "passes",
    "strided_passes",
    "spanned_passes",
    "alloc_per_example_s",
)
PAGE = 4096
REGION = 2 * 2**20  # what one page-directory entry maps, and a huge page
# Reaches the fit chooses from, per implementation: in 4 KiB pages and in 2 MiB regions per example.
TLB_REACH_PAGES = (512, 1024, 1536, 2048, 3072, 4096, 8192)
REGION_REACH = (16, 32, 64, 128, 256)
NEVER = float("inf")
# glibc mmaps blocks of 128 KiB and more by default and gives freed memory back, so once a (1, m)
# temporary passes this, every step page-faults its temporaries in again (the robustness study
# measures it): a per-example cost that only large m pays.
MMAP_THRESHOLD = DEFAULT_MMAP_THRESHOLD_BYTES
# A level's own step is fitted only where at least this many cells have X beyond it: with fewer,
# one cell would set it, and the next level out is extrapolated by the bandwidth alone.
MIN_CELLS_PER_STEP = 2
SEARCH_ITERATIONS = 4  # reweighting steps per candidate shape in the search


@dataclass(frozen=True)
class Shape:
    """The discrete choices of one fit: the two reaches and where the second fixed cost starts (NEVER: nowhere)."""

    tlb_pages: float = NEVER
    region_reach: float = NEVER
    step_m: float = NEVER
    step_elements: float = NEVER
    short_rows_below_m: float = 0.0  # rows of X (m elements in C order) shorter than this cost more per element


@dataclass(frozen=True)
class CostModel:
    """Seconds per call as a function of (m, n_x), and how well it fits the measured cells."""

    call_s: float
    step_s: float  # more per call from m >= step_m or m x n_x >= step_elements
    per_example_s: float
    per_feature_s: float
    compute_s: float  # per element, wherever X lives
    short_row_s: float  # more per element while m < short_rows_below_m: rows too short for the vector loops
    passes: float  # reads of X per step at the measured bandwidth for its size
    strided_passes: float  # more such reads, once one example's features span more pages than the TLB holds
    spanned_passes: float  # more again, once they span more 2 MiB regions than the translation caches hold
    alloc_per_example_s: float  # per example, once a (1, m) temporary is past glibc's mmap threshold
    points: int
    median_rel_error: float
    max_rel_error: float
    itemsize: int = 8
    bandwidth: Bandwidth | None = None
    shape: Shape = field(default_factory=Shape)
    level_steps_s: tuple[float, ...] = ()  # per element, once X is past each measured level boundary
    held_out_median_error: float = float("nan")  # each cell predicted by a fit that did not see it

    def predict(self, m: float, n_x: float) -> float:
        return float(self.predict_many(np.array([m], dtype=float), np.array([n_x], dtype=float))[0])

    def predict_many(self, m: NDArray[np.float64], n_x: NDArray[np.float64]) -> NDArray[np.float64]:
        m, n_x = np.asarray(m, float), np.asarray(n_x, float)
        coef = np.array([getattr(self, term) for term in TERMS])
        t = _design(m, n_x, self.itemsize, self.bandwidth, self.shape) @ coef
        return np.asarray(t + self._level_steps(m * n_x * self.itemsize) * m * n_x, dtype=np.float64)

    def _level_steps(self, nbytes: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.bandwidth is None or not self.level_steps_s:
            return np.zeros(np.shape(nbytes))
        beyond = self.bandwidth.beyond_levels(np.atleast_1d(np.asarray(nbytes, dtype=float)))
        return np.asarray(beyond[:, : len(self.level_steps_s)] @ np.asarray(self.level_steps_s), dtype=np.float64)

    def per_element_s(self, nbytes: float) -> float:
        """Seconds per element of X for a working set of nbytes, streamed: compute, reads and level steps."""
        if self.bandwidth is None:
            return self.compute_s
        read = float(self.bandwidth.seconds_per_byte(np.array([nbytes]))[0])
        return self.compute_s + self.passes * self.itemsize * read + float(self._level_steps(np.array([nbytes]))[0])

    def level_costs(self) -> list[tuple[float, float, float]]:
        """Per measured level: (its largest working set in bytes, inf for memory; GB/s; seconds per element there)."""
        if self.bandwidth is None:
            return []
        bw = self.bandwidth
        steps = np.concatenate([[0.0], np.cumsum(self.level_steps_s)])
        out = []
        for k, (gbps, size) in enumerate(zip(bw.levels_gbps, bw.level_bytes, strict=True)):
            read = self.passes * self.itemsize / (gbps * 1e9)
            out.append((size, gbps, self.compute_s + read + float(steps[min(k, len(steps) - 1)])))
        return out


def pages_per_example(m: np.ndarray, n_x: np.ndarray, itemsize: int) -> np.ndarray:
    """Distinct pages one example's features span in a C-ordered (n_x, m) array."""
    return np.asarray(np.minimum(n_x, np.ceil(n_x * m * itemsize / PAGE)), dtype=float)


def regions_per_example(m: np.ndarray, n_x: np.ndarray, itemsize: int) -> np.ndarray:
    """Distinct 2 MiB regions one example's features span in a C-ordered (n_x, m) array."""
    return np.asarray(np.minimum(n_x, np.ceil(n_x * m * itemsize / REGION)), dtype=float)


def beyond_reach(pages: np.ndarray, reach: float) -> np.ndarray:
    """The share of an example's page walks the TLB cannot serve: none up to its reach, all from twice it.

    Linear in log2(pages / reach) in between, since the TLB is not a strict LRU over one example's pages.
    """
    if not np.isfinite(reach):
        return np.zeros(np.shape(pages))
    return np.asarray(np.clip(np.log2(np.maximum(pages, 1.0) / reach), 0.0, 1.0), dtype=float)


def _design(m: np.ndarray, n_x: np.ndarray, itemsize: int, bandwidth: Bandwidth | None, shape: Shape) -> np.ndarray:
    """One column per term of TERMS (the level steps are apart: how many depends on the machine)."""
    elements = m * n_x
    if bandwidth is None:
        read = np.zeros_like(elements)
    else:
        read = elements * itemsize * bandwidth.seconds_per_byte(elements * itemsize)
    strided = read * beyond_reach(pages_per_example(m, n_x, itemsize), shape.tlb_pages)
    spanned = read * beyond_reach(regions_per_example(m, n_x, itemsize), shape.region_reach)
    step = (m >= shape.step_m) | (elements >= shape.step_elements)
    short = elements * (m < shape.short_rows_below_m)
    alloc = m * (m * itemsize >= MMAP_THRESHOLD)
    columns = [np.ones_like(m), step, m, n_x, elements, short, read, strided, spanned, alloc]
    return np.column_stack(columns).astype(float)


def _level_columns(m: np.ndarray, n_x: np.ndarray, itemsize: int, bandwidth: Bandwidth | None) -> np.ndarray:
    """elements x how far past each level boundary X is, for the boundaries enough cells have passed."""
    if bandwidth is None:
        return np.zeros((len(m), 0))
    beyond = bandwidth.beyond_levels(m * n_x * itemsize)
    cells_past = (beyond >= 1.0).sum(axis=0)
    # Only a prefix: a step is fitted where the cells reach beyond it, never for a level they skip past.
    fitted = int(np.argmin(np.append(cells_past >= MIN_CELLS_PER_STEP, False)))
    return np.asarray(beyond[:, :fitted] * (m * n_x)[:, None], dtype=float)


def _huber_fit(
    A: np.ndarray, iterations: int = 50, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonnegative coefficients minimising a Huber loss of A @ coef - 1 (rows already divided by their time).

    Iteratively reweighted least squares, from the given weights (all ones by default).
    Returns the coefficients, |relative errors| and the final weights.
    """
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    A_scaled = A / scale
    weights = np.ones(A.shape[0]) if weights is None else weights
    coef = np.zeros(A.shape[1])
    for _ in range(iterations):
        coef, _ = nnls(A_scaled * weights[:, None], weights)
        residual = A_scaled @ coef - 1.0
        new_weights = np.sqrt(np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(residual), 1e-12)))
        if np.allclose(new_weights, weights, atol=1e-6):
            break
        weights = new_weights
    values = coef / scale
    return values, np.abs(A @ values - 1.0), weights


def _huber_loss(rel: np.ndarray) -> float:
    return float(np.where(rel <= HUBER_DELTA, rel**2 / 2, HUBER_DELTA * (rel - HUBER_DELTA / 2)).sum())


def _choices(m: np.ndarray, n_x: np.ndarray, itemsize: int, bandwidth: Bandwidth | None) -> dict[str, list[float]]:
    """The values each field of Shape may take for these cells (NEVER: the term is left out).

    Thresholds sit at measured sizes, and a value is offered only where at least
    MIN_CELLS_PER_STEP cells pay the term (at least half of it, for the reaches) and as many do
    not: a term one cell alone supports would fit that cell, not explain it.
    """

    def supported(paying: np.ndarray) -> bool:
        return MIN_CELLS_PER_STEP <= int(np.sum(paying)) <= len(paying) - MIN_CELLS_PER_STEP

    choices: dict[str, list[float]] = {"tlb_pages": [NEVER], "region_reach": [NEVER]}
    if bandwidth is not None:  # the strided terms are priced by the bandwidth
        pages, regions = pages_per_example(m, n_x, itemsize), regions_per_example(m, n_x, itemsize)
        choices["tlb_pages"] += [r for r in TLB_REACH_PAGES if supported(beyond_reach(pages, r) >= 0.5)]
        choices["region_reach"] += [r for r in REGION_REACH if supported(beyond_reach(regions, r) >= 0.5)]
    elements = m * n_x
    choices["step_m"] = [NEVER, *(v for v in sorted(set(m.tolist())) if supported(m >= v))]
    choices["step_elements"] = [NEVER, *(v for v in sorted(set(elements.tolist())) if supported(elements >= v))]
    choices["short_rows_below_m"] = [0.0, *(v for v in sorted(set(m.tolist())) if supported(m < v))]
    return choices


def _search_shape(m: np.ndarray, n_x: np.ndarray, t: np.ndarray, itemsize: int, bandwidth: Bandwidth | None) -> Shape:
    """Coordinate descent over the Shape's fields, each candidate scored by its Huber loss.

    A candidate's fit starts from the current shape's robust weights and takes a few steps
    only: near enough to rank candidates, and cheap enough for the cut-off to refit per row.
    """
    levels = _level_columns(m, n_x, itemsize, bandwidth)

    def design(shape: Shape) -> np.ndarray:
        return np.asarray(np.hstack([_design(m, n_x, itemsize, bandwidth, shape), levels]) / t[:, None])

    shape = Shape()
    choices = _choices(m, n_x, itemsize, bandwidth)
    _, rel, weights = _huber_fit(design(shape))
    best = _huber_loss(rel)
    for _ in range(4):
        changed = False
        for name, values in choices.items():
            for value in values:
                candidate = replace(shape, **{name: value})
                _, rel, new_weights = _huber_fit(design(candidate), SEARCH_ITERATIONS, weights)
                loss = _huber_loss(rel)
                if loss < best * (1 - 1e-9):
                    shape, best, weights, changed = candidate, loss, new_weights, True
        if not changed:
            break
    return shape


def _fit(
    m: np.ndarray, n_x: np.ndarray, t: np.ndarray, itemsize: int, bandwidth: Bandwidth | None, shape: Shape
) -> tuple[np.ndarray, np.ndarray]:
    A = np.hstack([_design(m, n_x, itemsize, bandwidth, shape), _level_columns(m, n_x, itemsize, bandwidth)])
    values, rel, _ = _huber_fit(A / t[:, None])
    return values, rel


def fit_cost_model(
    m: ArrayLike,
    n_x: ArrayLike,
    seconds: ArrayLike,
    *,
    itemsize: int = 8,
    bandwidth: Bandwidth | None = None,
    held_out: bool = False,
) -> CostModel | None:
    """Robust nonnegative fit of the relative error; None with fewer than MIN_POINTS distinct cells.

    With held_out, each cell is also predicted by a fit (of the same shape) without it.
    """
    m_arr = np.asarray(m, dtype=float)
    n_arr = np.asarray(n_x, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len({(a, b) for a, b in zip(m_arr, n_arr, strict=True)}) < MIN_POINTS:
        return None
    shape = _search_shape(m_arr, n_arr, t, itemsize, bandwidth)
    values, rel = _fit(m_arr, n_arr, t, itemsize, bandwidth, shape)
    held = float("nan")
    if held_out and len(t) > MIN_POINTS:
        errors = []
        for i in range(len(t)):
            keep = np.arange(len(t)) != i
            part, _ = _fit(m_arr[keep], n_arr[keep], t[keep], itemsize, bandwidth, shape)
            one = _model(part, len(t) - 1, itemsize, bandwidth, shape, rel)
            errors.append(abs(one.predict(m_arr[i], n_arr[i]) / t[i] - 1.0))
        held = float(np.median(errors))
    return replace(_model(values, len(t), itemsize, bandwidth, shape, rel), held_out_median_error=held)


def _model(
    values: np.ndarray,
    points: int,
    itemsize: int,
    bandwidth: Bandwidth | None,
    shape: Shape,
    rel: np.ndarray,
) -> CostModel:
    scalars = {term: float(v) for term, v in zip(TERMS, values[: len(TERMS)], strict=True)}
    return CostModel(
        **scalars,
        points=points,
        median_rel_error=float(np.median(rel)),
        max_rel_error=float(rel.max()),
        itemsize=itemsize,
        bandwidth=bandwidth,
        shape=shape,
        level_steps_s=tuple(float(v) for v in values[len(TERMS) :]),
    )


def fit_models(
    frame: pd.DataFrame, bandwidth: Bandwidth | None = None, *, held_out: bool = False
) -> dict[str, CostModel]:
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
            held_out=held_out,
        )
        if model is not None:
            models[str(name)] = model
    return models


def model_speedup(slow: CostModel, fast: CostModel, m: float, n_x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Model speedup of `fast` over `slow` at one m, against n_x."""
    ms = np.full_like(n_x, m, dtype=float)
    return slow.predict_many(ms, n_x) / fast.predict_many(ms, n_x)
