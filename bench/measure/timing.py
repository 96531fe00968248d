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
- In the grid, the implementations of a cell are timed together: their rounds alternate in a
  fresh random order (run_interleaved), with a canary workload in every round that tracks
  the machine's own speed through the run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from bench.base.records import Summary

if TYPE_CHECKING:
    from implementations.interface import ThreadHook

T = TypeVar("T")
CLOCK = time.perf_counter
# Fewer rounds than this are reported as "few rounds" (a slow cell that hit its budget).
MIN_ROUNDS = 5
# Untimed calls before a block of consecutive rounds that follows a pause (run_blocked, the
# kernels by hand): at least this long, and one call at least.
WARMUP_S = 0.02


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


@dataclass(frozen=True)
class Timing(Summary, Generic[T]):
    """A summary, and the warm-up call's result."""

    result: T


def warm_up(fn: Callable[[], object], seconds: float = WARMUP_S, clock: Callable[[], float] = CLOCK) -> None:
    """Calls fn, untimed, until `seconds` have passed (once at least)."""
    start = clock()
    fn()
    while clock() - start < seconds:
        fn()


def _time_loops(fn: Callable[[], object], loops: int, clock: Callable[[], float] = CLOCK) -> float:
    # The loop itself costs ~20 ns a pass, well under 1% of the fastest call measured here.
    start = clock()
    for _ in range(loops):
        fn()
    return clock() - start


@dataclass(frozen=True)
class Calibration(Generic[T]):
    """What happens before any round is timed: compile (jit), warm-up and its result, loops per round."""

    loops: int
    round_time: float  # seconds one round of `loops` calls took while calibrating
    compile_s: float | None
    result: T


def calibrate(
    fn: Callable[[], T],
    *,
    jit: bool = False,
    round_s: float = 0.01,
    check: Callable[[T], None] | None = None,
    clock: Callable[[], float] = CLOCK,
) -> Calibration[T]:
    """Compile call (jit), warm-up call, the correctness check, then loops per round as timeit.autorange.

    check, if given, sees the warm-up call's result before anything else is timed.
    """
    compile_s = None
    if jit:
        start = clock()
        fn()
        compile_s = clock() - start
    start = clock()
    result = fn()
    round_time = clock() - start
    if check is not None:
        check(result)  # the correctness gate: nothing is timed for a wrong answer
    # Grow the loops until one round lasts round_s; a call that already takes that long runs once a round.
    loops = 1
    if round_time < round_s:
        round_time = _time_loops(fn, loops, clock)
        while round_time < round_s:
            # Jump towards the target, at least doubling, at most x10 against a noisy estimate.
            factor = math.ceil(round_s / max(round_time, 1e-9))
            loops *= min(10, max(2, factor))
            round_time = _time_loops(fn, loops, clock)
    return Calibration(loops=loops, round_time=round_time, compile_s=compile_s, result=result)


def summarise(samples: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(median, IQR, min) of seconds per call."""
    q1, median, q3 = np.percentile(np.asarray(samples, dtype=float), [25, 50, 75])
    return float(median), float(q3 - q1), float(np.min(samples))


def measure(
    fn: Callable[[], T],
    *,
    jit: bool = False,
    budget_s: float = 2.0,
    round_s: float = 0.01,
    max_rounds: int = 10,
    check: Callable[[T], None] | None = None,
) -> Timing[T]:
    """Time fn() alone: calibrate, then as many rounds as fit budget_s, at most max_rounds (at least 1).

    Budgets are set so that at least MIN_ROUNDS fit for all but slow calls; those get fewer,
    and `rounds` says so. The grid runner times a cell's implementations together instead
    (interleave); this is for one callable on its own (workers, studies, the lecture demo).
    """
    cal = calibrate(fn, jit=jit, round_s=round_s, check=check)
    (rounds,) = round_counts([Contender(fn, cal.loops, cal.round_time)], budget_s, max_rounds)
    samples = [_time_loops(fn, cal.loops) / cal.loops for _ in range(rounds)]
    median, iqr, low = summarise(samples)
    return Timing(
        median_s=median,
        iqr_s=iqr,
        min_s=low,
        rounds=rounds,
        loops=cal.loops,
        compile_s=cal.compile_s,
        result=cal.result,
    )


# -- Interleaved rounds ------------------------------------------------------------------------
# A shared machine changes speed over seconds (a neighbour, a browser tab, frequency). Timing
# all rounds of A, then all of B, lets such a stretch land on one of them and move A/B by
# 2x. Timing one round of each, in a fresh random order every round (Google Benchmark's
# random interleaving, asv's interleaved rounds), puts both under the same stretch, and the
# ratio of the two rounds cancels it.


@dataclass
class Contender:
    """One callable in an interleaved set, calibrated; samples and stamps are keyed by round number."""

    fn: Callable[[], object]
    loops: int
    round_time: float
    min_rounds: int = 1  # slow calls that must still be measured (the course shape) get at least this many
    enter: Callable[[], AbstractContextManager[object]] = nullcontext  # e.g. an implementation's own thread pool
    samples: dict[int, float] = field(default_factory=dict)  # round -> seconds per call
    stamps: dict[int, float] = field(default_factory=dict)  # round -> clock when the round ended


class ContenderError(Exception):
    """A contender's call raised during its rounds; `index` is its place in the list that was timed."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"contender {index}: {error}")
        self.index = index
        self.error = error


def round_counts(contenders: Sequence[Contender], budget_s: float, max_rounds: int) -> list[int]:
    """Rounds per contender: as many as its budget holds, at most max_rounds, at least its min_rounds."""
    return [max(c.min_rounds, 1, min(max_rounds, int(budget_s // max(c.round_time, 1e-12)))) for c in contenders]


def schedule(counts: Sequence[int]) -> list[list[int]]:
    """Which contenders are timed in each round: every one spreads its own count evenly over the rounds.

    A fast kernel runs in every round; a slow baseline that has budget for 3 of 10 rounds runs
    in rounds 0, 3 and 6, so each of its rounds still has a fast partner timed beside it.
    """
    total = max(counts, default=0)
    rounds: list[list[int]] = [[] for _ in range(total)]
    for index, count in enumerate(counts):
        for k in range(count):
            rounds[(k * total) // count].append(index)
    return rounds


def run_interleaved(
    contenders: Sequence[Contender],
    plan: Sequence[Sequence[int]],
    rng: np.random.Generator,
    *,
    first_round: int = 0,
    clock: Callable[[], float] = CLOCK,
) -> list[list[int]]:
    """Time the plan's rounds, each in a fresh random order; returns the order each round used."""
    orders = []
    for offset, members in enumerate(plan):
        number = first_round + offset
        order = [int(i) for i in rng.permutation(np.asarray(members, dtype=int))]
        for index in order:
            contender = contenders[index]
            try:
                with contender.enter():
                    seconds = _time_loops(contender.fn, contender.loops, clock)
            except Exception as exc:
                raise ContenderError(index, exc) from exc
            contender.samples[number] = seconds / contender.loops
            contender.stamps[number] = clock()
        orders.append(order)
    return orders


def run_blocked(
    contenders: Sequence[Contender],
    counts: Sequence[int],
    *,
    first_round: int = 0,
    settle_s: float = 0.0,
    warmup_s: float = WARMUP_S,
    canary: Contender | None = None,
    clock: Callable[[], float] = CLOCK,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """All rounds of one contender, then the next, with settle_s between: for pools that disturb each other.

    Multi-threaded rows: a BLAS pool left spinning after its call took a core from the next
    pool's call (1.6x slower), so switching pools every round would need a pause every round.
    Each block starts with untimed calls, for warmup_s at least and one call at least: after
    the pause a pool's workers are asleep, and the first call pays for waking them (on a 2-core
    VM, libgomp's took 6-8 ms after 50 ms idle; in a reference run without this call,
    fully_vectorized's first round of a block was 1.24x its other rounds at the median of its
    blocks of steps over 1 ms, up to 2.6x), which is not a step's cost in a training loop. One
    call was not enough for short steps: on the same VM (2 threads, 10 ms rounds of 1.6-6.5 ms
    steps) the first round after one untimed call was still 1.03-1.07x the block's median, both
    threads slower alike (clock stamps in each); after 20 ms of calls, 0.99-1.01x.
    The canary, if given, is timed once after each block and its pause, as round first_round + block.
    """
    for block, (contender, count) in enumerate(zip(contenders, counts, strict=True)):
        try:
            with contender.enter():
                warm_up(contender.fn, warmup_s, clock)
                for number in range(first_round, first_round + count):
                    contender.samples[number] = _time_loops(contender.fn, contender.loops, clock) / contender.loops
                    contender.stamps[number] = clock()
        except Exception as exc:
            raise ContenderError(block, exc) from exc
        if settle_s:
            sleep(settle_s)
        if canary is not None:
            canary.samples[first_round + block] = _time_loops(canary.fn, canary.loops, clock) / canary.loops
            canary.stamps[first_round + block] = clock()


def _canary_work(vector: np.ndarray) -> float:
    # Half interpreter, half vector work over 256 KiB: both kinds of code the grid times slow
    # down when a neighbour takes the core or the cache.
    # No BLAS call: the canary runs on one thread whatever the pools are set to.
    acc = 0.0
    for i in range(200):
        acc += i * 0.5
    return acc + float(np.add.reduce(vector))


def make_canary(round_s: float, clock: Callable[[], float] = CLOCK) -> Contender:
    """A fixed small workload timed in every round of the run: its drift is the machine's, not the code's."""
    vector = np.linspace(0.0, 1.0, 32_768)

    def fn() -> float:
        return _canary_work(vector)

    cal = calibrate(fn, round_s=round_s, clock=clock)
    return Contender(fn=fn, loops=cal.loops, round_time=cal.round_time)
