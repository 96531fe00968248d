"""Time one task in a fresh Python process, pinned to chosen cores and with a chosen environment.

Some state that moves a timing belongs to the process, not to the call: which cores a
framework's thread pool may use (XLA sizes its pool from the affinity mask when it starts),
the allocator's thresholds (glibc reads MALLOC_* from the environment at start-up), and
whatever one long-lived process has accumulated. pyperf's rule applies: one process is not
a sample. The parent sends a request as JSON on stdin; the worker pins itself before it
imports anything heavy, makes the cell's data from the seed, gates and times it with the
same code as the grid runner, and answers with JSON on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import BenchError, GateError

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WorkerRequest:
    """One implementation on one cell, the timing budgets, and the cores the worker may run on."""

    implementation: str
    m: int
    n_x: int
    dtype: str
    layout: str
    threads: int
    seed: int
    budget_s: float
    round_s: float
    max_rounds: int
    cores: tuple[int, ...] | None = None  # None: the parent's affinity mask


@dataclass(frozen=True)
class WorkerResult:
    """What the worker measured, and the cores and thread count it actually ran with."""

    median_s: float
    iqr_s: float
    min_s: float
    rounds: int
    loops: int
    compile_s: float | None
    cores: tuple[int, ...]


def time_in_worker(
    request: WorkerRequest, env: Mapping[str, str] | None = None, timeout_s: float = TIMEOUT_S
) -> WorkerResult:
    """Run the request in `python -m bench.worker`; env entries are added to this process's environment."""
    child_env = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.worker"],
            input=json.dumps(asdict(request)),
            capture_output=True,
            text=True,
            env=child_env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"worker for {request.implementation} gave no answer in {timeout_s:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if "error" in answer:
        if answer["error"] == "gate":
            raise GateError(str(answer["message"]))
        raise BenchError(f"worker for {request.implementation}: {answer['message']}")
    if done.returncode != 0 or "median_s" not in answer:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"worker for {request.implementation} failed (exit {done.returncode}): {last}")
    return WorkerResult(**{**answer, "cores": tuple(answer["cores"])})


def _serve(request: WorkerRequest) -> WorkerResult:
    # Imported here, after the affinity mask is set: thread pools size themselves on import.
    from bench.data import make_problem
    from bench.runner import Task, correctness_gate
    from bench.timing import measure, thread_limits
    from implementations import REFERENCE, REGISTRY

    task = Task(request.implementation, request.m, request.n_x, request.dtype, request.layout, request.threads)
    impl = REGISTRY[request.implementation]
    problem = make_problem(request.m, request.n_x, seed=request.seed).as_layout(request.dtype, request.layout)  # type: ignore[arg-type]
    with thread_limits(1):
        reference = REGISTRY[REFERENCE].propagate(problem.w, problem.b, problem.X, problem.Y)
    prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)
    gate = correctness_gate(task, reference)
    with thread_limits(request.threads, impl.thread_hook):
        timing = measure(
            prepared.step,
            jit=impl.jit,
            budget_s=request.budget_s,
            round_s=request.round_s,
            max_rounds=request.max_rounds,
            check=lambda result: gate(prepared.gradients(result)),
        )
    return WorkerResult(
        median_s=timing.median_s,
        iqr_s=timing.iqr_s,
        min_s=timing.min_s,
        rounds=timing.rounds,
        loops=timing.loops,
        compile_s=timing.compile_s,
        cores=tuple(sorted(os.sched_getaffinity(0))),
    )


def main() -> int:
    raw: dict[str, Any] = json.loads(sys.stdin.read())
    cores = raw.get("cores")
    request = WorkerRequest(**{**raw, "cores": tuple(cores) if cores is not None else None})
    if request.cores is not None:
        os.sched_setaffinity(0, request.cores)
    try:
        answer: dict[str, Any] = asdict(_serve(request))
    except GateError as exc:
        answer = {"error": "gate", "message": str(exc)}
    except Exception as exc:  # any failure goes back to the parent as one line
        answer = {"error": "exception", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
