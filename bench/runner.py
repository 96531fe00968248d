"""The grid sweep: plan the cells, gate each implementation's answer, time it, append a row.

Order matters: cells run smallest first, so the cut-off can predict each cell's time
from the cells already measured for the same implementation and skip what would blow
the budget; within a cell, one dtype and layout of X exists at a time, to bound memory.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import psutil
from tqdm.auto import tqdm

from bench.bandwidth import last_level_cache_bytes, measure_read_bandwidth
from bench.check import check_before_run, describe_failure
from bench.data import Layout, Problem, make_problem
from bench.errors import BenchError, GateError
from bench.lecture import run_lecture_demo
from bench.metadata import collect_metadata
from bench.model import predict_seconds
from bench.profiles import Profile
from bench.results import (
    KEY,
    LECTURE_CSV,
    METADATA_JSON,
    RESULTS_CSV,
    STATUS_FAILED_CHECK,
    STATUS_OK,
    STATUS_SKIPPED_BUDGET,
    STATUS_SKIPPED_MEMORY,
    STATUS_SKIPPED_UNAVAILABLE,
    Row,
    RowWriter,
    load_metadata,
    load_results,
    write_json_atomic,
)
from bench.timing import measure, thread_limits
from implementations import REFERENCE, REGISTRY, Gradients, Implementation

# Gate tolerances, relative to the largest |component| of the reference: loose enough for
# summation order (BLAS blocks, threads, float32), tight enough that any wrong formula fails.
GATE_RTOL = {"float64": 1e-7, "float32": 2e-2}
MEMORY_HEADROOM = 0.8  # use at most this share of the memory available when a cell starts
# After a multi-threaded measurement, OpenBLAS and OpenMP workers keep spinning for a while
# (about 100 ms was seen here) and take a core from whatever is timed next: a 2-thread
# numba_parallel call straight after fully_vectorized ran 1.6x slower. Wait this long first.
SETTLE_S = 0.25


@dataclass(frozen=True)
class Task:
    """One row to produce: an implementation on one cell, dtype, layout and thread count."""

    implementation: str
    m: int
    n_x: int
    dtype: str
    layout: str
    threads: int
    impl: Implementation | None = field(default=None, compare=False, repr=False)  # set by plan()

    @property
    def code(self) -> Implementation:
        return self.impl if self.impl is not None else REGISTRY[self.implementation]

    @property
    def key(self) -> tuple[str, int, int, str, str, int]:
        return (self.implementation, self.m, self.n_x, self.dtype, self.layout, self.threads)

    @property
    def series(self) -> tuple[str, str, str, int]:
        """Cells of one series share a cost model: same code, dtype, layout and threads."""
        return (self.implementation, self.dtype, self.layout, self.threads)


@dataclass(frozen=True)
class RunConfig:
    profile: Profile
    implementations: tuple[Implementation, ...]  # resolved once: registered ones and the user's own functions
    cells: tuple[tuple[int, int], ...]
    dtypes: tuple[str, ...]
    layouts: tuple[str, ...]
    threads: tuple[int, ...]
    seed: int
    out: Path
    resume: bool = False
    lecture: bool = True


@dataclass
class RunSummary:
    results: Path
    timed: int = 0
    skipped: int = 0
    reused: int = 0
    interrupted: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # implementation -> why it failed the check


def plan(config: RunConfig) -> list[Task]:
    """Every row the run will produce, cell by cell, smallest cell first.

    Interpreted implementations are timed in the first dtype only (float32 changes nothing
    for the interpreter); implementations that use no thread pool run at 1 thread only.
    """
    tasks = []
    for m, n_x in config.cells:
        for dtype, layout in itertools.product(config.dtypes, config.layouts):
            for impl in config.implementations:
                if impl.python_loops and dtype != config.dtypes[0]:
                    continue
                thread_counts = (1,) if impl.threading == "none" else config.threads
                for threads in dict.fromkeys(thread_counts):
                    tasks.append(Task(impl.name, m, n_x, dtype, layout, threads, impl))
    return tasks


def correctness_gate(task: Task, reference: Gradients) -> Callable[[Gradients], None]:
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


def _cell_bytes(m: int, n_x: int, variants: set[tuple[str, str]]) -> int:
    """Peak bytes of a cell: the float64 base X plus the largest other variant alive beside it."""
    base = m * n_x * 8
    extra = [m * n_x * np.dtype(d).itemsize for d, lay in variants if (d, lay) != ("float64", "C")]
    return int((base + max(extra, default=0)) * 1.1) + 64 * 2**20


def _in_notebook() -> bool:
    """A Jupyter kernel that can draw tqdm.auto's widget bar (it needs ipywidgets)."""
    import importlib.util

    return "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None


class Progress:
    """A tqdm bar with an ETA on a terminal; plain lines, one per cell, when not."""

    def __init__(self, total: int) -> None:
        self.tty = sys.stderr.isatty() or _in_notebook()
        self.bar = tqdm(total=total, unit="row", disable=not self.tty, dynamic_ncols=True)
        self.start = time.perf_counter()
        self.done = 0
        self.total = total

    def step(self, task: Task) -> None:
        self.done += 1
        self.bar.set_postfix_str(f"m={task.m} n_x={task.n_x} {task.implementation}", refresh=False)
        self.bar.update(1)

    def cell_done(self, m: int, n_x: int, timed: int, skipped: int) -> None:
        if not self.tty:
            elapsed = time.perf_counter() - self.start
            print(
                f"[{self.done}/{self.total} rows, {elapsed:6.1f} s] m={m} n_x={n_x}: {timed} timed, {skipped} skipped",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


def _previous(config: RunConfig) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Rows and metadata of an earlier run to resume, checked to share this run's seed."""
    if not config.resume:
        return None, {}
    if not (config.out / RESULTS_CSV).is_file():
        raise BenchError(f"--resume: no earlier results in {config.out} (no {RESULTS_CSV})")
    rows = load_results(config.out)
    meta = load_metadata(config.out)
    if meta.get("seed") is not None and int(meta["seed"]) != config.seed:
        raise BenchError(
            f"--resume: {config.out} was measured with seed {meta['seed']}, not {config.seed}; "
            "pass --seed to match or choose another --out"
        )
    return rows, meta


def _bandwidth(config: RunConfig, previous: dict[str, Any]) -> dict[str, float]:
    """Read bandwidth (GB/s) per thread count; reused on resume so rows share one yardstick."""
    known = {str(k): float(v) for k, v in previous.get("bandwidth_gbps", {}).items()}
    nbytes = 4 * last_level_cache_bytes()
    for threads in sorted({1, *config.threads}):
        if str(threads) not in known:
            known[str(threads)] = measure_read_bandwidth(threads, nbytes)
    return known


def _row(task: Task, bandwidth: dict[str, float], **values: Any) -> Row:
    bytes_x = task.m * task.n_x * np.dtype(task.dtype).itemsize
    median = values.get("median_s")
    gbps = bytes_x / median / 1e9 if median else None
    limit = bandwidth.get(str(task.threads))
    return Row(
        implementation=task.implementation,
        m=task.m,
        n_x=task.n_x,
        dtype=task.dtype,
        layout=task.layout,
        threads=task.threads,
        bytes_x=bytes_x,
        gbps=gbps,
        bw_fraction=gbps / limit if gbps and limit else None,
        **values,
    )


def _cells(tasks: list[Task]) -> Iterator[tuple[tuple[int, int], list[Task]]]:
    for cell, group in itertools.groupby(tasks, key=lambda t: (t.m, t.n_x)):
        yield cell, list(group)


def run(config: RunConfig) -> RunSummary:
    """Measure the plan into config.out; Ctrl-C keeps every finished row."""
    tasks = plan(config)
    previous_rows, previous_meta = _previous(config)
    print(
        f"profile {config.profile.name}: {len(config.cells)} cells, {len(tasks)} rows into {config.out}",
        file=sys.stderr,
        flush=True,
    )
    done: set[tuple[Any, ...]] = set()
    history: dict[tuple[str, str, str, int], list[tuple[int, int, float]]] = defaultdict(list)

    summary = RunSummary(results=config.out / RESULTS_CSV)
    meta: dict[str, Any] = {
        "machine": collect_metadata(),
        "profile": config.profile.name,
        "seed": config.seed,
        "implementations": [impl.name for impl in config.implementations],
        "sources": {impl.name: impl.source for impl in config.implementations if impl.source},
        "cells": [list(c) for c in config.cells],
        "dtypes": list(config.dtypes),
        "layouts": list(config.layouts),
        "threads": list(config.threads),
        "call_budget_s": config.profile.call_budget_s,
        "cell_budget_s": config.profile.cell_budget_s,
        "round_s": config.profile.round_s,
        "max_rounds": config.profile.max_rounds,
        "last_level_cache_bytes": last_level_cache_bytes(),
    }
    print("measuring read bandwidth ...", file=sys.stderr, flush=True)
    meta["bandwidth_gbps"] = bandwidth = _bandwidth(config, previous_meta)
    print(
        "read bandwidth: " + ", ".join(f"{v:.1f} GB/s on {k} thread(s)" for k, v in bandwidth.items()),
        file=sys.stderr,
        flush=True,
    )

    writer = RowWriter(config.out / RESULTS_CSV)
    if previous_rows is not None:
        for record in cast(list[dict[str, Any]], previous_rows.to_dict("records")):
            writer.write(record)
            key = tuple(record[k] for k in KEY)
            done.add(key)
            if record["status"] == STATUS_OK:
                series = (
                    record["implementation"],
                    record["dtype"],
                    record["layout"],
                    int(record["threads"]),
                )
                history[series].append((int(record["m"]), int(record["n_x"]), float(record["median_s"])))
        summary.reused = len(done)

    summary.failed.update(check_before_run(config.implementations))
    progress = Progress(len(tasks))
    try:
        if config.lecture and not (config.resume and (config.out / LECTURE_CSV).is_file()):
            print("timing the lecture's 1e6-element dot product ...", file=sys.stderr, flush=True)
            lecture_rows = run_lecture_demo(config.seed, config.profile.lecture_repeats)
            lecture_writer = RowWriter(config.out / LECTURE_CSV, tuple(lecture_rows[0]))
            for lecture_row in lecture_rows:
                lecture_writer.write(lecture_row)
            lecture_writer.finish()
        for (m, n_x), cell_tasks in _cells(tasks):
            timed, skipped = _run_cell(
                m, n_x, cell_tasks, config, done, history, bandwidth, writer, progress, summary.failed
            )
            summary.timed += timed
            summary.skipped += skipped
            progress.cell_done(m, n_x, timed, skipped)
    except KeyboardInterrupt:
        summary.interrupted = True
    progress.close()
    writer.finish()
    meta["complete"] = not summary.interrupted
    write_json_atomic(config.out / METADATA_JSON, meta)
    return summary


def _run_cell(
    m: int,
    n_x: int,
    cell_tasks: list[Task],
    config: RunConfig,
    done: set[tuple[Any, ...]],
    history: dict[tuple[str, str, str, int], list[tuple[int, int, float]]],
    bandwidth: dict[str, float],
    writer: RowWriter,
    progress: Progress,
    failed: dict[str, str],
) -> tuple[int, int]:
    profile = config.profile
    timed = skipped = 0
    runnable: list[tuple[Task, float | None]] = []
    for task in cell_tasks:
        if task.key in done:
            progress.step(task)
            continue
        if task.implementation in failed:
            writer.write(_row(task, bandwidth, status=STATUS_FAILED_CHECK, reason=failed[task.implementation]))
            progress.step(task)
            continue
        reason = task.code.unavailable
        if reason is not None:
            writer.write(_row(task, bandwidth, status=STATUS_SKIPPED_UNAVAILABLE, reason=reason))
            skipped += 1
            progress.step(task)
            continue
        predicted = predict_seconds(history[task.series], m, n_x)
        if predicted is not None and predicted > profile.call_budget_s:
            writer.write(_row(task, bandwidth, status=STATUS_SKIPPED_BUDGET, predicted_s=predicted))
            skipped += 1
            progress.step(task)
        else:
            runnable.append((task, predicted))
    if not runnable:
        return timed, skipped

    need = _cell_bytes(m, n_x, {(t.dtype, t.layout) for t, _ in runnable})
    if need > MEMORY_HEADROOM * psutil.virtual_memory().available:
        for task, predicted in runnable:
            writer.write(_row(task, bandwidth, status=STATUS_SKIPPED_MEMORY, predicted_s=predicted))
            progress.step(task)
        return timed, skipped + len(runnable)

    base = make_problem(m, n_x, seed=config.seed)
    by_variant: dict[tuple[str, str], list[tuple[Task, float | None]]] = defaultdict(list)
    for task, predicted in runnable:
        by_variant[(task.dtype, task.layout)].append((task, predicted))
    for (dtype, layout), variant_tasks in by_variant.items():
        problem = base.as_layout(dtype, cast(Layout, layout))
        with thread_limits(1):
            reference = REGISTRY[REFERENCE].propagate(problem.w, problem.b, problem.X, problem.Y)
        for task, predicted in variant_tasks:
            if task.implementation in failed:  # failed in an earlier variant of this cell
                writer.write(_row(task, bandwidth, status=STATUS_FAILED_CHECK, reason=failed[task.implementation]))
                progress.step(task)
                continue
            try:
                median_s = _time_task(task, predicted, problem, reference, profile, bandwidth, writer)
            except Exception as exc:  # a wrong or raising implementation: its rows say so, the run goes on
                failed[task.implementation] = describe_failure(exc)
                writer.write(_row(task, bandwidth, status=STATUS_FAILED_CHECK, reason=failed[task.implementation]))
                progress.step(task)
                continue
            history[task.series].append((m, n_x, median_s))
            if task.threads > 1:
                time.sleep(SETTLE_S)
            timed += 1
            progress.step(task)
        del problem
    return timed, skipped


def _time_task(
    task: Task,
    predicted: float | None,
    problem: Problem,
    reference: Gradients,
    profile: Profile,
    bandwidth: dict[str, float],
    writer: RowWriter,
) -> float:
    """Gate, time and record one task; returns its median seconds per call."""
    impl = task.code
    prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)  # conversion stays outside timing
    gate = correctness_gate(task, reference)
    with thread_limits(task.threads):
        timing = measure(
            prepared.step,
            jit=impl.jit,
            budget_s=profile.cell_budget_s,
            round_s=profile.round_s,
            max_rounds=profile.max_rounds,
            check=lambda result: gate(prepared.gradients(result)),
        )
    writer.write(
        _row(
            task,
            bandwidth,
            status=STATUS_OK,
            median_s=timing.median_s,
            iqr_s=timing.iqr_s,
            min_s=timing.min_s,
            rounds=timing.rounds,
            loops=timing.loops,
            compile_s=timing.compile_s,
            predicted_s=predicted,
        )
    )
    return timing.median_s
