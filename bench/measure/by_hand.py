"""The kernels' goals at one shape, timed by hand: `python -m bench kernels`, `make kernels`.

The grid judges each kernel with a goal (numba_fused, numba_parallel) over its out-of-cache
cells; this times one shape the way a person checks it at a terminal, with the grid's rules
where they apply: data made before timing, every answer gated against the reference first,
untimed calls before each block (timing.warm_up), and the contenders in a fresh random order every
repetition. Per layout and kernel, at the kernel's thread count (every core, or one):

- the kernel, the reference (fully_vectorized) and the one-pass read of the same X (the roof,
  bandwidth.OnePassRead) each run a block of `calls` consecutive calls after WARMUP_S of untimed ones,
  SETTLE_S apart (a BLAS pool left spinning would take a core from the next block);
- `reps` such repetitions; the ratio kernel / reference is taken within each repetition, so a
  slow stretch of the machine that covers both cancels, and its median and range are given;
- the spread is a block's slowest / fastest call, the median over repetitions; where the
  kernel's is wider, a rank test over the repetitions' spreads says whether by more than their
  own variation.

Ctrl-C keeps the kernels already timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.base.constants import STEADY_MEMORY
from bench.base.hierarchy import roof_setters
from bench.base.records import Cell
from bench.base.stats import p_larger
from bench.measure.bandwidth import OnePassRead
from bench.measure.data import GRID_X_OFFSET, Layout, Problem, make_problem
from bench.measure.here import correctness_gate
from bench.measure.timing import WARMUP_S, available_cores, thread_limits, warm_up
from implementations import REFERENCE, REGISTRY, Gradients, Implementation, with_goals

SETTLE_S = 0.25  # between blocks: as the runner's, so that no pool is still spinning
COLUMNS = [
    "layout",
    "kernel",
    "threads",
    "plan",  # the kernel's set-up's choice where it timed its plans (numba_fused.PLANS), else empty
    "reps",
    "calls",
    "warmup_ms",  # untimed calls before each block, this long at least
    "kernel_ms",
    "reference_ms",
    "read_ms",
    "speedup",
    "speedup_min",
    "speedup_max",
    "target_speedup",
    "kernel_spread",
    "reference_spread",
    "kernel_gbps",
    "roof_gbps",
    "read_gbps_min",  # the read's rate in its slowest and fastest repetition (block medians)
    "read_gbps_max",
    "memory_steady",  # read_gbps_max / read_gbps_min <= STEADY_MEMORY
    "roof_share",
    "target_roof_share",
    "speedup_met",  # each goal: True met, False missed, empty where the kernel has no such goal
    "roof_share_met",
    "steady_met",
    "steady_p_wider",  # one-sided Mann-Whitney p that the kernel's block spreads are larger than the reference's
]


@dataclass(frozen=True)
class Settings:
    """One shape, its layouts, and how much to time."""

    m: int
    n_x: int
    layouts: tuple[str, ...] = ("F", "C")
    reps: int = 6
    calls: int = 15
    seed: int = 0


def _block(fn: Callable[[], Any], calls: int) -> list[float]:
    warm_up(fn)  # wakes the pool, warms the caches; one call was not enough for short steps
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _row(
    layout: str,
    impl: Implementation,
    threads: int,
    s: Settings,
    blocks: dict[str, list[list[float]]],
    nbytes: int,
    plan: str | None = None,
) -> dict[str, Any]:
    goal = impl.goal
    assert goal is not None
    med = {k: [float(np.median(b)) for b in v] for k, v in blocks.items()}
    ratios = np.array(med[REFERENCE]) / np.array(med[impl.name])
    kernel_s, reference_s, read_s = (float(np.median(med[k])) for k in (impl.name, REFERENCE, "read"))
    # The roof, as the report's (roof_setters): the read, or the reference's own streaming rate if higher.
    roof = max(nbytes / read_s, roof_setters().get(REFERENCE, 0) * nbytes / reference_s) / 1e9
    spreads = {k: [max(b) / min(b) for b in v] for k, v in blocks.items()}
    spread = {k: float(np.median(v)) for k, v in spreads.items()}
    speedup, share = float(np.median(ratios)), nbytes / kernel_s / 1e9 / roof
    read_rates = nbytes / np.array(med["read"]) / 1e9
    target, target_share = goal.speedup_in(layout), goal.roof_in(layout)
    return {
        "layout": layout,
        "kernel": impl.name,
        "threads": threads,
        "plan": plan or "",
        "reps": s.reps,
        "calls": s.calls,
        "warmup_ms": WARMUP_S * 1e3,
        "kernel_ms": kernel_s * 1e3,
        "reference_ms": reference_s * 1e3,
        "read_ms": read_s * 1e3,
        "speedup": speedup,
        "speedup_min": float(ratios.min()),
        "speedup_max": float(ratios.max()),
        "target_speedup": target,
        "kernel_spread": spread[impl.name],
        "reference_spread": spread[REFERENCE],
        "kernel_gbps": nbytes / kernel_s / 1e9,
        "roof_gbps": roof,
        "read_gbps_min": float(read_rates.min()),
        "read_gbps_max": float(read_rates.max()),
        "memory_steady": bool(read_rates.max() <= STEADY_MEMORY * read_rates.min()),
        "roof_share": share,
        "target_roof_share": target_share,
        "speedup_met": None if target is None else speedup >= target,
        "roof_share_met": None if target_share is None else share >= target_share,
        "steady_met": spread[impl.name] <= spread[REFERENCE] if goal.steady else None,
        "steady_p_wider": p_larger(spreads[impl.name], spreads[REFERENCE]) if goal.steady else None,
    }


def _time_one(
    layout: str, impl: Implementation, s: Settings, problem: Problem, reference: Gradients, rng: np.random.Generator
) -> dict[str, Any]:
    """One kernel against the reference and the read of the same X, at the kernel's thread count."""
    assert impl.goal is not None
    threads = available_cores() if impl.goal.all_threads else 1
    steps: dict[str, Callable[[], Any]] = {}
    plans: dict[str, str | None] = {}
    for name in (impl.name, REFERENCE):
        gate = correctness_gate(Cell(name, s.m, s.n_x, "float64", layout, threads, s.seed), reference)
        with thread_limits(threads, REGISTRY[name].thread_hook):
            # Set up at the thread count it runs at: a set-up may time its plans (numba_parallel).
            prepared = REGISTRY[name].setup(problem.w, problem.b, problem.X, problem.Y)
            gate(prepared.gradients(prepared.step()))  # compiles, and nothing wrong is timed
        steps[name], plans[name] = prepared.step, prepared.plan
    read = OnePassRead(problem.X, threads)
    with thread_limits(threads):
        read()  # compiles
    steps["read"] = read
    blocks: dict[str, list[list[float]]] = {k: [] for k in steps}
    for _ in range(s.reps):
        for name in map(str, rng.permutation(list(steps))):
            hook = REGISTRY[name].thread_hook if name in REGISTRY else None
            with thread_limits(threads, hook):
                blocks[name].append(_block(steps[name], s.calls))
            time.sleep(SETTLE_S)
    return _row(layout, impl, threads, s, blocks, int(problem.X.nbytes), plans[impl.name])


def time_kernels(s: Settings, rng: np.random.Generator | None = None) -> tuple[pd.DataFrame, bool]:
    """One row per layout and kernel (COLUMNS), and whether Ctrl-C cut it short (the finished rows are kept)."""
    rng = rng or np.random.default_rng(s.seed)
    base = make_problem(s.m, s.n_x, seed=s.seed)
    rows = []
    try:
        for layout in s.layouts:
            problem = base.as_layout("float64", cast(Layout, layout), GRID_X_OFFSET)
            with thread_limits(1):
                reference = REGISTRY[REFERENCE].propagate(problem.w, problem.b, problem.X, problem.Y)
            for impl in with_goals():
                rows.append(_time_one(layout, impl, s, problem, reference, rng))
            del problem
    except KeyboardInterrupt:
        return pd.DataFrame(rows, columns=COLUMNS), True
    return pd.DataFrame(rows, columns=COLUMNS), False
