"""pytest-benchmark: every registered implementation at a few representative sizes.

`pytest --benchmark-only` times them (grouped by size, so the table compares implementations
at each size); `make test` runs each body once with --benchmark-disable and still checks the
answer. Same conventions as the grid runner, from the same code: data from bench.measure.data,
threads fixed by bench.measure.timing.thread_limits, the answer checked by the runner's gate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from threadpoolctl import threadpool_info

from bench.base.constants import COURSE_SHAPE, DEFAULT_SEED
from bench.base.records import Cell
from bench.measure.data import GRID_X_OFFSET, Problem, make_problem
from bench.measure.here import correctness_gate
from bench.measure.timing import thread_limits
from implementations import REFERENCE, REGISTRY, Gradients

SEED = 20240917
THREADS = 1  # the headline comparison; the grid runner measures other counts
# (m, n_x): small, medium, the course's own shape, and X of 64 MiB (twice a 32 MiB cache).
SIZES = [(256, 16), (4096, 256), COURSE_SHAPE, (8192, 1024)]
# The loops interpreted per element cost ~0.1-0.4 µs per element here, so 2e6 elements is
# up to a second per call: beyond that they are left out, the others still run.
PER_ELEMENT_INTERPRETED = {"two_loop", "two_loop_lists"}
TWO_LOOP_MAX_ELEMENTS = 2_000_000


@cache
def _problem(m: int, n_x: int) -> Problem:
    # X placed as the grid places it, so both time the same data in the same place.
    return make_problem(m, n_x, seed=SEED).as_layout("float64", "C", GRID_X_OFFSET)


@cache
def _reference(m: int, n_x: int) -> Gradients:
    p = _problem(m, n_x)
    with thread_limits(THREADS):
        return REGISTRY[REFERENCE].propagate(p.w, p.b, p.X, p.Y)


def _cases() -> Iterator[object]:
    for m, n_x in SIZES:
        for name in REGISTRY:
            marks = []
            if name in PER_ELEMENT_INTERPRETED and m * n_x > TWO_LOOP_MAX_ELEMENTS:
                marks.append(pytest.mark.skip(reason=f"{name} takes over a second at m={m}, n_x={n_x}"))
            yield pytest.param(name, m, n_x, id=f"{name}-m{m}-nx{n_x}", marks=marks)


@pytest.fixture(autouse=True)
def _fixed_threads() -> Iterator[None]:
    with thread_limits(THREADS):
        yield


@pytest.mark.parametrize(("name", "m", "n_x"), list(_cases()))
def test_propagate(benchmark: BenchmarkFixture, name: str, m: int, n_x: int) -> None:
    impl = REGISTRY[name]
    if impl.unavailable:
        pytest.skip(impl.unavailable)
    p = _problem(m, n_x)  # made outside the timed region
    prepared = impl.setup(p.w, p.b, p.X, p.Y)  # conversion to the implementation's own data, untimed
    start = time.perf_counter()
    prepared.step()  # compiles JIT code before any timing
    first_call_s = time.perf_counter() - start

    benchmark.group = f"m={m} n_x={n_x}"
    benchmark.extra_info.update(
        {
            "implementation": name,
            "m": m,
            "n_x": n_x,
            "dtype": str(p.X.dtype),
            "layout": "C",
            "threads": THREADS,
            "bytes_x": p.nbytes_x,
            "compile_s": first_call_s if impl.jit else None,
            "blas": [f"{i['internal_api']} {i['version']} x{i['num_threads']}" for i in threadpool_info()],
        }
    )
    grads = prepared.gradients(benchmark(prepared.step))

    check = correctness_gate(Cell(name, m, n_x, str(p.X.dtype), "C", THREADS, DEFAULT_SEED), _reference(m, n_x))
    check(grads)
    assert grads.dw.shape == (n_x, 1) and np.isfinite(grads.cost)
