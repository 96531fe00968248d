"""Report section "Why": formats the analysis's cost models and the figures they give; decides nothing.

The model's constants are what explain the verdicts: partial vectorisation pays NumPy's
per-call cost once per example to save n_x interpreted multiply-adds, so its gain is governed
by n_x; full vectorisation pays one fixed cost per step against m x n_x interpreted
multiply-adds, so its gain is governed by m x n_x, until reading X at memory speed caps it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analyse.analysis import Analysis
from bench.analyse.explain import (
    KERNEL_WINS_CSV,
    LEVELS_CSV,
    MODEL_CSV,
    MODEL_ERRORS_CSV,
    PARTIAL_REACH,
    PREDICTED_CSV,
    TARGET_MEDIAN_ERROR,
    TARGET_WORST_ERROR,
    Full,
    Lecture,
    Partial,
)
from bench.analyse.model import ALLOC_RAMP
from bench.analyse.views import fmt_seconds, fmt_speedup, headline, setting_label
from bench.base.constants import DEFAULT_MMAP_THRESHOLD_BYTES as MMAP_THRESHOLD
from bench.present.tables import md_rows
from implementations import BASELINE, REFERENCE


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%" if np.isfinite(value) else "n/a"


MODEL_TEXT = (
    "t = call + m x per-example + n_x x per-feature + m x n_x x (per-element + reads x itemsize x [read time "
    "per byte where X lives, over L1's]), with at most two more terms an implementation's own facts call for: "
    "a strided walk (one example's features at a time, in C order) waits walk-stall of a line read per element "
    "once its n_x lines no longer stay in cache (an interpreted walk from L1's capacity to L2's, a compiled one "
    "from a quarter of L2's to all of it, and only min(1, stride / 4 KiB) of it, as the prefetchers follow "
    "strides within a page; a stride of 2^k x an odd number of lines fills the caches 2^k times as fast); "
    "(1, m) temporaries cost alloc per example past glibc's mmap threshold. `reads` is the algorithm's (two "
    "matrix-vector products read X twice, a fused kernel once) and the read times and cache capacities are this "
    "machine's measured sweep: neither is fitted. The rest is fitted, nonnegative, with a robust (Huber) loss on "
    "the relative error, on the grid's cells only."
)
ERRORS_TEXT = (
    "Errors are |predicted / measured - 1|: on the cells fitted; held out (each cell predicted by a fit without "
    "it); and off the grid, on cells between the grid's sizes measured in this run and never fitted, the test "
    "of a model that claims to explain rather than memorise."
)


def _range(median: float, worst: float) -> str:
    return f"{_percent(median)} / {_percent(worst)}"


def _model_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in table.iterrows():
        off = "n/a"
        if r["off_grid_cells"]:
            off = f"{_range(r['off_grid_median_error'], r['off_grid_worst_error'])} ({r['off_grid_cells']} cells)"
        rows.append(
            [
                f"`{r['implementation']}`",
                str(r["readable"]),
                str(r["parameters"]),
                _range(r["median_rel_error"], r["worst_rel_error"]),
                _range(r["held_out_median_error"], r["held_out_worst_error"]),
                off,
                f"{r['worst_m']:,}, {r['worst_n_x']:,} ({r['worst_signed_error'] * 100:+.0f}%)",
                "met" if r["meets_targets"] else "**missed**",
            ]
        )
    return rows


def why_section(a: Analysis) -> list[str]:
    lines = ["", "## Why the speedups are what they are", ""]
    if a.models:
        no_sweep = " This run has no memory sweep, so the per-element cost is one constant. "
        sweep = " " if a.hierarchy is not None else no_sweep
        lines += [
            f"Each implementation's measured times ({setting_label(headline(a.frame))}) are fitted by {MODEL_TEXT}"
            + sweep
            + ERRORS_TEXT
            + f" Targets on the fitted cells: median <= {TARGET_MEDIAN_ERROR:.0%}, worst <= {TARGET_WORST_ERROR:.0%}. "
            f"Every parameter with its unit and source in `{MODEL_CSV}`, the errors in `{MODEL_ERRORS_CSV}`, each "
            f"level's per-element cost in `{LEVELS_CSV}`.",
            "",
            md_rows(
                [
                    "implementation",
                    "model, in readable units",
                    "fitted parameters",
                    "fit error: median / worst",
                    "held out: median / worst",
                    "off the grid: median / worst",
                    "worst fitted cell (m, n_x)",
                    "targets",
                ],
                _model_rows(a.model_table),
            ),
            "",
            *_explanations(a),
            *_predicted(a.predicted),
        ]
    return lines + _lecture(a.lecture_figures)


def _partial_line(p: Partial) -> str:
    reach = f"{p.reach_n_x:,.0f}" if p.reach_n_x is not None else "(never, by the model)"
    return (
        f"- **Partial vectorisation is governed by n_x.** Each example costs one round of NumPy calls "
        f"({fmt_seconds(p.per_example_s)} by the model) in place of n_x interpreted multiply-adds for z and n_x "
        f"for dw ({p.per_madd_s * 1e9:.0f} ns each): it breaks even near n_x = {p.break_even_n_x:.0f} and reaches "
        f"{PARTIAL_REACH:g}x from about n_x = {reach} at m = {p.at_m:,.0f}, by the model. Rule found in the cells: "
        f"{p.rule}."
    )


def _full_line(f: Full) -> str:
    reads = np.isfinite(f.reads_at_memory_speed)
    return (
        f"- **Full vectorisation is governed by m x n_x.** One step costs a fixed {fmt_seconds(f.call_s)} "
        f"(NumPy's calls and temporaries) plus {f.per_element_in_cache_s * 1e9:.2g} ns per element in cache, "
        f"against {f.baseline_per_element_s * 1e9:.0f} ns per element interpreted: 150x needs the interpreted work "
        f"to outweigh that fixed cost 150 times, from about m x n_x = {f.elements_for_threshold:,.0f} elements by "
        f"the model. Once X is in main memory (beyond {f.out_of_cache_bytes / 2**20:,.0f} MiB here) each element "
        "costs "
        + (f"as much as reading X {f.reads_at_memory_speed:.2g} times at memory speed, " if reads else "")
        + f"capping the speedup near {fmt_speedup(f.cap)}. Rule found in the cells: {f.rule}."
    )


def _allocator_line(f: Full) -> str:
    return (
        f"- **The allocator is part of `{f.implementation}`'s cost at large m.** Each step allocates about a dozen "
        f"(1, m) temporaries; from m = {MMAP_THRESHOLD // 8:,} (float64) they pass glibc's default "
        f"{MMAP_THRESHOLD // 1024} KiB mmap threshold, and the memory they free is handed back to the system, "
        "so every step page-faults them in again. The grid measures in that default state, the one a training "
        "loop in a default Python process is in, and the model has an allocation term for it: "
        + (
            f"{fmt_seconds(f.alloc_per_example_s)} more per example, growing from the threshold to its full size at "
            f"{2**ALLOC_RAMP:g} times the threshold, by the fit."
            if f.alloc_per_example_s > 0
            else "the fit found no cost there in this run."
        )
        + ' "How robust is this answer" gives the factor measured with glibc\'s thresholds raised.'
    )


def _kernel_lines(wins: pd.DataFrame) -> list[str]:
    return [
        f"- `{r['implementation']}` beats `{REFERENCE}` in {r['wins']} of {r['cells']} measured cells, up to "
        f"m x n_x = {r['largest_win_elements']:,} elements; its fixed cost per call is {fmt_seconds(r['call_s'])} "
        f"against NumPy's {fmt_seconds(r['reference_call_s'])}, by the model."
        for _, r in wins.iterrows()
    ]


def _explanations(a: Analysis) -> list[str]:
    if BASELINE not in a.models:
        return []
    lines = ["### What governs each claim", ""]
    if a.partial is not None:
        lines.append(_partial_line(a.partial))
    if a.full is not None:
        lines += [_full_line(a.full), _allocator_line(a.full)]
    lines += _kernel_lines(a.kernel_wins)
    return [*lines, f"Kernels against `{REFERENCE}` also in `{KERNEL_WINS_CSV}`.", ""]


def _predicted(predicted: pd.DataFrame) -> list[str]:
    if predicted.empty:
        return []
    rows = [
        [f"`{r['implementation']}`", f"{r['m']:,}", f"{r['n_x']:,}", r["status"],
         f"*{fmt_seconds(r['predicted_s'])} (predicted)*" if np.isfinite(r["predicted_s"]) else "n/a"]
        for _, r in predicted.iterrows()
    ]  # fmt: skip
    return [
        "### Cells not measured (predicted, not measured)",
        "",
        "The cut-off skipped these; the times are the *predictions* it made before skipping, never used as results. "
        f"Also in `{PREDICTED_CSV}`.",
        "",
        md_rows(["implementation", "m", "n_x", "status", "predicted time per call"], rows),
        "",
    ]


def _lecture(lecture: Lecture | None) -> list[str]:
    if lecture is None:
        return []
    rows = [
        [r["label"], fmt_seconds(r["median_s"]), fmt_seconds(r["quoted_s"]) if np.isfinite(r["quoted_s"]) else "-"]
        for _, r in lecture.table.iterrows()
    ]
    lines = [
        "### The lecture's demo: a 1,000,000-element dot product",
        "",
        "The ~300x comes from this demo: a Python for-loop against `np.dot`. "
        "Lecture figures are *quoted*, not measured.",
        "",
        md_rows(["variant", "measured (median)", "lecture (quoted)"], rows),
    ]
    if lecture.ratio is not None:
        lines += [
            "",
            f"Measured ratio loop / np.dot: **{fmt_speedup(lecture.ratio)}** (the lecture: "
            f'{fmt_speedup(lecture.quoted_ratio)}, "about 300 times").',
        ]
    if lecture.list_s is not None and lecture.list_ratio is not None:
        lines.append(
            f"Over Python lists the same loop takes {fmt_seconds(lecture.list_s)}, so against that baseline "
            f"np.dot is {fmt_speedup(lecture.list_ratio)}: indexing a NumPy array from Python boxes "
            "every element into a new scalar object, which is part of what the 1x baseline pays."
        )
    return [*lines, ""]
