"""The grid sweep: plan the cells, gate each implementation's answer, time it, append a row.

Order matters: cells run smallest first, so the cut-off can predict each cell's time
from the cells already measured for the same implementation and skip what would blow
the budget; within a cell, one dtype and layout of X exists at a time, to bound memory.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import psutil
from tqdm.auto import tqdm

from bench.base.claims import HEADLINE, JUDGED_DTYPE
from bench.base.constants import COURSE_SHAPE
from bench.base.errors import BenchError
from bench.base.hierarchy import hierarchy_of, out_of_cache_bytes
from bench.base.records import KEY, SUMMARY_FIELDS, Cell, CellKey
from bench.base.results import (
    CANARY_CSV,
    COLUMNS,
    LECTURE_CSV,
    METADATA_JSON,
    RESULTS_CSV,
    ROOFS_CSV,
    ROUNDS_CSV,
    SPEEDUPS_CSV,
    STATUS_FAILED_CHECK,
    STATUS_OK,
    STATUS_SKIPPED_BUDGET,
    STATUS_SKIPPED_MEMORY,
    STATUS_SKIPPED_UNAVAILABLE,
    Row,
    RowWriter,
    load_beside,
    load_metadata,
    load_results,
    write_csv_atomic,
    write_json_atomic,
)
from bench.measure.bandwidth import OnePassRead, last_level_cache_bytes, measure_hierarchy
from bench.measure.check import check_before_run, describe_failure
from bench.measure.cutoff import predict_call_s
from bench.measure.data import GRID_X_OFFSET, Layout, Problem, make_problem
from bench.measure.estimates import (
    CANARY_COLUMNS,
    GROUP,
    OUTLIER_CONTRADICTIONS,
    ROOF_COLUMNS,
    ROUND_COLUMNS,
    SUSPECT_FACTOR,
    Estimates,
    estimate,
    interleaved,
    noisy_line,
    remeasure_order,
    stability_summary,
)
from bench.measure.here import correctness_gate
from bench.measure.isolated import time_isolated
from bench.measure.lecture import run_lecture_demo
from bench.measure.metadata import collect_metadata
from bench.measure.profiles import Profile
from bench.measure.timing import (
    WARMUP_S,
    Contender,
    ContenderError,
    calibrate,
    make_canary,
    round_counts,
    run_blocked,
    run_interleaved,
    schedule,
    summarise,
    thread_limits,
)
from bench.measure.worker import WorkerPool
from implementations import REFERENCE, REGISTRY, Gradients, Implementation

MEMORY_HEADROOM = 0.8  # use at most this share of the memory available when a cell starts
# After a multi-threaded measurement, OpenBLAS and OpenMP workers keep spinning for a while
# (about 100 ms was seen here) and take a core from whatever is timed next: a 2-thread
# numba_parallel call straight after fully_vectorized ran 1.6x slower. Wait this long first.
SETTLE_S = 0.25


@dataclass(frozen=True)
class Task(Cell):
    """One row to produce: a cell, the code that measures it, and whether the cut-off may skip it."""

    impl: Implementation | None = field(default=None, compare=False, repr=False)  # set by plan()
    must: bool = field(default=False, compare=False)  # measured whatever the cut-off predicts (MUST_ROUNDS)

    @property
    def code(self) -> Implementation:
        return self.impl if self.impl is not None else REGISTRY[self.implementation]


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
    size_for_cache: bool = True  # add a cell if the grid stops short of 4x the measured last cache
    sweep: bool = True  # measure the memory hierarchy first (tens of seconds); without it, no bandwidth figures
    off_grid: tuple[tuple[int, int], ...] = ()  # headline-setting cells the analysis keeps out of its fits
    located: tuple[tuple[int, int], ...] = ()  # headline-setting cells measured to locate a verdict's threshold


@dataclass
class RunSummary:
    results: Path
    timed: int = 0
    skipped: int = 0
    reused: int = 0
    interrupted: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # implementation -> why it failed the check
    remeasured: int = 0  # passes after the sweep: over groups in doubt, then over the spread goals' groups
    noisy: str | None = None  # one line for stderr when the machine was unstable during the run


def _settings(config: RunConfig, impl: Implementation) -> Iterator[tuple[str, str, int]]:
    """(dtype, layout, threads) of one implementation on a grid cell."""
    for dtype, layout in itertools.product(config.dtypes, config.layouts):
        if impl.python_loops and dtype != config.dtypes[0]:
            continue
        thread_counts = (1,) if impl.threading == "none" else config.threads
        for threads in dict.fromkeys(thread_counts):
            yield dtype, layout, threads


def plan(config: RunConfig) -> list[Task]:
    """Every row the run will produce, cell by cell, smallest cell first.

    Interpreted implementations are timed in the first dtype only (float32 changes nothing
    for the interpreter); implementations that use no thread pool run at 1 thread only.
    Off-grid and located cells get the headline setting only, where the run has it.
    """
    headline = (HEADLINE["dtype"], HEADLINE["layout"], HEADLINE["threads"])
    headline_only = [c for c in (*config.off_grid, *config.located) if c not in set(config.cells)]
    cells = sorted({*config.cells, *headline_only}, key=lambda c: (c[0] * c[1], c[0]))
    tasks = []
    for m, n_x in cells:
        for impl in config.implementations:
            for dtype, layout, threads in _settings(config, impl):
                if (m, n_x) in headline_only and (dtype, layout, threads) != headline:
                    continue
                must = (m, n_x) == COURSE_SHAPE and (dtype, layout, threads) == headline
                tasks.append(Task(impl.name, m, n_x, dtype, layout, threads, config.seed, impl, must=must))
    # One cell's rows together, grouped by setting as the sweep times them.
    order = {s: k for k, s in enumerate(itertools.product(config.dtypes, config.layouts, config.threads))}
    return sorted(tasks, key=lambda t: (t.m * t.n_x, t.m, t.n_x, order.get((t.dtype, t.layout, t.threads), 0)))


def _cell_bytes(m: int, n_x: int, variants: set[tuple[str, str]]) -> int:
    """Peak bytes of a cell: the float64 base X plus the largest variant alive beside it (each a copy,
    placed at GRID_X_OFFSET)."""
    base = m * n_x * 8
    extra = [m * n_x * np.dtype(d).itemsize for d, _ in variants]
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


def _memory(config: RunConfig, previous: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """The measured memory hierarchy and main-memory bandwidth per thread count; reused on resume."""
    thread_counts = sorted({1, *config.threads})
    if not config.sweep:
        return {}, {}
    memory = previous.get("memory")
    if not memory or any(str(t) not in memory.get("threads", {}) for t in thread_counts):
        memory = measure_hierarchy(thread_counts, config.profile.sweep_top_bytes)
    bandwidth = {}
    for t in thread_counts:
        found = hierarchy_of({"memory": memory}, t)
        if found is not None:
            bandwidth[str(t)] = found.memory_gbps
    return memory, bandwidth


# The grid reaches at least this many times the measured last cache capacity, memory allowing.
CACHE_REACH = 4
SIZING_N_X = 1_000  # the added cell's n_x: many examples of a middling width


def sized_cells(config: RunConfig, memory: dict[str, Any]) -> tuple[tuple[tuple[int, int], ...], dict[str, Any]]:
    """The plan's cells, plus one cell of X >= CACHE_REACH x the measured last capacity if none reaches it.

    The largest capacity any swept thread count measured: threads on other cores bring more cache,
    and the out-of-cache limit of a row is its own thread count's (hierarchy.out_of_cache_bytes).
    """
    found = [hierarchy_of({"memory": memory}, int(t)) for t in memory.get("threads", {})]
    capacities = [h.last_capacity_bytes for h in found if h is not None and h.last_capacity_bytes is not None]
    capacity = max(capacities) if capacities else None
    if capacity is None:
        return config.cells, {"note": "no cache level found in the sweep"}
    need = CACHE_REACH * capacity
    largest = max(m * n * 8 for m, n in config.cells)
    note: dict[str, Any] = {"last_capacity_bytes": capacity, "needed_bytes": need, "largest_bytes": largest}
    if largest >= need or not config.size_for_cache:
        return config.cells, note
    m = int(math.ceil(need / (8 * SIZING_N_X) / 10_000) * 10_000)  # a round number, never a power of two
    cell = (m, SIZING_N_X)
    if _cell_bytes(*cell, {(d, lay) for d in config.dtypes for lay in config.layouts}) > (
        MEMORY_HEADROOM * psutil.virtual_memory().available
    ):
        return config.cells, {**note, "memory_short": f"a cell of m = {m:,}, n_x = {SIZING_N_X:,} would not fit memory"}
    return (*config.cells, cell), {**note, "added_cell": list(cell)}


def _rates(bytes_x: int, median_s: float | None, limit_gbps: float | None) -> tuple[float | None, float | None]:
    """GB/s of X read per step, and its share of the measured read bandwidth."""
    gbps = bytes_x / median_s / 1e9 if median_s else None
    return gbps, (gbps / limit_gbps if gbps and limit_gbps else None)


def _row(task: Task, bandwidth: dict[str, float], **values: Any) -> Row:
    bytes_x = task.m * task.n_x * np.dtype(task.dtype).itemsize
    gbps, fraction = _rates(bytes_x, values.get("median_s"), bandwidth.get(str(task.threads)))
    return Row(
        **asdict(task.cell_only()),
        bytes_x=bytes_x,
        gbps=gbps,
        bw_fraction=fraction,
        **values,
    )


def _cells(tasks: list[Task]) -> Iterator[tuple[tuple[int, int], list[Task]]]:
    for cell, group in itertools.groupby(tasks, key=lambda t: (t.m, t.n_x)):
        yield cell, list(group)


def _run_meta(
    config: RunConfig, memory: dict[str, Any], bandwidth: dict[str, float], sizing: dict[str, Any]
) -> dict[str, Any]:
    """metadata.json as the run starts: the machine, the plan, the budgets and the measured memory."""
    return {
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
        # rows on several threads: the pause between blocks, and each block's untimed calls (run_blocked)
        "settle_s": SETTLE_S,
        "warmup_s": WARMUP_S,
        "x_offset_bytes": GRID_X_OFFSET,  # where every timed X starts in its cache line
        "last_level_cache_bytes": last_level_cache_bytes(),
        "memory": memory,
        "bandwidth_gbps": bandwidth,
        "sizing": sizing,
        "off_grid_cells": [list(c) for c in config.off_grid if c not in set(config.cells)],
        "located_cells": [list(c) for c in config.located if c not in {*config.cells, *config.off_grid}],
    }


def _say_memory(meta: dict[str, Any]) -> None:
    levels = hierarchy_of(meta)
    if levels is not None:
        caps = ", ".join(f"{lv.capacity_bytes / 2**20:.3g} MiB" for lv in levels.levels if lv.capacity_bytes)
        print(f"cache capacities measured (1 thread): {caps or 'none'}", file=sys.stderr, flush=True)
    bandwidth = meta["bandwidth_gbps"]
    print(
        "main-memory read bandwidth: " + ", ".join(f"{v:.1f} GB/s on {k} thread(s)" for k, v in bandwidth.items()),
        file=sys.stderr,
        flush=True,
    )
    sizing = meta["sizing"]
    if "added_cell" in sizing or "memory_short" in sizing:
        print(f"sizing: {sizing.get('memory_short') or 'added cell ' + str(sizing['added_cell'])}", file=sys.stderr)


def _lecture(config: RunConfig) -> None:
    """The lecture's demo into lecture.csv, unless a resumed run has it already."""
    if not config.lecture or (config.resume and (config.out / LECTURE_CSV).is_file()):
        return
    print("timing the lecture's 1e6-element dot product ...", file=sys.stderr, flush=True)
    lecture_rows = run_lecture_demo(config.seed, config.profile.lecture_repeats)
    lecture_writer = RowWriter(config.out / LECTURE_CSV, tuple(lecture_rows[0]))
    for lecture_row in lecture_rows:
        lecture_writer.write(lecture_row)
    lecture_writer.finish()


def _sweep_cells(sweep: _Sweep, tasks: list[Task], summary: RunSummary) -> None:
    """The lecture demo, every cell in order, then re-measurement; Ctrl-C keeps what was measured."""
    try:
        _lecture(sweep.config)
        for (m, n_x), cell_tasks in _cells(tasks):
            timed, skipped = sweep.cell(m, n_x, cell_tasks)
            summary.timed += timed
            summary.skipped += skipped
            sweep.progress.cell_done(m, n_x, timed, skipped)
        sweep.progress.close()
        summary.remeasured = _remeasure(sweep, sweep.config.profile)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        sweep.progress.close()


def run(config: RunConfig) -> RunSummary:
    """Measure the plan into config.out; Ctrl-C keeps every finished row."""
    previous_rows, previous_meta = _previous(config)
    if config.sweep:
        print("measuring the memory hierarchy (read bandwidth against working-set size) ...", file=sys.stderr)
    memory, bandwidth = _memory(config, previous_meta)
    cells, sizing = sized_cells(config, memory)
    config = replace(config, cells=cells)
    tasks = plan(config)
    print(
        f"profile {config.profile.name}: {len(config.cells)} cells, {len(tasks)} rows into {config.out}",
        file=sys.stderr,
        flush=True,
    )
    summary = RunSummary(results=config.out / RESULTS_CSV)
    meta = _run_meta(config, memory, bandwidth, sizing)
    _say_memory(meta)
    writer = RowWriter(config.out / RESULTS_CSV)
    with WorkerPool() as pool:
        sweep = _Sweep(
            config,
            bandwidth,
            writer,
            Progress(len(tasks)),
            pool,
            summary.failed,
            canary=make_canary(config.profile.round_s / 4),
            roof_from_bytes={t: out_of_cache_bytes(meta, t) for t in {1, *config.threads}},
            rng=np.random.default_rng([config.seed, 1]),
        )
        if previous_rows is not None:
            rounds = load_beside(config.out, ROUNDS_CSV, ROUND_COLUMNS)
            canary = load_beside(config.out, CANARY_CSV, CANARY_COLUMNS)
            roofs = load_beside(config.out, ROOFS_CSV, ROOF_COLUMNS)
            summary.reused = sweep.reuse(previous_rows, rounds, canary, roofs)
        summary.failed.update(check_before_run(config.implementations))
        _sweep_cells(sweep, tasks, summary)
    writer.finish()
    final = _finish(sweep)
    canary_rounds = pd.DataFrame(sweep.canary_rounds, columns=list(CANARY_COLUMNS))
    # A resumed run (a locating round is one) adds its passes to those of the runs it continues.
    earlier = int((previous_meta.get("stability") or {}).get("remeasured_passes", 0)) if config.resume else 0
    meta["stability"] = stability_summary(final, canary_rounds, earlier + summary.remeasured)
    meta["complete"] = not summary.interrupted
    write_json_atomic(config.out / METADATA_JSON, meta)
    summary.noisy = noisy_line(meta["stability"])
    return summary


# Rows that must be measured whatever the cut-off predicts: the course's own shape in the
# headline setting is the note's example, and the report's headline column reads it. A slow
# call there gets at least this many rounds, so its speedup still has an interval.
MUST_ROUNDS = 3


@dataclass(frozen=True)
class _Ready:
    """A task set up, gated and calibrated: its contender, and what the set-up and first call took."""

    task: Task
    contender: Contender
    compile_s: float | None
    setup_s: float
    plan: str | None  # Prepared.plan: the set-up's choice, where it timed several ways of stepping


@dataclass
class _Group:
    """Rows timed together: one cell, dtype, layout and thread count; what a re-measurement repeats."""

    key: tuple[int, int, str, str, int]  # estimates.GROUP: m, n_x, dtype, layout, threads
    tasks: list[Task]
    passes: int = 0
    next_round: int = 0
    plans: dict[CellKey, list[str]] = field(default_factory=dict)  # each task's plans kept by its set-ups, in order

    @property
    def blocked(self) -> bool:
        return not interleaved(self.key[4])


@dataclass
class _Sweep:
    """What the cells of one run share: the output, the yardsticks, the history the cut-off reads."""

    config: RunConfig
    bandwidth: dict[str, float]
    writer: RowWriter
    progress: Progress
    pool: WorkerPool  # pinned workers for implementations whose thread pool no call can resize
    failed: dict[str, str]  # implementation -> why it failed the check; its later rows say so
    canary: Contender  # timed in every round: the machine's own speed through the run
    # Per thread count: groups with an X this large (out of cache there) also time the roof's read in their rounds.
    roof_from_bytes: dict[int, float] = field(default_factory=dict)
    done: set[tuple[Any, ...]] = field(default_factory=set)
    history: dict[tuple[str, str, str, int], list[tuple[int, int, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    records: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)  # every row written, by KEY
    rounds: list[dict[str, Any]] = field(default_factory=list)  # estimates.ROUND_COLUMNS
    canary_rounds: list[dict[str, Any]] = field(default_factory=list)  # estimates.CANARY_COLUMNS
    roof_rounds: list[dict[str, Any]] = field(default_factory=list)  # estimates.ROOF_COLUMNS
    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)
    resumed: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)  # group -> next pass, next round
    start: float = field(default_factory=time.perf_counter)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def estimates(self) -> Estimates:
        """Rows and speedups over every round timed so far."""
        return estimate(
            pd.DataFrame(self.rounds, columns=list(ROUND_COLUMNS)),
            pd.DataFrame(self.canary_rounds, columns=list(CANARY_COLUMNS)),
        )

    def write(self, row: Row | dict[str, Any]) -> None:
        record = asdict(row) if isinstance(row, Row) else dict(row)
        self.writer.write(record)
        self.records[tuple(record[k] for k in KEY)] = record

    def reuse(
        self,
        rows: pd.DataFrame,
        rounds: pd.DataFrame | None,
        canary: pd.DataFrame | None,
        roofs: pd.DataFrame | None = None,
    ) -> int:
        """Keep an earlier run's rows (--resume): written again, never re-timed, and known to the cut-off."""
        for record in cast(list[dict[str, Any]], rows.to_dict("records")):
            self.write(record)
            self.done.add(tuple(record[k] for k in KEY))
            if record["status"] == STATUS_OK:
                series = (record["implementation"], record["dtype"], record["layout"], int(record["threads"]))
                self.history[series].append((int(record["m"]), int(record["n_x"]), float(record["median_s"])))
        # Only the rounds of rows that are kept: a row re-timed now must not mix in a half-finished pass.
        if rounds is not None:
            keys = list(zip(*(rounds[k] for k in KEY), strict=True))
            kept = rounds[[tuple(k) in self.done for k in keys]]
            self.rounds.extend(cast(list[dict[str, Any]], kept.to_dict("records")))
            for group, frame in kept.groupby(list(GROUP)):
                # A group timed again now continues after the earlier run's passes and rounds,
                # so nothing timed now is paired with a round of the earlier run.
                self.resumed[tuple(group)] = (int(frame["pass"].max()) + 1, int(frame["round"].max()) + 1)
            # The canary and the roof of the passes kept, not of a pass left half-finished.
            passes = set(zip(*(kept[c] for c in (*GROUP, "pass")), strict=True))
            for earlier, into in ((canary, self.canary_rounds), (roofs, self.roof_rounds)):
                if earlier is not None:
                    mine = [tuple(k) in passes for k in zip(*(earlier[c] for c in (*GROUP, "pass")), strict=True)]
                    into.extend(cast(list[dict[str, Any]], earlier[mine].to_dict("records")))
        return len(self.done)

    def _skip(self, task: Task, status: str, **values: Any) -> None:
        self.write(_row(task, self.bandwidth, status=status, **values))
        self.progress.step(task)

    def _runnable(self, task: Task) -> tuple[bool, float | None]:
        """Whether the task is timed, and the cut-off's prediction; writes the row of a task that is not."""
        if task.implementation in self.failed:
            self._skip(task, STATUS_FAILED_CHECK, reason=self.failed[task.implementation])
            return False, None
        reason = task.code.unavailable
        if reason is not None:
            self._skip(task, STATUS_SKIPPED_UNAVAILABLE, reason=reason)
            return False, None
        predicted = predict_call_s(self.history[task.series], task.m, task.n_x)
        if predicted is not None and predicted > self.config.profile.call_budget_s and not task.must:
            self._skip(task, STATUS_SKIPPED_BUDGET, predicted_s=predicted)
            return False, predicted
        return True, predicted

    def cell(self, m: int, n_x: int, cell_tasks: list[Task]) -> tuple[int, int]:
        """Every row of one cell; returns (timed, skipped)."""
        runnable: list[tuple[Task, float | None]] = []
        skipped = 0
        for task in cell_tasks:
            if task.key in self.done:
                self.progress.step(task)
                continue
            ok, predicted = self._runnable(task)
            if ok:
                runnable.append((task, predicted))
            elif task.implementation not in self.failed:
                skipped += 1
        if not runnable:
            return 0, skipped

        need = _cell_bytes(m, n_x, {(t.dtype, t.layout) for t, _ in runnable})
        if need > MEMORY_HEADROOM * psutil.virtual_memory().available:
            for task, predicted in runnable:
                self._skip(task, STATUS_SKIPPED_MEMORY, predicted_s=predicted)
            return 0, skipped + len(runnable)

        base = make_problem(m, n_x, seed=self.config.seed)
        by_group: dict[tuple[Any, ...], list[tuple[Task, float | None]]] = defaultdict(list)
        for task, predicted in runnable:
            by_group[(task.dtype, task.layout, task.threads)].append((task, predicted))
        timed = 0
        variants = dict.fromkeys((dtype, layout) for dtype, layout, _ in by_group)
        for dtype, layout in variants:
            problem = base.as_layout(dtype, cast(Layout, layout), GRID_X_OFFSET)
            with thread_limits(1):
                reference = REGISTRY[REFERENCE].propagate(problem.w, problem.b, problem.X, problem.Y)
            for (d, lay, threads), entries in by_group.items():
                if (d, lay) == (dtype, layout):
                    timed += self._first_pass((m, n_x, dtype, layout, threads), entries, problem, reference)
            del problem
        return timed, skipped

    def _first_pass(
        self,
        key: tuple[int, int, str, str, int],
        entries: list[tuple[Task, float | None]],
        problem: Problem,
        reference: Gradients,
    ) -> int:
        """Time one group for the first time: isolated rows in their workers, the rest together."""
        predicted = {task.key: p for task, p in entries}
        timed = 0
        here = []
        for task, _ in entries:
            if task.code.isolate:
                timed += self._isolated(task, predicted[task.key])
            else:
                here.append(task)
        if not here:
            return timed
        passes, next_round = self.resumed.get(key, (0, 0))
        group = self.groups.setdefault(key, _Group(key, here, passes=passes, next_round=next_round))
        measured = self.time_group(group, problem, reference)
        for task in here:
            if task.key not in measured:
                continue
            row = measured[task.key]
            self.write(replace(row, predicted_s=predicted[task.key]))
            self.history[task.series].append((task.m, task.n_x, cast(float, row.median_s)))
            self.progress.step(task)
            timed += 1
        return timed  # a group on several threads ended with run_blocked's pause: the pools have settled

    def _isolated(self, task: Task, predicted: float | None) -> int:
        """A row of an implementation whose pool no call can resize: its own pinned worker, not interleaved."""
        try:
            timing, note = time_isolated(task.cell_only(), self.config.profile, self.pool)
        except Exception as exc:  # a wrong or raising implementation: its rows say so, the run goes on
            self.failed[task.implementation] = describe_failure(exc)
            self._skip(task, STATUS_FAILED_CHECK, reason=self.failed[task.implementation])
            return 0
        values = {name: getattr(timing, name) for name in SUMMARY_FIELDS}
        self.write(_row(task, self.bandwidth, status=STATUS_OK, **values, predicted_s=predicted, reason=note))
        self.history[task.series].append((task.m, task.n_x, timing.median_s))
        if task.threads > 1:
            time.sleep(SETTLE_S)
        self.progress.step(task)
        return 1

    def _prepare(self, task: Task, problem: Problem, reference: Gradients) -> _Ready:
        """Set up (untimed), compile, warm up and gate one task, and calibrate its loops per round."""
        impl = task.code
        profile = self.config.profile
        gate = correctness_gate(task, reference)
        with thread_limits(task.threads, impl.thread_hook):
            # Conversion stays outside timing; set up at the thread count it runs at (a set-up may time its plans).
            start = time.perf_counter()
            prepared = impl.setup(problem.w, problem.b, problem.X, problem.Y)
            setup_s = time.perf_counter() - start
            cal = calibrate(
                prepared.step, jit=impl.jit, round_s=profile.round_s, check=lambda r: gate(prepared.gradients(r))
            )
        hook = impl.thread_hook
        enter: Callable[[], AbstractContextManager[object]] = (
            (lambda: hook(task.threads)) if hook is not None else nullcontext
        )
        contender = Contender(
            fn=prepared.step,
            loops=cal.loops,
            round_time=cal.round_time,
            min_rounds=MUST_ROUNDS if task.must else 1,
            enter=enter,
        )
        return _Ready(task, contender, cal.compile_s, setup_s, prepared.plan)

    def time_group(self, group: _Group, problem: Problem, reference: Gradients) -> dict[tuple[Any, ...], Row]:
        """One pass over a group: every task gated and calibrated, then their rounds interleaved.

        Returns a row per task that passed its check, with this pass's statistics; the run's
        final statistics come from estimates.estimate over every pass.
        """
        profile = self.config.profile
        contenders: list[_Ready] = []
        for task in group.tasks:
            if task.implementation in self.failed:  # failed in an earlier group of this cell, or an earlier pass
                if group.passes == 0:
                    self._skip(task, STATUS_FAILED_CHECK, reason=self.failed[task.implementation])
                continue
            try:
                ready = self._prepare(task, problem, reference)
            except Exception as exc:  # a wrong or raising implementation: its rows say so, the run goes on
                self.failed[task.implementation] = describe_failure(exc)
                if group.passes == 0:
                    self._skip(task, STATUS_FAILED_CHECK, reason=self.failed[task.implementation])
                continue
            if ready.plan is not None and ready.plan not in group.plans.setdefault(task.key, []):
                group.plans[task.key].append(ready.plan)
            contenders.append(ready)
        if not contenders:
            return {}
        threads = group.key[4]
        out_of_cache = problem.X.nbytes >= self.roof_from_bytes.get(threads, math.inf)
        roof = OnePassRead(problem.X, threads) if out_of_cache else None
        try:
            with thread_limits(threads):  # its parts run on Numba's pool, as numba_parallel does
                roofs = [] if roof is None else [_roof_contender(roof, profile.round_s)]
            timed = [r.contender for r in contenders] + roofs  # the roof last: outside `contenders`, like the canary
            counts = round_counts(timed, profile.cell_budget_s, profile.max_rounds)
            first, number = group.next_round, group.passes
            self._run_rounds(group, timed, counts, first)
        except ContenderError as exc:  # a call that raised after its check passed: the rest of the group goes on
            self.canary.samples.clear()
            self.canary.stamps.clear()
            if exc.index >= len(contenders):  # the roof or the canary raised: nothing to blame on an implementation
                raise exc.error from None
            task = contenders[exc.index].task
            self.failed[task.implementation] = describe_failure(exc.error)
            return self.time_group(group, problem, reference)  # which writes its failed_check row
        group.next_round = first + max(*counts, len(timed))
        group.passes += 1
        if roofs:
            self.roof_rounds += self._take_rounds(roofs[0], group, number, first)
        return self._record_pass(group, number, first, contenders)

    def _run_rounds(self, group: _Group, timed: list[Contender], counts: list[int], first: int) -> None:
        with thread_limits(group.key[4]):
            if group.blocked:
                run_blocked(timed, counts, first_round=first, settle_s=SETTLE_S, canary=self.canary)
            else:
                plan = [[*members, len(timed)] for members in schedule(counts)]  # the canary in every round
                run_interleaved([*timed, self.canary], plan, self.rng, first_round=first)

    def _take_rounds(self, contender: Contender, group: _Group, number: int, first: int) -> list[dict[str, Any]]:
        """A series timed beside the implementations (the canary, the roof): its rounds of this pass, taken out."""
        fields = dict(zip(GROUP, group.key, strict=True))
        return [
            {
                **fields,
                "pass": number,
                "round": r,
                "seconds": contender.samples.pop(r),
                "stamp_s": contender.stamps.pop(r) - self.start,
            }
            for r in sorted(r for r in contender.samples if r >= first)
        ]

    def _record_pass(
        self, group: _Group, number: int, first: int, contenders: list[_Ready]
    ) -> dict[tuple[Any, ...], Row]:
        """Keep every round of this pass (and the canary's), and make each task's row of this pass."""
        self.canary_rounds += self._take_rounds(self.canary, group, number, first)
        fields = dict(zip(GROUP, group.key, strict=True))
        rows = {}
        for ready in contenders:
            task, contender = ready.task, ready.contender
            mine = sorted(r for r in contender.samples if r >= first)
            for r in mine:
                self.rounds.append(
                    {
                        "implementation": task.implementation,
                        **fields,
                        "pass": number,
                        "round": r,
                        "seconds": contender.samples[r],
                        "stamp_s": contender.stamps[r] - self.start,
                    }
                )
            median, iqr, low = summarise([contender.samples[r] for r in mine])
            rows[task.key] = _row(
                task,
                self.bandwidth,
                status=STATUS_OK,
                median_s=median,
                iqr_s=iqr,
                min_s=low,
                rounds=len(mine),
                loops=contender.loops,
                compile_s=ready.compile_s,
                passes=1,
                plan="+".join(sorted(group.plans[task.key])) if group.plans.get(task.key) else None,
                setup_s=ready.setup_s,
            )
        return rows


# At most this many passes over a group: the first, then re-measurements while budget is left.
MAX_PASSES = 3


def _roof_contender(roof: OnePassRead, round_s: float) -> Contender:
    """The roof's read as a contender: compiled, warmed up and calibrated like an implementation."""
    cal = calibrate(roof, jit=True, round_s=round_s)
    return Contender(fn=roof, loops=cal.loops, round_time=cal.round_time)


def _spread_groups(
    groups: dict[tuple[Any, ...], _Group], roof_from_bytes: dict[int, float], most_threads: int
) -> list[tuple[Any, ...]]:
    """Of the groups timed in this process, those a spread goal (Goal.steady) is judged on: X out of
    cache at the group's threads, in JUDGED_DTYPE, with the reference, at the threads the goal is
    judged at (most_threads, the most the run has, or 1).

    The goal compares slowest / fastest within each pass over a cell, so one pass is one sample,
    and a run with two such cells would decide the goal on two samples a side: these groups get
    passes of their own after the sweep (Profile.spread_s).
    """
    found = []
    for key, group in groups.items():
        m, n_x, dtype, _, threads = key
        if dtype != JUDGED_DTYPE or m * n_x * np.dtype(dtype).itemsize < roof_from_bytes.get(threads, math.inf):
            continue
        if REFERENCE not in {task.implementation for task in group.tasks}:
            continue  # nothing to judge the spread against
        goals = [task.code.goal for task in group.tasks]
        if any(g is not None and g.steady and threads == (most_threads if g.all_threads else 1) for g in goals):
            found.append(key)
    return found


def _more_passes(
    sweep: _Sweep, order_of: Callable[[], list[tuple[Any, ...]]], budget_s: float, what: str, budget: str
) -> int:
    """Passes 2 to MAX_PASSES over the groups order_of() names (asked again before each pass), in that
    order, each started within budget_s; returns how many group passes it timed."""
    if budget_s <= 0:
        return 0
    start = time.perf_counter()
    done = 0
    for number in range(1, MAX_PASSES):
        order = [key for key in order_of() if key in sweep.groups and sweep.groups[key].passes == number]
        if not order:  # none left at this many passes (an earlier budget may have given them more)
            continue
        print(f"re-measuring {len(order)} group(s) of {what} (pass {number + 1}) ...", file=sys.stderr, flush=True)
        for key in order:
            if time.perf_counter() - start > budget_s:
                print(f"{budget} budget of {budget_s:g} s spent", file=sys.stderr, flush=True)
                return done
            m, n_x, dtype, layout, _ = key
            problem = make_problem(m, n_x, seed=sweep.config.seed).as_layout(dtype, cast(Layout, layout), GRID_X_OFFSET)
            with thread_limits(1):
                reference = REGISTRY[REFERENCE].propagate(problem.w, problem.b, problem.X, problem.Y)
            for row_key, row in sweep.time_group(sweep.groups[key], problem, reference).items():
                if row_key in sweep.records:  # its first pass's row, with every plan its set-ups kept
                    sweep.records[row_key]["plan"] = row.plan
            del problem
            done += 1
    return done


def _remeasure(sweep: _Sweep, profile: Profile) -> int:
    """More interleaved rounds after the sweep: first for the groups whose answer is in doubt, most
    important first, started within profile.remeasure_s; then for the groups a spread goal is
    judged on (_spread_groups), started within profile.spread_s.

    In doubt: a speedup whose interval straddles its claim's threshold, a row measured while
    the machine was unstable, or a row far off its neighbours (estimates.suspects). Each
    group gets at most MAX_PASSES passes; the rows then use the passes the machine was quiet in.
    """
    done = _more_passes(
        sweep,
        lambda: remeasure_order(sweep.estimates()),
        profile.remeasure_s,
        "rows whose answer is in doubt",
        "re-measurement",
    )
    spreads = _spread_groups(sweep.groups, sweep.roof_from_bytes, max(sweep.config.threads))
    return done + _more_passes(
        sweep, lambda: spreads, profile.spread_s, "rows a spread goal is judged on, out of cache", "spread"
    )


OUTLIER_REASON = f"far off its neighbours: {SUSPECT_FACTOR:g}x against {OUTLIER_CONTRADICTIONS}+ cells of its series"
FINAL_FIELDS = ("median_s", "iqr_s", "min_s", "rounds", "passes", "canary_ratio", "unstable")


def _final_row(record: dict[str, Any], stats: dict[str, Any], bandwidth: dict[str, float]) -> dict[str, Any]:
    """A first-pass row with the statistics of every counted round, and the bandwidth figures they imply."""
    out = {**record, **{c: stats[c] for c in FINAL_FIELDS}}
    if stats.get("outlier") and not out.get("reason"):
        out["reason"] = OUTLIER_REASON
    elif not stats.get("outlier") and out.get("reason") == OUTLIER_REASON:  # derived again: no longer one
        out["reason"] = None
    out["gbps"], out["bw_fraction"] = _rates(
        int(record["bytes_x"]), stats["median_s"], bandwidth.get(str(int(record["threads"])))
    )
    return out


def _write_rows(out: Path, records: list[dict[str, Any]], final: Estimates, bandwidth: dict[str, float]) -> None:
    """results.csv with every row's statistics over its counted rounds, and speedups.csv beside it."""
    stats = {tuple(r[k] for k in KEY): r for r in cast(list[dict[str, Any]], final.rows.to_dict("records"))}
    writer = RowWriter(out / RESULTS_CSV)
    for record in records:
        key = tuple(record[k] for k in KEY)
        ok = key in stats and record.get("status") == STATUS_OK
        writer.write(_final_row(record, stats[key], bandwidth) if ok else record)
    writer.finish()
    write_csv_atomic(out / SPEEDUPS_CSV, final.speedups)


def _finish(sweep: _Sweep) -> Estimates:
    """Every row's final statistics over its counted rounds, and the tables beside results.csv."""
    out = sweep.config.out
    # The rounds first: whatever happens next, a run can be derived again from them (bench estimate).
    write_csv_atomic(out / ROUNDS_CSV, pd.DataFrame(sweep.rounds, columns=list(ROUND_COLUMNS)))
    write_csv_atomic(out / CANARY_CSV, pd.DataFrame(sweep.canary_rounds, columns=list(CANARY_COLUMNS)))
    write_csv_atomic(out / ROOFS_CSV, pd.DataFrame(sweep.roof_rounds, columns=list(ROOF_COLUMNS)))
    final = sweep.estimates()
    _write_rows(out, list(sweep.records.values()), final, sweep.bandwidth)
    return final


def reestimate(out: Path) -> dict[str, Any]:
    """Derive a finished run's rows, speedups and stability again from its rounds, with this version's rules.

    Nothing is timed: rounds.csv and canary.csv are read, results.csv, speedups.csv and
    metadata.json's `stability` rewritten (each by an atomic rename). Returns the stability.
    """
    rows = load_results(out)
    rounds = load_beside(out, ROUNDS_CSV, ROUND_COLUMNS)
    canary = load_beside(out, CANARY_CSV, CANARY_COLUMNS)
    if rounds is None or canary is None:
        raise BenchError(f"{out} has no {ROUNDS_CSV} and {CANARY_CSV} (a run made before rounds were kept)")
    meta = load_metadata(out)
    final = estimate(rounds, canary)
    table = rows[list(COLUMNS)].astype(object).where(rows[list(COLUMNS)].notna(), None)
    _write_rows(out, cast(list[dict[str, Any]], table.to_dict("records")), final, meta.get("bandwidth_gbps") or {})
    remeasured = int((meta.get("stability") or {}).get("remeasured_passes", 0))
    meta["stability"] = stability_summary(final, canary, remeasured)
    write_json_atomic(out / METADATA_JSON, meta)
    return cast(dict[str, Any], meta["stability"])
