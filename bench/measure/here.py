"""One cell timed in this process: set up (untimed), gate the answer against the reference, time the step.

The grid runner and the worker process both time a cell through here, so a row measured in a
worker is measured exactly as one measured in the run's own process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bench.base.errors import GateError
from bench.base.records import Cell
from bench.measure.data import Problem
from bench.measure.timing import (
    Contender,
    Timing,
    calibrate,
    measure,
    round_counts,
    run_interleaved,
    schedule,
    summarise,
    thread_limits,
)
from implementations import REFERENCE, Gradients, Implementation, Prepared

# Gate tolerances, relative to the largest |component| of the reference: loose enough for
# summation order (BLAS blocks, threads, float32), tight enough that any wrong formula fails.
GATE_RTOL = {"float64": 1e-7, "float32": 2e-2}


def correctness_gate(task: Cell, reference: Gradients) -> Callable[[Gradients], None]:
    """A check that raises GateError unless a result matches the reference on the task's data."""

    def check(got: Gradients) -> None:
        rtol = GATE_RTOL[task.dtype]
        scale = max(float(np.abs(reference.dw).max()), abs(reference.db), 1e-30)
        errors = {
            "dw": float(np.abs(got.dw.astype(np.float64) - reference.dw).max()) / scale,
            "db": abs(got.db - reference.db) / scale,
            "cost": abs(got.cost - reference.cost) / max(abs(reference.cost), 1e-30),
        }
        shape_ok = got.dw.shape == reference.dw.shape
        worst = max(errors, key=lambda k: errors[k])
        if not shape_ok or not all(np.isfinite(v) and v <= rtol for v in errors.values()):
            raise GateError(
                f"{task.implementation} disagrees with {REFERENCE} at m={task.m}, n_x={task.n_x}, "
                f"{task.dtype}, layout {task.layout}, {task.threads} thread(s): "
                + (f"dw shape {got.dw.shape}" if not shape_ok else f"{worst} off by {errors[worst]:.2g}")
            )

    return check


def time_here(
    impl: Implementation,
    task: Cell,
    problem: Problem,
    reference: Gradients,
    budget_s: float,
    round_s: float,
    max_rounds: int,
) -> Timing[object]:
    """Set up (untimed), gate the answer against the reference, then time the step, in this process."""
    gate = correctness_gate(task, reference)
    with thread_limits(task.threads, impl.thread_hook):
        # Conversion stays outside timing; set up at the thread count it runs at (a set-up may time its plans).
        prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)
        return measure(
            prepared.step,
            jit=impl.jit,
            budget_s=budget_s,
            round_s=round_s,
            max_rounds=max_rounds,
            check=lambda result: gate(prepared.gradients(result)),
        )


def _gated(gate: Callable[[Gradients], None], prepared: Prepared) -> Callable[[object], None]:
    return lambda result: gate(prepared.gradients(result))


def time_placements(
    impl: Implementation,
    task: Cell,
    problems: Sequence[Problem],
    reference: Gradients,
    budget_s: float,
    round_s: float,
    max_rounds: int,
) -> list[Timing[object]]:
    """The step on each of these problems (the same numbers placed differently), gated, then timed in
    interleaved rounds in this process (a fresh random order each round), so that the comparison is
    of the data alone: the process, its pages and the machine's moment are the same for each."""
    gate = correctness_gate(task, reference)
    with thread_limits(task.threads, impl.thread_hook):
        contenders, calibrations = [], []
        for problem in problems:
            prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)
            cal = calibrate(prepared.step, jit=impl.jit, round_s=round_s, check=_gated(gate, prepared))
            calibrations.append(cal)
            contenders.append(Contender(prepared.step, cal.loops, cal.round_time))
        plan = schedule(round_counts(contenders, budget_s, max_rounds))
        run_interleaved(contenders, plan, np.random.default_rng(task.seed))
    timings: list[Timing[object]] = []
    for contender, cal in zip(contenders, calibrations, strict=True):
        median, iqr, low = summarise(list(contender.samples.values()))
        timings.append(Timing(median, iqr, low, len(contender.samples), contender.loops, cal.compile_s, cal.result))
    return timings
