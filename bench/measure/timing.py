"""How one call is timed; every entry point (grid runner, pytest benchmarks, lecture demo) uses this.

The rules, and why:
- Data is made before timing starts; the timed callable only calls the function.
- For JIT code the first call compiles; its time is returned apart as compile_s and never
  enters the statistics.
- One untimed warm-up call after that: caches, page faults and lazy initialisation.
- Loops per round are calibrated so a round lasts round_s, thousands of times the clock's
  resolution, so clock granularity and the timer's own cost are negligible.
- Rounds are repeated (MIN_ROUNDS or more where the budget allows) and summarised by the median
  and the IQR, which a single noisy round on a shared machine cannot move much; min is
  kept too, as the least-disturbed estimate.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numba
import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from implementations.interface import ThreadHook

T = TypeVar("T")
CLOCK = time.perf_counter
# Fewer rounds than this are reported as "few rounds" (a slow cell that hit its budget).
MIN_ROUNDS = 5


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(value: str | int) -> int:
    """'all' means every available core; otherwise a positive integer."""
    if value == "all":
        return available_cores()
    count = int(value)
    if count < 1:
        raise ValueError(f"thread count must be a positive integer or 'all', got {value!r}")
    return count


@contextmanager
def thread_limits(threads: int, own: ThreadHook | None = None) -> Iterator[None]:
    """Fix BLAS (through threadpoolctl), Numba and, if given, an implementation's own pool to `threads`.

    own is the implementation's thread_hook (e.g. PyTorch's intra-op pool). Every pool is
    restored afterwards, so nothing leaks into later measurements; nothing is set at import time.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        with threadpool_limits(limits=threads, user_api="blas"), own(threads) if own else nullcontext():
            yield
    finally:
        numba.set_num_threads(previous)


# What a timing contributes to a row of the results table, wherever it was measured.
TIMING_FIELDS = ("median_s", "iqr_s", "min_s", "rounds", "loops", "compile_s")


@dataclass(frozen=True)
class Timing(Generic[T]):
    """Seconds per call over `rounds` rounds of `loops` calls, and the warm-up call's result."""

    median_s: float
    iqr_s: float
    min_s: float
    rounds: int
    loops: int
    compile_s: float | None
    result: T


def _time_loops(fn: Callable[[], object], loops: int) -> float:
    # The loop itself costs ~20 ns a pass, well under 1% of the fastest call measured here.
    start = CLOCK()
    for _ in range(loops):
        fn()
    return CLOCK() - start


def measure(
    fn: Callable[[], T],
    *,
    jit: bool = False,
    budget_s: float = 2.0,
    round_s: float = 0.01,
    max_rounds: int = 10,
    check: Callable[[T], None] | None = None,
) -> Timing[T]:
    """Time fn() with a compile call (jit), a warm-up call, calibrated loops and repeated rounds.

    Rounds: as many as fit budget_s, at most max_rounds. Budgets are set so that at least
    MIN_ROUNDS fit for all but slow calls; those get fewer (at least 1), and `rounds` says so.
    check, if given, sees the warm-up call's result before any round is timed.
    """
    compile_s = None
    if jit:
        start = CLOCK()
        fn()
        compile_s = CLOCK() - start
    start = CLOCK()
    result = fn()
    round_time = CLOCK() - start
    if check is not None:
        check(result)  # the correctness gate: nothing is timed for a wrong answer

    # Calibrate as timeit.autorange does: grow the loops until one round lasts round_s.
    # A call that already takes round_s or longer runs once per round.
    loops = 1
    if round_time < round_s:
        round_time = _time_loops(fn, loops)
        while round_time < round_s:
            # Jump towards the target, at least doubling, at most x10 against a noisy estimate.
            factor = math.ceil(round_s / max(round_time, 1e-9))
            loops *= min(10, max(2, factor))
            round_time = _time_loops(fn, loops)

    rounds = max(1, min(max_rounds, int(budget_s // round_time)))
    samples = np.array([_time_loops(fn, loops) / loops for _ in range(rounds)])
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(
        median_s=float(median),
        iqr_s=float(q3 - q1),
        min_s=float(samples.min()),
        rounds=rounds,
        loops=loops,
        compile_s=compile_s,
        result=result,
    )
