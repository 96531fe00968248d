"""The timing rules: compile apart, a gate before timing, calibrated loops, bounded rounds, threads restored."""

from __future__ import annotations

import time

import numba
import pytest
from threadpoolctl import threadpool_info

from bench.measure.timing import measure, resolve_threads, thread_limits


def test_loops_are_calibrated_and_first_calls_are_kept_out() -> None:
    calls = {"n": 0}

    def fn() -> int:
        calls["n"] += 1
        return calls["n"]

    seen: list[int] = []
    timing = measure(fn, jit=True, round_s=0.002, max_rounds=6, budget_s=1.0, check=seen.append)
    assert seen == [2]  # the gate saw the warm-up call's result, after the compile call
    assert timing.compile_s is not None
    assert timing.loops > 100 and timing.rounds == 6
    assert timing.min_s <= timing.median_s and timing.iqr_s >= 0
    assert timing.median_s * timing.loops >= 0.002 * 0.5


def test_slow_calls_get_fewer_rounds_within_the_budget() -> None:
    timing = measure(lambda: time.sleep(0.03), round_s=0.001, max_rounds=10, budget_s=0.1)
    assert timing.loops == 1 and 1 <= timing.rounds <= 3
    assert timing.median_s >= 0.03


def test_a_failing_gate_stops_before_any_timing() -> None:
    calls = {"n": 0}

    def fn() -> None:
        calls["n"] += 1

    def gate(_: None) -> None:
        raise RuntimeError("wrong answer")

    with pytest.raises(RuntimeError):
        measure(fn, check=gate)
    assert calls["n"] == 1


def test_thread_limits_fix_both_pools_and_restore_them() -> None:
    before_numba = numba.get_num_threads()
    before_blas = [i["num_threads"] for i in threadpool_info()]
    with thread_limits(1):
        assert numba.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert numba.get_num_threads() == before_numba
    assert [i["num_threads"] for i in threadpool_info()] == before_blas


def test_resolve_threads() -> None:
    assert resolve_threads("all") >= 1
    assert resolve_threads("3") == 3
    with pytest.raises(ValueError, match="positive"):
        resolve_threads("0")
