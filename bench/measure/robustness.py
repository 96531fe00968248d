"""How robust is the answer: incidental choices that move a timing, each measured side by side.

Five effects, each a comparison of two variants (a against b, factor = time_a / time_b):
- allocator: glibc malloc's default state against one that keeps freed memory mapped
  (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ raised). glibc reads these when a
  process starts, so each variant runs in its own fresh worker process.
- power_of_two: a power-of-two size against a near neighbour, compared per element. In C
  order a row stride that is a multiple of 4 KiB maps one example's features to the same
  cache sets.
- baseline_style: the two-loop baseline over NumPy arrays against the same loops over lists.
- alignment: X where the grid puts it (data.GRID_X_OFFSET: 16 bytes into a cache line, where
  glibc puts a large array) against X on a line: a vector load that straddles two lines costs two.
  An effect of the data, not of the process: both in each worker, in interleaved rounds (paired),
  so that the difference between two processes' pages is not taken for it. The
  one-pass kernel and BLAS, examples-major (where the kernel's loads over a column start where
  the column does) and features-major.
- process: one cell's median in several fresh processes; factor = slowest / fastest. The
  IQR of a results row is within one process and cannot show this.

Every variant is timed by bench.measure.worker (the grid runner's gate and timing code) in a fresh
process. The study writes robustness.csv in one atomic rename and nothing else, so it can share
a folder with a run's results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.base.constants import KEEP_MAPPED_ENV
from bench.base.errors import BenchError
from bench.base.records import Cell
from bench.base.results import STATUS_OK, STATUS_SKIPPED_UNAVAILABLE, rows_csv, write_text_atomic
from bench.measure.worker import WorkerRequest, WorkerResult, time_in_worker

if TYPE_CHECKING:  # pandas is imported only where the table is read
    import pandas as pd

ROBUSTNESS_CSV = "robustness.csv"
EFFECTS = ("allocator", "power_of_two", "baseline_style", "alignment", "process")

COLUMNS = (
    "effect",
    "implementation",
    "m",
    "n_x",
    "dtype",
    "layout",
    "threads",
    "variant_a",
    "variant_b",
    "implementation_b",  # differs from implementation for baseline_style
    "m_b",  # differs from m for power_of_two (the neighbour size)
    "n_x_b",
    "env_a",  # environment added to variant a's worker, e.g. MALLOC_* settings
    "env_b",
    "x_offset_a",  # bytes into a cache line X started in variant a's workers, as measured there
    "x_offset_b",
    "time_a_s",  # median over processes of each process's median seconds per call
    "time_b_s",
    "iqr_a_s",  # median over processes of each process's IQR
    "iqr_b_s",
    "min_a_s",  # median over processes of each process's fastest round: the least disturbed estimate
    "min_b_s",
    "per_element_a_s",  # time / (m x n_x)
    "per_element_b_s",
    "factor",
    "factor_min",  # the same ratio on min_a_s / min_b_s, steadier than the medians on a busy machine
    "basis",  # what the factor compares: per_call, per_element or max_over_min
    "processes",  # fresh processes per variant
    "medians_a_s",  # every process's median, ';'-separated, in the order they ran
    "medians_b_s",
    "status",
    "reason",
    "cpu",
)
REQUIRED_COLUMNS = (
    "effect",
    "implementation",
    "m",
    "n_x",
    "layout",
    "variant_a",
    "variant_b",
    "time_a_s",
    "time_b_s",
    "factor",
)

Timer = Callable[[WorkerRequest, Mapping[str, str]], WorkerResult]


@dataclass(frozen=True)
class Variant:
    """One side of a comparison: an implementation on a cell, in a worker with this environment."""

    label: str
    implementation: str
    m: int
    n_x: int
    env: tuple[tuple[str, str], ...] = ()
    x_offset: int | None = None  # bytes into a cache line X starts; None: the grid's (data.GRID_X_OFFSET)


@dataclass(frozen=True)
class Comparison:
    """Two variants of one effect; b is None for the process effect (a alone, in several processes)."""

    effect: str
    a: Variant
    b: Variant | None
    processes: int = 1
    per_element: bool = False
    layout: str | None = None  # None: the study's (StudySettings.layout)
    paired: bool = False  # a and b (X placed differently) in the same worker, in interleaved rounds


@dataclass(frozen=True)
class StudySettings:
    """What every worker gets: the setting of the grid's headline comparison, and short budgets."""

    seed: int
    dtype: str = "float64"
    layout: str = "C"
    threads: int = 1
    budget_s: float = 0.3
    round_s: float = 0.005
    max_rounds: int = 10


def _ab(effect: str, impl: str, cells: Sequence[tuple[int, int]], processes: int) -> list[Comparison]:
    return [
        Comparison(
            effect,
            Variant("malloc_default", impl, m, n_x),
            Variant("malloc_kept_mapped", impl, m, n_x, KEEP_MAPPED_ENV),
            processes,
        )
        for m, n_x in cells
    ]


def default_plan(spread_processes: int = 3) -> tuple[Comparison, ...]:
    """The study's comparisons: the named cells of the issue plus a few that show where an effect stops.

    About 50 worker processes, about a minute on 2 cores (64 s on a 2-core AMD EPYC VM).
    """
    plan: list[Comparison] = []
    # Allocator: fully_vectorized's (1, m) temporaries are 240 KB at m = 30,000 and 800 KB at
    # 100,000 (above the 128 KiB threshold), 8 KB at m = 1,000 (below); numba_loop allocates
    # only dw, so it shows the effect is the temporaries, not the process. Two processes per
    # variant, run a b b a, since this is process state.
    plan += _ab("allocator", "fully_vectorized", [(30_000, 8), (100_000, 10), (1_000, 10)], 2)
    plan += _ab("allocator", "numba_loop", [(30_000, 8)], 2)
    # Power of two: 512 x 512 against 500 x 500 (4 KiB row stride against 4,000 bytes), for
    # the compiled loop, the partly vectorised loop, BLAS and the baseline itself, and the old
    # default grid's m = 4,096 at n_x = 64.
    for impl, (m, n_x), (m_b, n_x_b) in (
        ("numba_loop", (512, 512), (500, 500)),
        ("feature_vectorized", (512, 512), (500, 500)),
        ("fully_vectorized", (512, 512), (500, 500)),
        ("two_loop", (512, 512), (500, 500)),
        ("numba_loop", (4096, 64), (4000, 64)),
    ):
        plan.append(
            Comparison(
                "power_of_two",
                Variant("power_of_two", impl, m, n_x),
                Variant("neighbour", impl, m_b, n_x_b),
                per_element=True,
            )
        )
    # Baseline style: small, wide and tall cells.
    for m, n_x in ((10, 10), (1_000, 10), (100, 1_000)):
        plan.append(
            Comparison(
                "baseline_style",
                Variant("numpy_arrays", "two_loop", m, n_x),
                Variant("python_lists", "two_loop_lists", m, n_x),
            )
        )
    # Alignment: the one-pass kernel, whose loads over a column straddle lines unless the column
    # starts on one, and BLAS, in cache (8 MB) and out of it (80 MB), examples-major; features-major, the
    # kernel (whose blocks start on a line themselves) and BLAS in the headline setting.
    for impl, layout, (m, n_x) in (
        ("numba_fused", "F", (1_000, 1_000)),
        ("numba_fused", "F", (10_000, 1_000)),
        ("fully_vectorized", "F", (1_000, 1_000)),
        ("fully_vectorized", "F", (10_000, 1_000)),
        ("numba_fused", "C", (10_000, 1_000)),
        ("fully_vectorized", "C", (1_000, 1_000)),
    ):
        plan.append(
            Comparison(
                "alignment",
                Variant("grid_placement", impl, m, n_x),
                Variant("line_aligned", impl, m, n_x, x_offset=0),
                processes=2,
                layout=layout,
                paired=True,
            )
        )
    # Process-to-process spread: a compiled, a BLAS and an interpreted implementation, one cell.
    for impl in ("numba_loop", "fully_vectorized", "two_loop"):
        plan.append(Comparison("process", Variant("fresh_process", impl, 1_000, 100), None, spread_processes))
    return tuple(plan)


def _default_timer(request: WorkerRequest, env: Mapping[str, str]) -> WorkerResult:
    return time_in_worker(request, env=env)


def _layout(comparison: Comparison, settings: StudySettings) -> str:
    return comparison.layout or settings.layout


def _request(variant: Variant, settings: StudySettings, layout: str, paired: Variant | None = None) -> WorkerRequest:
    cell = Cell(variant.implementation, variant.m, variant.n_x, settings.dtype, layout, settings.threads, settings.seed)
    return WorkerRequest(
        cell,
        budget_s=settings.budget_s,
        round_s=settings.round_s,
        max_rounds=settings.max_rounds,
        x_offset=variant.x_offset,
        paired_offset=None if paired is None else paired.x_offset,
    )


def _env_text(env: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{k}={v}" for k, v in env)


def _join(values: Sequence[float]) -> str:
    return ";".join(repr(float(v)) for v in values)


def _unavailable(comparison: Comparison) -> str | None:
    from implementations import REGISTRY

    for variant in (comparison.a, comparison.b):
        if variant is None:
            continue
        if variant.implementation not in REGISTRY:
            raise BenchError(f"robustness study: unknown implementation {variant.implementation!r}")
        reason = REGISTRY[variant.implementation].unavailable
        if reason is not None:
            return f"{variant.implementation} {reason}"
    return None


def _base_row(comparison: Comparison, settings: StudySettings, cpu: str) -> dict[str, Any]:
    a, b = comparison.a, comparison.b
    return {
        "effect": comparison.effect,
        "implementation": a.implementation,
        "m": a.m,
        "n_x": a.n_x,
        "dtype": settings.dtype,
        "layout": _layout(comparison, settings),
        "threads": settings.threads,
        "variant_a": a.label,
        "variant_b": b.label if b is not None else "fastest_process",
        "implementation_b": (b or a).implementation,
        "m_b": (b or a).m,
        "n_x_b": (b or a).n_x,
        "env_a": _env_text(a.env),
        "env_b": _env_text((b or a).env),
        "processes": comparison.processes,
        "cpu": cpu,
    }


def _offsets(results: Sequence[WorkerResult]) -> str:
    """The offsets X started at in these workers, ';'-separated where they differ ('' where none told)."""
    told = sorted({r.x_offset for r in results if r.x_offset >= 0})
    return ";".join(str(o) for o in told)


def summarise(
    comparison: Comparison,
    results_a: Sequence[WorkerResult],
    results_b: Sequence[WorkerResult],
    settings: StudySettings,
    cpu: str = "",
) -> dict[str, Any]:
    """One robustness.csv row from each variant's per-process results (results_b unused for process)."""
    row = _base_row(comparison, settings, cpu)
    row.update(x_offset_a=_offsets(results_a), x_offset_b=_offsets(results_b))
    medians_a = [r.median_s for r in results_a]
    a, b = comparison.a, comparison.b
    if b is None:
        # The spread: a is the slowest process, b the fastest, both of the same variant.
        slow = int(np.argmax(medians_a))
        fast = int(np.argmin(medians_a))
        time_a, time_b = medians_a[slow], medians_a[fast]
        iqr_a, iqr_b = results_a[slow].iqr_s, results_a[fast].iqr_s
        mins = [r.min_s for r in results_a]
        min_a, min_b = max(mins), min(mins)
        row.update(variant_a="slowest_process", medians_a_s=_join(medians_a), medians_b_s="", basis="max_over_min")
        elements_a = elements_b = a.m * a.n_x
    else:
        medians_b = [r.median_s for r in results_b]
        time_a, time_b = float(np.median(medians_a)), float(np.median(medians_b))
        iqr_a = float(np.median([r.iqr_s for r in results_a]))
        iqr_b = float(np.median([r.iqr_s for r in results_b]))
        min_a = float(np.median([r.min_s for r in results_a]))
        min_b = float(np.median([r.min_s for r in results_b]))
        row.update(
            medians_a_s=_join(medians_a),
            medians_b_s=_join(medians_b),
            basis="per_element" if comparison.per_element else "per_call",
        )
        elements_a, elements_b = a.m * a.n_x, b.m * b.n_x
    per_a, per_b = time_a / elements_a, time_b / elements_b
    # Per element, the ratio of sizes scales both factors alike.
    size_ratio = elements_b / elements_a if comparison.per_element else 1.0
    row.update(
        time_a_s=time_a,
        time_b_s=time_b,
        iqr_a_s=iqr_a,
        iqr_b_s=iqr_b,
        per_element_a_s=per_a,
        per_element_b_s=per_b,
        min_a_s=min_a,
        min_b_s=min_b,
        factor=time_a / time_b * size_ratio,
        factor_min=min_a / min_b * size_ratio,
        status=STATUS_OK,
        reason="",
    )
    return row


def _measure(comparison: Comparison, settings: StudySettings, timer: Timer) -> tuple[list[WorkerResult], ...]:
    """Each variant in `processes` fresh processes, in the order a b b a a b ... so drift cancels; a
    paired comparison both in each of `processes` fresh processes, in the same rounds."""
    results_a: list[WorkerResult] = []
    results_b: list[WorkerResult] = []
    b = comparison.b
    layout = _layout(comparison, settings)
    if comparison.paired and b is not None:
        for _ in range(comparison.processes):
            both = timer(_request(comparison.a, settings, layout, paired=b), dict(comparison.a.env))
            if both.paired is None:
                raise BenchError(f"robustness study: the worker did not time {comparison.effect}'s second variant")
            results_a.append(both)
            results_b.append(both.paired)
        return results_a, results_b
    for i in range(comparison.processes):
        order = [(comparison.a, results_a), (b, results_b)]
        if i % 2:
            order.reverse()
        for variant, into in order:
            if variant is None:
                continue
            into.append(timer(_request(variant, settings, layout), dict(variant.env)))
    return results_a, results_b


def _pairable(comparison: Comparison) -> bool:
    """Whether a and b differ only in where X starts: what one worker can time in the same rounds."""
    a, b = comparison.a, comparison.b
    return b is not None and (a.implementation, a.m, a.n_x, a.env) == (b.implementation, b.m, b.n_x, b.env)


def measure_comparison(
    comparison: Comparison, settings: StudySettings, timer: Timer = _default_timer, cpu: str = ""
) -> dict[str, Any]:
    """Time one comparison and return its row (a skipped row where an implementation cannot run here)."""
    if comparison.effect not in EFFECTS:
        raise BenchError(f"robustness study: unknown effect {comparison.effect!r}")
    if comparison.paired and not _pairable(comparison):
        raise BenchError(f"robustness study: {comparison.effect}'s variants differ in more than where X starts")
    if comparison.processes < (3 if comparison.b is None else 1):
        raise BenchError(f"robustness study: {comparison.effect} needs more processes than {comparison.processes}")
    reason = _unavailable(comparison)
    if reason is not None:
        return {**_base_row(comparison, settings, cpu), "status": STATUS_SKIPPED_UNAVAILABLE, "reason": reason}
    results_a, results_b = _measure(comparison, settings, timer)
    return summarise(comparison, results_a, results_b, settings, cpu)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    return rows_csv(rows, COLUMNS)


def _describe(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    what = f"{comparison.effect}: {a.implementation} at m={a.m}, n_x={a.n_x}"
    if b is None:
        return f"{what}, {comparison.processes} fresh processes"
    if comparison.effect == "power_of_two":
        return f"{what} against m={b.m}, n_x={b.n_x}"
    if comparison.effect == "baseline_style":
        return f"{what} against {b.implementation}"
    if comparison.layout is not None:
        what += f" ({comparison.layout})"
    return f"{what}, {a.label} against {b.label}"


def run_study(
    out: Path,
    plan: Sequence[Comparison],
    settings: StudySettings,
    timer: Timer = _default_timer,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Measure every comparison, then write out/robustness.csv in one atomic rename; returns its path.

    Nothing else in `out` is touched, so the study can share a folder with a run's results.
    """
    from bench.measure.metadata import cpu_model

    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    cpu = cpu_model()
    rows = []
    for i, comparison in enumerate(plan, 1):
        row = measure_comparison(comparison, settings, timer, cpu)
        rows.append(row)
        result = f"{row['factor']:.2f}x" if row["status"] == STATUS_OK else str(row["reason"])
        say(f"[{i}/{len(plan)}] {_describe(comparison)}: {result}")
    path = out / ROBUSTNESS_CSV
    try:
        write_text_atomic(path, to_csv(rows))
    except OSError as exc:
        raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def load_robustness(path: Path) -> pd.DataFrame:
    """robustness.csv as a DataFrame, checked: known effects, the required columns, positive factors."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise BenchError(f"corrupt robustness file {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BenchError(f"corrupt robustness file {path}: missing columns {', '.join(missing)}")
    unknown = set(frame["effect"].astype(str)) - set(EFFECTS)
    if unknown:
        raise BenchError(f"corrupt robustness file {path}: unknown effect {sorted(unknown)[0]!r}")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    if "status" in frame.columns:
        frame["status"] = frame["status"].fillna(STATUS_OK)
    try:
        for column in ("m", "n_x"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(int)
        for column in ("m_b", "n_x_b"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").fillna(frame[column[:-2]]).astype(int)
        for column in ("time_a_s", "time_b_s", "factor", "factor_min", "iqr_a_s", "iqr_b_s"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"corrupt robustness file {path}: {exc}") from None
    ok = frame["status"] == STATUS_OK
    if (frame.loc[ok, "factor"].isna() | (frame.loc[ok, "factor"] <= 0)).any():
        raise BenchError(f"corrupt robustness file {path}: an 'ok' row has no positive factor")
    return frame
