"""A cost model of one gradient step with few physical parameters, each named, with a unit and a source.

    t(m, n_x) = call + m x per_example + n_x x per_feature
                + m x n_x x (per_element + reads x itemsize x [read time per byte of X's level - of L1]
                             + walk_stall x [a line's read time from X's level] x lost(n_x lines, stride))
                + m x alloc_per_example x past(m x itemsize, glibc's mmap threshold)

- `reads` is how many times the algorithm reads X (Implementation.reads_of_x: the note's full
  vectorisation 2, a fused kernel 1), priced by this machine's measured read bandwidth for a
  working set of X's size (the memory sweep), over what L1 costs: nothing is fitted there.
- `walk_stall` only for an implementation that walks one example's features at a time
  (Implementation.strided_walk) in C order, where those features lie m x itemsize bytes apart:
  a walk touches n_x cache lines, and the next examples reuse them only while they stay in
  cache. walk_stall is the part of a line read from where X lives that each element then waits
  for (dimensionless). How many lines outgrew the cache (a share, 0 to 1):
  - a stride that is 2^k lines maps the lines to 1/2^k of a cache's sets (aliasing), so the
    walk fills the cache as if it had 2^k times as many lines (the power-of-two effect);
  - a compiled walk (Implementation.jit) keeps its lines while they fill up to a quarter of L2's
    measured capacity (the adjacent-line prefetch doubles each row's footprint and replacement
    is not LRU), and loses all of them at its full capacity; the prefetchers follow the walk's stride
    within a 4 KiB page, so a stride of s bytes waits min(1, s / 4096) of it;
  - an interpreted walk does the interpreter's own work between two examples, which evicts
    lines: the share grows from L1's measured capacity to L2's.
- `alloc_per_example` only for an implementation with (1, m) temporaries (Implementation.temporaries):
  past glibc's mmap threshold they are page-faulted in again on every step (the robustness study).

The rest (call, per_example, per_feature, per_element) is fitted, nonnegative, with a robust
(Huber) loss on the relative error, so microsecond cells count as much as second-long ones.
At most six fitted numbers per implementation; a model is tested on cells it did not see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls

from bench.base.constants import DEFAULT_MMAP_THRESHOLD_BYTES
from bench.base.hierarchy import Bandwidth
from implementations import REGISTRY

MIN_POINTS = 3
HUBER_DELTA = 0.1  # relative residuals beyond 10% count linearly, not quadratically
LINE = 64  # bytes of a cache line
PAGE = 4096  # bytes: hardware prefetchers do not cross a 4 KiB page
# A compiled walk's lines stay in L2 while they fill up to this share of its measured capacity,
# and are lost log-linearly up to all of it (measured on an AMD EPYC with numba_loop at an odd
# stride of 125 lines: 1.4 ns per element with 3,000 lines, 19% of L2; 3.9 ns with 10,000, 61%).
# A ramp over two doublings rather than one: the measured L2 capacity moves by up to 30% from
# run to run on a VM, and a steep ramp turned that into 80% errors.
L2_SHARE_KEPT = 0.25
MIN_CELLS_PAST = 2  # a term some cells pay is offered only where at least this many measured cells pay it
# The allocation term grows from glibc's default mmap threshold to 8 times it: the dynamic threshold
# follows the sizes freed, so only some steps fault their temporaries in just past it.
ALLOC_RAMP = 3.0
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Facts:
    """What the model takes from the implementation rather than from the fit."""

    reads: float = 1.0  # reads of X per step, by the algorithm
    strided_walk: bool = False  # walks one example's features at a time (strided in C order)
    temporaries: bool = False  # allocates (1, m) temporaries every step
    compiled: bool = False  # machine code between two examples of a walk, no interpreter

    @staticmethod
    def of(name: str) -> Facts:
        impl = REGISTRY.get(name)
        if impl is None:
            return Facts()
        return Facts(
            reads=float(impl.reads_of_x) if impl.reads_of_x is not None else 1.0,
            strided_walk=impl.strided_walk,
            temporaries=impl.temporaries == "examples",
            compiled=impl.jit,
        )


@dataclass(frozen=True)
class Parameter:
    """One number of a model: its value, unit, where it came from and what it is."""

    name: str
    value: float
    unit: str
    source: str  # "fitted", "algorithm" or "measured (memory sweep)"
    meaning: str


FITTED = ("call_s", "per_example_s", "per_feature_s", "per_element_s", "walk_stall", "alloc_per_example_s")
MEANINGS = {
    "call_s": ("s", "fixed cost of one call"),
    "per_example_s": ("s", "cost per example (a Python-level iteration, a (1, m) temporary's element)"),
    "per_feature_s": ("s", "cost per feature ((n_x, 1) arrays: w, dw)"),
    "per_element_s": ("s", "cost per element of X with X in L1 (the arithmetic and an L1 read)"),
    "walk_stall": ("lines", "share of a line read each element of a strided walk waits for, once n_x lines outgrow L1"),
    "alloc_per_example_s": ("s", "more per example once (1, m) temporaries pass glibc's mmap threshold"),
}


@dataclass(frozen=True)
class CostModel:
    """A fitted model for one implementation in one setting; errors are relative, |predicted / measured - 1|."""

    call_s: float
    per_example_s: float
    per_feature_s: float
    per_element_s: float
    walk_stall: float
    alloc_per_example_s: float
    walks: bool  # the walk term applies (a strided walk in C order)
    facts: Facts
    itemsize: int
    bandwidth: Bandwidth | None
    points: int
    median_rel_error: float
    max_rel_error: float
    held_out_median_error: float = float("nan")  # leave one cell out, predict it
    held_out_max_error: float = float("nan")

    def predict_many(self, m: ArrayLike, n_x: ArrayLike) -> FloatArray:
        m_arr, n_arr = np.asarray(m, dtype=float), np.asarray(n_x, dtype=float)
        coef = np.array([getattr(self, name) for name in FITTED])
        columns = _columns(m_arr, n_arr, self.itemsize, self.bandwidth, self.walks, self.facts.compiled)
        return np.asarray(columns @ coef + _reads_s(m_arr, n_arr, self.itemsize, self.bandwidth, self.facts))

    def predict(self, m: float, n_x: float) -> float:
        return float(self.predict_many(np.array([m]), np.array([n_x]))[0])

    def element_s(self, nbytes: float) -> float:
        """Seconds per element of X streamed from a working set of nbytes (no walk or allocation term)."""
        extra = _extra_s_per_byte(np.array([nbytes]), self.bandwidth)[0]
        return self.per_element_s + self.facts.reads * self.itemsize * float(extra)

    def parameters(self) -> list[Parameter]:
        """The model's numbers, fitted and given, with units and sources (model.csv)."""
        out = [Parameter(name, float(getattr(self, name)), *_unit_meaning(name, "fitted")) for name in FITTED]
        out = [p for p in out if p.name not in self._unused()]
        out.append(Parameter("reads_of_x", self.facts.reads, "reads per step", "algorithm",
                             "how many times a step reads X, priced by the measured read bandwidth"))  # fmt: skip
        return out

    def _unused(self) -> set[str]:
        unused = set()
        if not self.walks:
            unused.add("walk_stall")
        if not self.facts.temporaries:
            unused.add("alloc_per_example_s")
        return unused

    @property
    def fitted_count(self) -> int:
        return len(FITTED) - len(self._unused())


def _unit_meaning(name: str, source: str) -> tuple[str, str, str]:
    unit, meaning = MEANINGS[name]
    return unit, source, meaning


def beyond_reach(count: FloatArray, reach: float, doublings: float = 1.0) -> FloatArray:
    """The share past a reach: none up to it, all from `doublings` doublings on, log-linear between.

    For a walk's lines outgrowing L1 (a cache is not a strict LRU), and for glibc's threshold (it
    moves with the sizes a process frees: the dynamic mmap threshold).
    """
    if not np.isfinite(reach):
        return np.zeros(np.shape(count))
    return np.asarray(np.clip(np.log2(np.maximum(count, 1.0) / reach) / doublings, 0.0, 1.0), dtype=float)


def _extra_s_per_byte(nbytes: FloatArray, bandwidth: Bandwidth | None) -> FloatArray:
    """Read time per byte of a working set of nbytes over that of the fastest level (0 without a sweep)."""
    if bandwidth is None:
        return np.zeros(np.shape(nbytes))
    spb = bandwidth.seconds_per_byte(np.maximum(np.asarray(nbytes, dtype=float), 1.0))
    fastest = float(bandwidth.seconds_per_byte(np.array([min(bandwidth.sizes)]))[0])
    return np.asarray(np.maximum(spb - fastest, 0.0), dtype=float)


def _reads_s(m: FloatArray, n_x: FloatArray, itemsize: int, bandwidth: Bandwidth | None, facts: Facts) -> FloatArray:
    """The measured part: the algorithm's reads of X at the sweep's bandwidth for X's size, beyond L1."""
    elements = m * n_x
    return np.asarray(facts.reads * itemsize * elements * _extra_s_per_byte(elements * itemsize, bandwidth))


def aliasing(m: FloatArray, itemsize: int) -> FloatArray:
    """2^k for a row stride of 2^k x an odd number of lines (1 for a stride that is not whole lines).

    Consecutive features then fall in 1/2^k of a cache's sets: a walk fills it 2^k times as fast.
    """
    stride = np.round(np.asarray(m, dtype=float) * itemsize).astype(np.int64)
    lines = np.where(stride % LINE == 0, stride // LINE, 1)
    lowest = lines & -lines  # the largest power of two dividing it
    return np.asarray(np.minimum(lowest, 1 << 20), dtype=float)


def walk_share(
    m: FloatArray, n_x: FloatArray, itemsize: int, bandwidth: Bandwidth | None, compiled: bool
) -> FloatArray:
    """How much of a strided walk's reuse is lost: 0 while its n_x lines stay in cache, up to 1.

    The capacities are the sweep's measured levels; see the module's docstring for the two kinds of walk.
    """
    caps = [c for c in (bandwidth.level_bytes if bandwidth is not None else ()) if np.isfinite(c)]
    if len(caps) < 2:
        return np.zeros(np.shape(n_x))
    footprint = n_x * LINE * aliasing(m, itemsize)
    if not compiled:
        return beyond_reach(footprint, caps[0], float(np.log2(caps[1] / caps[0])))
    prefetched = np.minimum(1.0, m * itemsize / PAGE)
    return np.asarray(beyond_reach(footprint, caps[1] * L2_SHARE_KEPT, np.log2(1 / L2_SHARE_KEPT)) * prefetched)


def _columns(
    m: FloatArray, n_x: FloatArray, itemsize: int, bandwidth: Bandwidth | None, walk: bool, compiled: bool = False
) -> FloatArray:
    """One column per FITTED term; the walk column only for a strided walk (C order, a loop over examples)."""
    elements = m * n_x
    if walk:
        line_s = LINE * _extra_s_per_byte(elements * itemsize, bandwidth)
        walk_col = elements * line_s * walk_share(m, n_x, itemsize, bandwidth, compiled)
    else:
        walk_col = np.zeros_like(elements)
    alloc = m * beyond_reach(m * itemsize, DEFAULT_MMAP_THRESHOLD_BYTES, ALLOC_RAMP)
    return np.column_stack([np.ones_like(m), m, n_x, elements, walk_col, alloc]).astype(float)


def _huber_fit(A: FloatArray, iterations: int = 50) -> tuple[FloatArray, FloatArray]:
    """Nonnegative coefficients minimising a Huber loss of A @ coef - 1 (rows already divided by their time)."""
    b = np.ones(A.shape[0])
    weights = np.ones(A.shape[0])
    coef = np.zeros(A.shape[1])
    for _ in range(iterations):
        sw = np.sqrt(weights)
        coef, _ = nnls(A * sw[:, None], b * sw)
        residual = np.abs(A @ coef - b)
        new = np.where(residual <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(residual, 1e-300))
        if np.allclose(new, weights, rtol=1e-6, atol=1e-9):
            break
        weights = new
    return coef, np.abs(A @ coef - b)


@dataclass(frozen=True)
class _Cells:
    m: FloatArray
    n_x: FloatArray
    t: FloatArray
    itemsize: int
    bandwidth: Bandwidth | None
    facts: Facts
    layout: str

    def take(self, keep: NDArray[np.bool_]) -> _Cells:
        return replace(self, m=self.m[keep], n_x=self.n_x[keep], t=self.t[keep])


def _walks(cells: _Cells) -> bool:
    return cells.facts.strided_walk and cells.layout == "C"


def _offered(cells: _Cells) -> NDArray[np.bool_]:
    """Which FITTED terms this implementation may use on these cells (enough cells pay each)."""
    cols = _columns(cells.m, cells.n_x, cells.itemsize, cells.bandwidth, _walks(cells), cells.facts.compiled)
    paying = (cols > 0).sum(axis=0)
    offered = np.ones(len(FITTED), dtype=bool)
    offered[4] = _walks(cells) and paying[4] >= MIN_CELLS_PAST
    offered[5] = cells.facts.temporaries and paying[5] >= MIN_CELLS_PAST
    return offered


def _fit(cells: _Cells) -> CostModel:
    """Nonnegative coefficients (zero where a term is not offered) and the relative errors on the cells."""
    fixed = _reads_s(cells.m, cells.n_x, cells.itemsize, cells.bandwidth, cells.facts)
    cols = _columns(cells.m, cells.n_x, cells.itemsize, cells.bandwidth, _walks(cells), cells.facts.compiled)
    offered = _offered(cells)
    # t = cols @ coef + fixed, relative: (cols / t) @ coef = 1 - fixed / t.
    scale = np.maximum(1.0 - fixed / cells.t, 1e-6)
    part, _ = _huber_fit(cols[:, offered] / (cells.t * scale)[:, None])
    coef = np.zeros(len(FITTED))
    coef[offered] = part
    rel = np.abs((cols @ coef + fixed) / cells.t - 1.0)
    return CostModel(
        **{name: float(c) for name, c in zip(FITTED, coef, strict=True)},
        walks=_walks(cells),
        facts=cells.facts,
        itemsize=cells.itemsize,
        bandwidth=cells.bandwidth,
        points=len(cells.t),
        median_rel_error=float(np.median(rel)),
        max_rel_error=float(rel.max()),
    )


def fit_cost_model(
    m: ArrayLike,
    n_x: ArrayLike,
    seconds: ArrayLike,
    *,
    itemsize: int = 8,
    bandwidth: Bandwidth | None = None,
    facts: Facts | None = None,
    layout: str = "C",
    held_out: bool = False,
) -> CostModel | None:
    """The model of one implementation's cells; None with fewer than MIN_POINTS distinct cells.

    With held_out, each cell is also predicted by a fit that did not see it.
    """
    cells = _Cells(
        np.asarray(m, dtype=float), np.asarray(n_x, dtype=float), np.asarray(seconds, dtype=float), itemsize,
        bandwidth, facts or Facts(), layout,
    )  # fmt: skip
    if len(set(zip(cells.m, cells.n_x, strict=True))) < MIN_POINTS:
        return None
    model = _fit(cells)
    if not held_out or len(cells.t) <= MIN_POINTS:
        return model
    errors = []
    for i in range(len(cells.t)):
        keep = np.arange(len(cells.t)) != i
        part = cells.take(keep)
        one = _fit(part)
        errors.append(abs(one.predict(cells.m[i], cells.n_x[i]) / cells.t[i] - 1.0))
    return replace(model, held_out_median_error=float(np.median(errors)), held_out_max_error=float(max(errors)))


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
            facts=Facts.of(str(name)),
            layout=str(rows["layout"].iloc[0]) if "layout" in rows else "C",
            held_out=held_out,
        )
        if model is not None:
            models[str(name)] = model
    return models


def model_speedup(slow: CostModel, fast: CostModel, m: float, n_x: FloatArray) -> FloatArray:
    """Model speedup of `fast` over `slow` at one m, against n_x."""
    ms = np.full_like(n_x, m, dtype=float)
    return np.asarray(slow.predict_many(ms, n_x) / fast.predict_many(ms, n_x))
