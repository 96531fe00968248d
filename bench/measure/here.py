"""One cell timed in this process: set up (untimed), gate the answer against the reference, time the step.

The grid runner and the worker process both time a cell through here, so a row measured in a
worker is measured exactly as one measured in the run's own process.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.base.errors import GateError
from bench.base.records import Cell
from bench.measure.data import Problem
from bench.measure.timing import Timing, measure, thread_limits
from implementations import REFERENCE, Gradients, Implementation

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
    prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)  # conversion stays outside timing
    gate = correctness_gate(task, reference)
    with thread_limits(task.threads, impl.thread_hook):
        return measure(
            prepared.step,
            jit=impl.jit,
            budget_s=budget_s,
            round_s=round_s,
            max_rounds=max_rounds,
            check=lambda result: gate(prepared.gradients(result)),
        )
