"""The one interface every implementation follows, in the course's conventions.

X is (n_x, m) with one example per column, Y is (1, m) with labels 0 and 1,
w is (n_x, 1) and b is a float.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from implementations.validation import validate_hyperparameters, validate_inputs

FloatArray = NDArray[np.floating[Any]]
# Which thread pool an implementation can use: none, NumPy's BLAS, Numba's, PyTorch's intra-op
# pool, or XLA's (which sizes itself from the process's affinity mask and has no reliable setting).
Threading = Literal["none", "blas", "numba", "torch", "xla"]
ThreadHook = Callable[[int], AbstractContextManager[None]]
# What an implementation is to the report: a 1x baseline, a hand vectorisation the note describes,
# a compiled kernel of this suite, or a framework an engineer might use instead (a peer).
Role = Literal["baseline", "vectorized", "kernel", "peer"]
# The largest arrays one step allocates: (1, m) ones, (n_x, 1) ones, or none (Python floats only).
Temporaries = Literal["examples", "features", "none"]


@dataclass(frozen=True)
class Goal:
    """What a kernel aims for against the reference implementation at the same thread count (checked in the report).

    speedup: (layout, the least median speedup out of cache); in a layout not named, and at the
    course shape, the goal is never to be slower. all_threads: judged at every thread the run has,
    else at 1. roof_share: (layout, the least share of each out-of-cache cell's roof it should reach:
    the best streaming rate code reached in that cell). steady: out of cache, its spread over a
    cell's consecutive rounds (slowest / fastest in a pass) is no wider than the reference's, at
    the median.
    """

    speedup: tuple[tuple[str, float], ...] = ()
    all_threads: bool = False
    roof_share: tuple[tuple[str, float], ...] = ()
    steady: bool = False

    def speedup_in(self, layout: str) -> float | None:
        return dict(self.speedup).get(layout)

    def roof_in(self, layout: str) -> float | None:
        return dict(self.roof_share).get(layout)


class Gradients(NamedTuple):
    """One forward and backward pass: dJ/dw (n_x, 1), dJ/db and the cost J."""

    dw: FloatArray
    db: float
    cost: float


PropagateFn = Callable[[FloatArray, float, FloatArray, FloatArray], Gradients]


@dataclass(frozen=True)
class Prepared:
    """An implementation's inputs after set-up, in the manner of benchopt's set_objective / run.

    step: the timed unit, one gradient step on the converted inputs; it returns only once the
    answer exists (an asynchronous framework waits for it). gradients: that answer as the
    course's Gradients, called outside timing (for the correctness gate). plan: the set-up's choice
    among the implementation's ways of stepping, where it timed them on these inputs
    (numba_fused, numba_parallel); None elsewhere.
    """

    step: Callable[[], object]
    gradients: Callable[[object], Gradients]
    plan: str | None = None


SetupFn = Callable[[FloatArray, float, FloatArray, FloatArray], Prepared]


def as_gradients(result: object) -> Gradients:
    """A step's result when the step returns Gradients itself."""
    if not isinstance(result, Gradients):
        raise TypeError(f"a step returned {type(result).__name__}, not Gradients")
    return result


def propagate_via(setup: SetupFn) -> PropagateFn:
    """propagate for an implementation defined by its set-up: convert, step, convert back (untimed use)."""

    def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
        prepared = setup(w, b, X, Y)
        return prepared.gradients(prepared.step())

    return propagate


OptimizeResult = tuple[FloatArray, float, list[float]]
OptimizeFn = Callable[[FloatArray, float, FloatArray, FloatArray, int, float], OptimizeResult]


def gradient_descent(
    propagate: PropagateFn,
    w: FloatArray,
    b: float,
    X: FloatArray,
    Y: FloatArray,
    num_iterations: int,
    learning_rate: float,
) -> OptimizeResult:
    """Plain gradient descent on copies of w and b; costs[k] is the cost before step k."""
    w = w.copy()
    b = float(b)
    costs: list[float] = []
    for _ in range(num_iterations):
        grads = propagate(w, b, X, Y)
        costs.append(grads.cost)
        # A Python float times a float32 array stays float32 (NEP 50), so w keeps X's dtype.
        w = w - learning_rate * grads.dw
        b = b - learning_rate * grads.db
    return w, b, costs


@dataclass(frozen=True)
class Implementation:
    """A named gradient step and what the benchmark needs to know about it.

    threading: which thread pool the implementation can use ("blas" for NumPy's BLAS,
    "numba" for Numba's), so the grid measures thread counts only where they matter.
    jit: the first call compiles, so its time is recorded apart as compile_s.
    python_loops: the interpreter runs the per-example work; grids time float64 only.
    setup_fn: converts the inputs (and may compile) before timing; None means the step is
    propagate itself on the NumPy arrays.
    requirements: importable modules it needs; without them it is unavailable, with a reason.
    thread_hook: fixes the implementation's own thread pool to n threads inside the block and
    restores it afterwards (bench.measure.timing.thread_limits enters it beside BLAS and Numba).
    isolate: its rows are timed in a fresh worker process pinned to as many cores as threads,
    for a pool that no call can resize (XLA's).
    source: where a function from outside the registry came from (path/to/file.py:function,
    package.module:function or an entry point), None for the registered implementations.
    claim: the course note's row this implementation stands for, as (approach, claimed speedup
    over two loops); None for implementations the note does not mention.
    role: baseline, vectorized (the note's hand vectorisations), kernel (this suite's compiled
    code) or peer (a framework's). layout_note: why its speed does or does not depend on the
    layout of X, in a phrase. temporaries: the largest arrays a step allocates (the allocator's
    mmap threshold applies to them). goal: what a kernel aims for against the reference.
    reads_of_x: how many times one step reads X from wherever it lives, by its algorithm (a
    second use of data still in a core's cache is not a read); None where it is not known.
    strided_walk: the step walks one example's features at a time, which in C order lie m x itemsize
    bytes apart (a loop over the examples).
    """

    name: str
    propagate: PropagateFn
    summary: str
    threading: Threading = "none"
    jit: bool = False
    python_loops: bool = False
    optimize_fn: OptimizeFn | None = None
    setup_fn: SetupFn | None = None
    requirements: tuple[str, ...] = ()
    thread_hook: ThreadHook | None = None
    isolate: bool = False
    source: str | None = None
    claim: tuple[str, float] | None = None
    role: Role = "kernel"
    layout_note: str = ""
    temporaries: Temporaries = "features"
    goal: Goal | None = None
    reads_of_x: int | None = None
    strided_walk: bool = False

    def setup(self, w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
        """Everything before timing; the returned step is what gets timed."""
        if self.setup_fn is not None:
            return self.setup_fn(w, b, X, Y)
        propagate = self.propagate
        return Prepared(step=lambda: propagate(w, b, X, Y), gradients=as_gradients)

    @property
    def unavailable(self) -> str | None:
        """Why this implementation cannot run here (a missing module), or None if it can."""
        missing = [r for r in self.requirements if importlib.util.find_spec(r) is None]
        if missing:
            return f"needs {', '.join(missing)} (pip install -e '.[peers]')"
        return None

    def optimize(
        self,
        w: FloatArray,
        b: float,
        X: FloatArray,
        Y: FloatArray,
        num_iterations: int,
        learning_rate: float,
    ) -> OptimizeResult:
        """Validate, then take num_iterations steps; returns (w, b, costs), inputs untouched."""
        w, b, X, Y = validate_inputs(w, b, X, Y)
        validate_hyperparameters(num_iterations, learning_rate)
        run = self.optimize_fn or (
            lambda w_, b_, X_, Y_, n_, lr_: gradient_descent(self.propagate, w_, b_, X_, Y_, n_, lr_)
        )
        return run(w, b, X, Y, num_iterations, learning_rate)


def fastest(
    candidates: dict[str, Callable[[], object]], calls: int = 3, clock: Callable[[], float] = time.perf_counter
) -> str:
    """The name of the candidate whose median call is shortest: each called once untimed (it may compile),
    then `calls` times each, in turn, so that a slow stretch of the machine falls on all of them."""
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(calls):
        for name, run in candidates.items():
            start = clock()
            run()
            times[name].append(clock() - start)
    return min(times, key=lambda name: float(np.median(times[name])))


def summary_of(module_doc: str | None) -> str:
    """The first line of a module docstring: the implementation's one-line meaning."""
    if not module_doc:
        raise ValueError("every implementation module states its meaning in its docstring")
    return module_doc.strip().splitlines()[0]
