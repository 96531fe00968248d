"""Timing in a fresh worker process: pinned cores, environment, gate and errors come back to the parent."""

from __future__ import annotations

import os

import pytest

from bench.base.errors import BenchError
from bench.base.records import Cell
from bench.measure.worker import WorkerPool, WorkerRequest, time_in_worker


def test_worker_times_a_cell_on_the_cores_it_was_given() -> None:
    first = min(os.sched_getaffinity(0))
    request = WorkerRequest(Cell("numba_loop", 16, 4, "float64", "F", 1, 3), 0.05, 0.002, 3, cores=(first,))
    result = time_in_worker(request, env={"MALLOC_ARENA_MAX": "1"})
    assert result.cores == (first,)
    assert result.median_s > 0 and result.min_s <= result.median_s and result.rounds >= 1
    assert result.compile_s is not None  # a JIT implementation compiles in the fresh process


def test_worker_places_x_where_asked_and_says_where_it_was() -> None:
    # A 64 x 64 float64 X in F order: 32 KiB, so each worker's X lies wherever its heap was.
    placed = [
        time_in_worker(WorkerRequest(Cell("numba_loop", 64, 64, "float64", "F", 1, 3), 0.02, 0.002, 2, x_offset=o))
        for o in (0, 24, 56)
    ]
    assert [r.x_offset for r in placed] == [0, 24, 56]
    unplaced = time_in_worker(WorkerRequest(Cell("numba_loop", 64, 64, "float64", "F", 1, 3), 0.02, 0.002, 2))
    assert 0 <= unplaced.x_offset < 64 and unplaced.x_offset % 8 == 0
    both = time_in_worker(
        WorkerRequest(Cell("numba_loop", 64, 64, "float64", "C", 1, 3), 0.02, 0.002, 2, x_offset=8, paired_offset=0)
    )
    assert both.x_offset == 8 and both.paired is not None and both.paired.x_offset == 0
    assert both.paired.pid == both.pid and both.paired.median_s > 0 and both.paired.paired is None
    with pytest.raises(BenchError, match="offset must be a multiple of 8"):
        time_in_worker(WorkerRequest(Cell("numba_loop", 64, 64, "float64", "F", 1, 3), 0.02, 0.002, 2, x_offset=12))


def test_worker_errors_are_one_line() -> None:
    request = WorkerRequest(Cell("fully_vectorized", 4, 2, "float64", "Z", 1, 3), 0.05, 0.002, 3)
    with pytest.raises(BenchError, match="worker for fully_vectorized: ValueError") as exc:
        time_in_worker(request)
    assert "\n" not in str(exc.value)


def test_a_pool_keeps_one_worker_per_set_of_cores_and_survives_an_error() -> None:
    first = min(os.sched_getaffinity(0))
    ask = WorkerRequest(Cell("numba_loop", 16, 4, "float64", "F", 1, 3), 0.05, 0.002, 3, cores=(first,))
    with WorkerPool() as pool:
        one, two = pool.time(ask), pool.time(ask)
        assert one.pid == two.pid != os.getpid() and one.cores == (first,)
        assert one.compile_s is not None and two.compile_s is not None
        bad = WorkerRequest(Cell("fully_vectorized", 4, 2, "float64", "Z", 1, 3), 0.05, 0.002, 3, cores=(first,))
        with pytest.raises(BenchError, match="worker for fully_vectorized"):
            pool.time(bad)
        assert pool.time(ask).pid == one.pid  # an error is an answer, not a dead worker
    assert time_in_worker(ask).pid != one.pid  # one-shot: a fresh process every time
