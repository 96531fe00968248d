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
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import IO, Any

from bench.base.errors import BenchError, GateError
from bench.base.records import SUMMARY_FIELDS, Cell, Summary

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WorkerRequest:
    """One implementation on one cell, the timing budgets, and the cores the worker may run on."""

    cell: Cell
    budget_s: float
    round_s: float
    max_rounds: int
    cores: tuple[int, ...] | None = None  # None: the parent's affinity mask
    x_offset: int | None = None  # bytes into a cache line X starts; None: the grid's (data.GRID_X_OFFSET)
    paired_offset: int | None = None  # also X starting here, in the same rounds of this process (answer's paired)


@dataclass(frozen=True)
class WorkerResult(Summary):
    """What the worker measured, and the cores it actually ran on."""

    cores: tuple[int, ...]
    pid: int  # the process it was timed in
    x_offset: int = -1  # bytes into a cache line the timed X started (data.line_offset); -1: not told
    paired: WorkerResult | None = None  # the request's paired_offset: the same cell, timed in the same rounds


ANSWER = "@bench-worker "  # marks the worker's answer among anything a library prints to stdout


def _answer(line: str, request: WorkerRequest) -> WorkerResult:
    answer = json.loads(line[len(ANSWER) :])
    if "error" in answer:
        if answer["error"] == "gate":
            raise GateError(str(answer["message"]))
        raise BenchError(f"worker for {request.cell.implementation}: {answer['message']}")
    return _result(answer)


def _result(answer: dict[str, Any]) -> WorkerResult:
    paired = answer.get("paired")
    return WorkerResult(
        **{**answer, "cores": tuple(answer["cores"]), "paired": _result(paired) if paired is not None else None}
    )


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def time_in_worker(
    request: WorkerRequest, env: Mapping[str, str] | None = None, timeout_s: float = TIMEOUT_S
) -> WorkerResult:
    """Run the request in a fresh `python -m bench.measure.worker`, with env added to this environment."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.measure.worker"],
            input=json.dumps(asdict(request)) + "\n",
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"worker for {request.cell.implementation} gave no answer in {timeout_s:.0f} s") from None
    answers = [line for line in done.stdout.splitlines() if line.startswith(ANSWER)]
    if not answers:
        raise BenchError(
            f"worker for {request.cell.implementation} failed (exit {done.returncode}): {_last_line(done.stderr)}"
        )
    return _answer(answers[-1], request)


class WorkerPool:
    """Long-lived workers, one per set of cores: each pays the interpreter's and a framework's start once.

    For process state that must be right but need not be fresh (the affinity mask a thread pool
    sized itself from); a study of fresh-process spread uses time_in_worker instead.
    """

    def __init__(self) -> None:
        self._workers: dict[tuple[int, ...] | None, tuple[subprocess.Popen[str], IO[str]]] = {}

    def time(self, request: WorkerRequest) -> WorkerResult:
        proc, errors = self._worker(request.cores)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(asdict(request)) + "\n")
            proc.stdin.flush()
            for line in proc.stdout:
                if line.startswith(ANSWER):
                    return _answer(line, request)
        except BrokenPipeError:
            pass
        del self._workers[request.cores]
        proc.wait()
        errors.seek(0)
        raise BenchError(
            f"worker for {request.cell.implementation} failed (exit {proc.returncode}): {_last_line(errors.read())}"
        )

    def _worker(self, cores: tuple[int, ...] | None) -> tuple[subprocess.Popen[str], IO[str]]:
        if cores not in self._workers:
            # stderr to a file: a pipe nobody reads would fill up and stall the worker.
            errors = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.measure.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            self._workers[cores] = (proc, errors)
        return self._workers[cores]

    def close(self) -> None:
        for proc, errors in self._workers.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            errors.close()
        self._workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(request: WorkerRequest) -> WorkerResult:
    # Imported here, after the affinity mask is set: thread pools size themselves on import.
    from bench.measure.data import GRID_X_OFFSET, line_offset, make_problem
    from bench.measure.here import time_here, time_placements
    from bench.measure.timing import thread_limits
    from implementations import REFERENCE, REGISTRY

    cell = request.cell
    base = make_problem(cell.m, cell.n_x, seed=cell.seed)
    offsets = [GRID_X_OFFSET if request.x_offset is None else request.x_offset]
    if request.paired_offset is not None:
        offsets.append(request.paired_offset)
    problems = [base.as_layout(cell.dtype, cell.layout, offset) for offset in offsets]  # type: ignore[arg-type]
    with thread_limits(1):
        first = problems[0]
        reference = REGISTRY[REFERENCE].propagate(first.w, first.b, first.X, first.Y)
    budgets = (request.budget_s, request.round_s, request.max_rounds)
    impl = REGISTRY[cell.implementation]
    if len(problems) == 1:
        timings = [time_here(impl, cell, problems[0], reference, *budgets)]
    else:
        timings = time_placements(impl, cell, problems, reference, *budgets)
    cores = tuple(sorted(os.sched_getaffinity(0)))
    results = [
        WorkerResult(
            **{name: getattr(timing, name) for name in SUMMARY_FIELDS},
            cores=cores,
            pid=os.getpid(),
            x_offset=line_offset(problem.X),
        )
        for timing, problem in zip(timings, problems, strict=True)
    ]
    return replace(results[0], paired=results[1]) if len(results) > 1 else results[0]


def main() -> int:
    """Answer one request per line of stdin until it closes; the first request's cores pin the process."""
    pinned = False
    for line in sys.stdin:
        if not line.strip():
            continue
        raw: dict[str, Any] = json.loads(line)
        cores = raw.get("cores")
        request = WorkerRequest(
            **{**raw, "cell": Cell(**raw["cell"]), "cores": tuple(cores) if cores is not None else None}
        )
        if request.cores is not None and not pinned:
            os.sched_setaffinity(0, request.cores)
            pinned = True
        try:
            answer: dict[str, Any] = asdict(_serve(request))
        except GateError as exc:
            answer = {"error": "gate", "message": str(exc)}
        except Exception as exc:  # any failure goes back to the parent as one line
            answer = {"error": "exception", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        print(ANSWER + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
