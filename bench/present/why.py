"""Report section "Why": a cost model per implementation that follows the memory hierarchy, and the lecture's demo.

The model's constants are what explain the verdicts: partial vectorisation pays NumPy's
per-call cost once per example to save n_x interpreted multiply-adds, so its gain is governed
by n_x; full vectorisation pays one fixed cost per step against m x n_x interpreted
multiply-adds, so its gain is governed by m x n_x, until reading X at memory speed caps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.model import CostModel, fit_models
from bench.analyse.verdicts import claim_verdicts
from bench.analyse.views import fmt_bytes, fmt_seconds, fmt_speedup, headline, setting_label
from bench.base.constants import DEFAULT_MMAP_THRESHOLD_BYTES as MMAP_THRESHOLD
from bench.base.hierarchy import curve_of, hierarchy_of, out_of_cache_bytes
from bench.base.results import STATUS_FAILED_CHECK, STATUS_OK, write_text_atomic
from bench.measure.lecture import LECTURE_SECONDS
from implementations import BASELINE, REFERENCE, REGISTRY

MODEL_CSV = "model.csv"
LEVELS_CSV = "model_levels.csv"
# Targets for the fit over the measured cells of the headline slice (checked in the report, not in tests).
TARGET_MEDIAN_ERROR = 0.10
TARGET_WORST_ERROR = 0.35


def headline_models(frame: pd.DataFrame, meta: dict[str, Any]) -> dict[str, CostModel]:
    """The cost model of each implementation on the headline slice, with this run's measured bandwidth."""
    return fit_models(headline(frame), curve_of(meta, 1), held_out=True)


def _size(nbytes: float) -> str:
    return fmt_bytes(nbytes) if np.isfinite(nbytes) else "memory"


def _threshold(model: CostModel) -> str:
    parts = []
    if np.isfinite(model.shape.step_m):
        parts.append(f"m >= {model.shape.step_m:,.0f}")
    if np.isfinite(model.shape.step_elements):
        parts.append(f"m x n_x >= {model.shape.step_elements:,.0f}")
    return " or ".join(parts)


def _call(model: CostModel) -> str:
    text = f"call {fmt_seconds(model.call_s)}"
    if model.step_s > 0 and _threshold(model):
        text += f" (+{fmt_seconds(model.step_s)} from {_threshold(model)})"
    return text


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}"


def _extras(model: CostModel) -> str:
    text = ""
    if model.strided_passes > 0:
        text += (
            f"; up to {_count(model.strided_passes)} more reads of X once an example spans over "
            f"{model.shape.tlb_pages:,.0f} pages (all of them from twice that)"
        )
    if model.spanned_passes > 0:
        text += (
            f"; up to {_count(model.spanned_passes)} more reads once an example spans over "
            f"{model.shape.region_reach:,.0f} 2 MiB regions"
        )
    if model.short_row_s > 0 and model.shape.short_rows_below_m > 0:
        text += f"; {model.short_row_s * 1e9:.2g} ns more per element while m < {model.shape.short_rows_below_m:,.0f}"
    if model.alloc_per_example_s > 0:
        text += f"; {fmt_seconds(model.alloc_per_example_s)} more per example from m x itemsize >= 128 KiB"
    return text


def readable(name: str, model: CostModel) -> str:
    """The model in the unit that explains each implementation best."""
    call = _call(model)
    impl = REGISTRY.get(name)
    if impl is not None and impl.python_loops and model.per_example_s < 10 * model.per_element_s(1e4):
        # Two interpreted multiply-adds per element (one for z, one for dw), each a few bytecodes;
        # out of cache each also waits for X, which no prefetcher hides behind the interpreter.
        return (
            f"{model.per_element_s(1e4) * 1e9 / 2:.0f} ns per interpreted multiply-add (2 per element) with X in "
            f"cache, {model.per_element_s(1e12) * 1e9 / 2:.0f} ns in main memory; {call}" + _extras(model)
        )
    if impl is not None and impl.python_loops:
        return (
            f"{model.per_example_s * 1e6:.2f} µs per Python-level iteration (example), "
            f"+ {model.compute_s * 1e9:.2g} ns per element; {call}" + _extras(model)
        )
    levels = model.level_costs()
    if levels:
        sizes = " / ".join(("in " if not np.isfinite(b) else "") + _size(b) for b, _, _ in levels)
        costs = " / ".join(f"{c * 1e9:.2g}" for _, _, c in levels)
        text = f"{call}; per element {costs} ns with X up to {sizes}"
    else:
        text = f"{call}; {model.compute_s * 1e9:.2g} ns per element"
    return text + _extras(model)


def reads_at_memory_speed(model: CostModel, memory_gbps: float) -> float:
    """The per-element cost in main memory as a number of reads of X at memory's measured bandwidth."""
    return model.per_element_s(1e12) * memory_gbps * 1e9 / model.itemsize


def _worst_cell(data: pd.DataFrame, name: str, model: CostModel) -> tuple[int, int, float]:
    """The measured cell the model misses most: (m, n_x, predicted / measured - 1)."""
    rows = data[(data["status"] == STATUS_OK) & (data["implementation"] == name)]
    rel = model.predict_many(rows["m"].to_numpy(float), rows["n_x"].to_numpy(float)) / rows["median_s"].to_numpy() - 1
    i = int(np.argmax(np.abs(rel)))
    return int(rows["m"].iloc[i]), int(rows["n_x"].iloc[i]), float(rel[i])


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%" if np.isfinite(value) else "n/a"


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def level_table(models: dict[str, CostModel]) -> pd.DataFrame:
    """model_levels.csv: each implementation's fitted cost per element at each measured level of the memory."""
    rows = [
        {
            "implementation": name,
            "level": k + 1,
            "up_to_bytes": _finite(size),
            "read_gbps": gbps,
            "per_element_s": cost,
        }
        for name, model in models.items()
        for k, (size, gbps, cost) in enumerate(model.level_costs())
    ]
    return pd.DataFrame(rows, columns=["implementation", "level", "up_to_bytes", "read_gbps", "per_element_s"])


def model_table(models: dict[str, CostModel], data: pd.DataFrame) -> pd.DataFrame:
    """model.csv: the fit's constants and errors per implementation, and the cell it misses most."""
    rows = []
    for name, model in models.items():
        worst_m, worst_n, worst_rel = _worst_cell(data, name, model)
        rows.append(
            {
                "implementation": name,
                "median_rel_error": model.median_rel_error,
                "worst_rel_error": model.max_rel_error,
                "worst_m": worst_m,
                "worst_n_x": worst_n,
                "worst_signed_error": worst_rel,
                "cells": model.points,
                "call_s": model.call_s,
                "per_example_s": model.per_example_s,
                "per_feature_s": model.per_feature_s,
                "step_s": model.step_s,
                "step_from_m": _finite(model.shape.step_m),
                "step_from_elements": _finite(model.shape.step_elements),
                "compute_s_per_element": model.compute_s,
                "short_row_s_per_element": model.short_row_s,
                "short_rows_below_m": model.shape.short_rows_below_m or None,
                "passes_over_x": model.passes,
                "strided_passes_over_x": model.strided_passes,
                "tlb_reach_pages": _finite(model.shape.tlb_pages),
                "spanned_passes_over_x": model.spanned_passes,
                "region_reach_2mib": _finite(model.shape.region_reach),
                "alloc_per_example_s": model.alloc_per_example_s,
                "per_element_s_in_cache": model.per_element_s(1e4),
                "per_element_s_in_memory": model.per_element_s(1e12),
                "held_out_median_error": model.held_out_median_error,
                "meets_targets": model.median_rel_error <= TARGET_MEDIAN_ERROR
                and model.max_rel_error <= TARGET_WORST_ERROR,
                "readable": readable(name, model),
            }
        )
    return pd.DataFrame(rows)


def write_model_csv(frame: pd.DataFrame, meta: dict[str, Any], out: Path) -> Path:
    """model.csv and model_levels.csv beside the report."""
    models = headline_models(frame, meta)
    path = out / MODEL_CSV
    write_text_atomic(path, model_table(models, headline(frame)).to_csv(index=False))
    write_text_atomic(out / LEVELS_CSV, level_table(models).to_csv(index=False))
    return path


def why_section(frame: pd.DataFrame, meta: dict[str, Any], lecture: pd.DataFrame | None) -> list[str]:
    data = headline(frame)
    models = headline_models(frame, meta)
    lines = ["", "## Why the speedups are what they are", ""]
    if models:
        with_sweep = curve_of(meta, 1) is not None
        lines += [
            f"Each implementation's measured times ({setting_label(data)}) are fitted by "
            "t = call + m x per-example + n_x x per-feature + m x n_x x per-element(bytes of X)"
            + (
                ", where the per-element cost is a compute term plus reads of X priced by this machine's measured "
                "read bandwidth for a working set of that size (the memory sweep), plus a step of its own at each "
                "measured level boundary, since a kernel that waits on its reads, or a library that switches "
                "algorithm, slows by more or less than the bandwidth does when X leaves a level. "
                if with_sweep
                else " (this run has no memory sweep, so the per-element cost is one constant). "
            )
            + "Terms that only some cells pay, each kept only where at least two measured cells pay it: more reads "
            "per element once one example's features (a column of the C-ordered X) span more 4 KiB pages, or more "
            "2 MiB regions, than the translation caches hold; a second fixed cost per call from some size on (a "
            "framework that compiles per shape emits a different program once its loops get long); more per "
            "element while the rows of X (m elements in C order) are too short for a compiled loop's vector "
            "prologue and remainder to vanish; a cost per "
            "example once the (1, m) temporaries pass glibc's mmap threshold (m x itemsize >= 128 KiB). "
            "Nonnegative terms, a robust (Huber) loss on the relative error; errors are over the measured cells, "
            "and the held-out error predicts each cell from a fit of the same terms that did not see it (a model "
            "that only memorised the cells would fail there; the terms themselves were chosen on all cells). "
            f"Targets: median error <= {TARGET_MEDIAN_ERROR:.0%}, worst <= {TARGET_WORST_ERROR:.0%}. "
            f"Also in `{MODEL_CSV}`, with each level's per-element cost in `{LEVELS_CSV}`.",
            "",
            "| implementation | model, in readable units | median / worst fit error | held-out median | "
            "worst cell (m, n_x) | cells | targets |",
            "|---|---|---|---|---|---|---|",
        ]
        table = model_table(models, data)
        for _, r in table.iterrows():
            lines.append(
                f"| `{r['implementation']}` | {r['readable']} | {r['median_rel_error'] * 100:.0f}% / "
                f"{r['worst_rel_error'] * 100:.0f}% | {_percent(r['held_out_median_error'])} | "
                f"{r['worst_m']:,}, {r['worst_n_x']:,} "
                f"({r['worst_signed_error'] * 100:+.0f}%) | {r['cells']} | "
                f"{'met' if r['meets_targets'] else '**missed**'} |"
            )
        lines += ["", *_explanations(data, meta, models), *_predicted(frame)]
    lines += _lecture(lecture)
    return lines


def _explanations(data: pd.DataFrame, meta: dict[str, Any], models: dict[str, CostModel]) -> list[str]:
    lines = ["### What governs each claim", ""]
    base = models.get(BASELINE)
    if base is None:
        return []
    verdicts = {v.implementation: v for v in claim_verdicts(data)}
    per_madd = base.compute_s / 2
    fv = models.get("feature_vectorized")
    if fv is not None:
        # Speedup at large m: (base per element x n_x + base per example) / (fv per example + fv per element x n_x).
        n_grid = np.geomspace(1, 1e6, 600)
        big_m = float(data["m"].max())
        speed = base.predict_many(np.full_like(n_grid, big_m), n_grid) / fv.predict_many(
            np.full_like(n_grid, big_m), n_grid
        )
        reach = n_grid[speed >= 5.0]
        v = verdicts.get("feature_vectorized")
        lines.append(
            f"- **Partial vectorisation is governed by n_x.** Each example costs one round of NumPy calls "
            f"({fmt_seconds(fv.per_example_s)} by the model) in place of n_x interpreted multiply-adds for z and n_x "
            f"for dw ({per_madd * 1e9:.0f} ns each): it breaks even near n_x = "
            f"{fv.per_example_s / max(base.compute_s, 1e-30):.0f} and reaches 5x from about n_x = "
            + (f"{reach[0]:,.0f}" if reach.size else "(never, by the model)")
            + f" at m = {big_m:,.0f}, by the model. Rule found in the cells: {v.rule_text if v else 'n/a'}."
        )
    full = models.get(REFERENCE)
    if full is not None:
        threshold = 150.0
        margin = base.per_element_s(1e4) - threshold * full.per_element_s(1e4)
        elements = threshold * full.call_s / margin if margin > 0 else float("inf")
        in_memory = full.per_element_s(1e12)
        cap = base.per_element_s(1e12) / in_memory if in_memory > 0 else float("inf")
        found = hierarchy_of(meta)
        reads = reads_at_memory_speed(full, found.memory_gbps) if found is not None else float("nan")
        v = verdicts.get(REFERENCE)
        lines.append(
            f"- **Full vectorisation is governed by m x n_x.** One step costs a fixed {fmt_seconds(full.call_s)} "
            f"(NumPy's calls and temporaries) plus {full.per_element_s(1e4) * 1e9:.2g} ns per element in cache, "
            f"against {base.compute_s * 1e9:.0f} ns per element interpreted: 150x needs the interpreted work to "
            f"outweigh that fixed cost 150 times, from about m x n_x = {elements:,.0f} elements by the model. "
            f"Once X is in main memory (beyond {out_of_cache_bytes(meta) / 2**20:,.0f} MiB here) each element costs "
            + (f"as much as reading X {reads:.2g} times at memory speed, " if np.isfinite(reads) else "")
            + f"capping the speedup near {fmt_speedup(cap)}. Rule found in "
            f"the cells: {v.rule_text if v else 'n/a'}."
        )
    if full is not None:
        extra = full.alloc_per_example_s
        lines.append(
            f"- **The allocator is part of `{REFERENCE}`'s cost at large m.** Each step allocates about a dozen "
            f"(1, m) temporaries; from m = {MMAP_THRESHOLD // 8:,} (float64) they pass glibc's default "
            f"{MMAP_THRESHOLD // 1024} KiB mmap threshold, and the memory they free is handed back to the system, "
            "so every step page-faults them in again. The grid measures in that default state, the one a training "
            "loop in a default Python process is in, and the model has an allocation term for it: "
            + (
                f"{fmt_seconds(extra)} more per example past the threshold, by the fit."
                if extra > 0
                else "the fit found no cost there in this run."
            )
            + ' "How robust is this answer" gives the factor measured with glibc\'s thresholds raised.'
        )
    nl = models.get("numba_loop")
    times = data[data["status"] == STATUS_OK].pivot_table(
        index=["m", "n_x"], columns="implementation", values="median_s", aggfunc="first"
    )
    if nl is not None and full is not None and {"numba_loop", REFERENCE} <= set(times.columns):
        both = times[["numba_loop", REFERENCE]].dropna()
        wins = both[both["numba_loop"] < both[REFERENCE]]
        biggest = max((m * n for m, n in wins.index), default=0)
        lines.append(
            f"- `numba_loop` beats `{REFERENCE}` where NumPy's fixed cost per call "
            f"({fmt_seconds(full.call_s)} against {fmt_seconds(nl.call_s)}) outweighs the loops: measured in "
            f"{len(wins)} of {len(both)} cells, up to m x n_x = {biggest:,} elements."
        )
    return [*lines, ""]


def _predicted(frame: pd.DataFrame) -> list[str]:
    skipped = headline(frame)
    skipped = skipped[~skipped["status"].isin([STATUS_OK, STATUS_FAILED_CHECK])]  # failures have their own section
    if skipped.empty:
        return []
    lines = [
        "### Cells not measured (predicted, not measured)",
        "",
        "The cut-off skipped these; the times are the *predictions* it made before skipping, never used as results.",
        "",
        "| implementation | m | n_x | status | predicted time per call |",
        "|---|---|---|---|---|",
    ]
    for _, r in skipped.sort_values(["implementation", "m", "n_x"]).iterrows():
        pred = r["predicted_s"]
        lines.append(
            f"| `{r['implementation']}` | {r['m']:,} | {r['n_x']:,} | {r['status']} | "
            f"{'*' + fmt_seconds(pred) + ' (predicted)*' if np.isfinite(pred) else 'n/a'} |"
        )
    return [*lines, ""]


def _lecture(lecture: pd.DataFrame | None) -> list[str]:
    if lecture is None or lecture.empty:
        return []
    t = lecture.set_index("variant")["median_s"]
    lines = [
        "### The lecture's demo: a 1,000,000-element dot product",
        "",
        "The ~300x comes from this demo: a Python for-loop against `np.dot`. "
        "Lecture figures are *quoted*, not measured.",
        "",
        "| variant | measured (median) | lecture (quoted) |",
        "|---|---|---|",
    ]
    for _, r in lecture.iterrows():
        quoted = LECTURE_SECONDS.get(str(r["variant"]))
        lines.append(f"| {r['label']} | {fmt_seconds(r['median_s'])} | {fmt_seconds(quoted) if quoted else '-'} |")
    if {"loop_numpy", "np_dot"} <= set(t.index):
        ratio = t["loop_numpy"] / t["np_dot"]
        quoted_ratio = LECTURE_SECONDS["loop_numpy"] / LECTURE_SECONDS["np_dot"]
        lines += [
            "",
            f"Measured ratio loop / np.dot: **{fmt_speedup(ratio)}** (the lecture: {fmt_speedup(quoted_ratio)}, "
            '"about 300 times").',
        ]
        if "loop_list" in t.index:
            lines.append(
                f"Over Python lists the same loop takes {fmt_seconds(t['loop_list'])}, so against that baseline "
                f"np.dot is {fmt_speedup(t['loop_list'] / t['np_dot'])}: indexing a NumPy array from Python boxes "
                "every element into a new scalar object, which is part of what the 1x baseline pays."
            )
    return [*lines, ""]
