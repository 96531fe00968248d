"""REPORT.md, generated from one results table: every number in it comes from that table.

Sections: the note's speed table beside the measured speedups; a verdict per claim with
the region of the grid where it holds; beyond the note (fused and parallel kernels against
the bandwidth limit); why (fitted cost model, crossovers, the lecture's demo); the plots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.metadata import machine_line
from bench.profiles import COURSE_SHAPE
from bench.results import STATUS_FAILED_CHECK, STATUS_OK, STATUS_SKIPPED_BUDGET, STATUS_SKIPPED_MEMORY
from bench.timing import MIN_ROUNDS
from bench.views import (
    CLAIMS,
    HOLDS_FACTOR,
    cell_items,
    claims_table,
    fmt_seconds,
    fmt_speedup,
    headline,
    setting_label,
    speedups,
)
from implementations import BASELINE

REPORT_MD = "REPORT.md"
PLOTS = (
    (
        "speedup_heatmap",
        "Speedup over two loops on the (m, n_x) grid, with the 10x and 300x contours",
    ),
    ("claims", "The note's speed table: claimed against measured"),
    ("time_vs_m", "Time per gradient step against m"),
    ("time_vs_n_x", "Time per gradient step against n_x"),
    ("roofline", "Achieved bandwidth against problem size, with the measured memory bandwidth"),
    ("crossovers", "Where one implementation overtakes another, from the fitted cost model"),
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ranges(values: list[int], members: set[int]) -> str:
    """'8 to 512, 32,768' style description of which of the sorted values are members."""
    runs: list[list[int]] = []
    for v in values:
        if v in members:
            if runs and runs[-1][-1] == values[values.index(v) - 1]:
                runs[-1].append(v)
            else:
                runs.append([v])
    parts = [f"{r[0]:,}" if len(r) == 1 else f"{r[0]:,} to {r[-1]:,}" for r in runs]
    return ", ".join(parts)


def claim_verdict(speed: pd.Series, claimed: float) -> tuple[str, str]:
    """('holds' | 'holds only where ...' | 'does not hold', a sentence with the region and range)."""
    speed = speed.dropna()
    if speed.empty:
        return (
            "not measured",
            "no cell has both this implementation and the two-loop baseline measured.",
        )
    threshold = HOLDS_FACTOR * claimed
    holds = speed >= threshold
    measured = f"measured {fmt_speedup(speed.min())} to {fmt_speedup(speed.max())} over {speed.size} cells"
    if holds.all():
        return "holds", f"At least {fmt_speedup(threshold)} in every measured cell ({measured})."
    if not holds.any():
        return (
            "does not hold",
            f"Below {fmt_speedup(threshold)} in every measured cell ({measured}).",
        )
    by_nx: dict[int, tuple[list[int], set[int]]] = {}
    for m, n_x, ok in cell_items(holds):
        members, yes = by_nx.setdefault(n_x, ([], set()))
        members.append(m)
        if ok:
            yes.add(m)
    everywhere = [n for n, (ms, yes) in sorted(by_nx.items()) if len(yes) == len(ms)]
    parts = []
    for n_x, (members, yes) in sorted(by_nx.items()):
        if not yes:
            continue
        if len(yes) == len(members):
            parts.append(f"n_x = {n_x:,}: every measured m")
        else:
            parts.append(f"n_x = {n_x:,}: m = {_ranges(sorted(members), yes)}")
    # The smallest n_x from which the claim holds at every measured m, for every larger n_x too.
    sorted_nx = sorted(by_nx)
    from_nx = next((n for i, n in enumerate(sorted_nx) if all(k in everywhere for k in sorted_nx[i:])), None)
    summary = f"At least {fmt_speedup(threshold)} in {int(holds.sum())} of {speed.size} cells ({measured})."
    if from_nx is not None:
        summary += f" From n_x = {from_nx:,} up it holds at every measured m."
    verdict = f"holds only where n_x >= {from_nx:,}" if from_nx is not None else "holds only in some cells"
    return verdict, f"{summary} Where it holds: {'; '.join(parts)}."


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _header(frame: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    machine = meta.get("machine", {})
    lines = [
        "# logreg-vecbench report",
        "",
        "How much faster is one gradient-descent step of logistic regression once the Python loops "
        "become vector operations? Measured on this machine; generated from the results table, "
        "so every number below was measured in this run unless marked *predicted* or *quoted*.",
        "",
        f"- Machine: {machine_line(meta)}",
        f"- OS and Python: {machine.get('os', '?')}, Python {machine.get('python', '?')}",
        f"- Run: profile `{meta.get('profile', '?')}`, seed {meta.get('seed', '?')}, "
        f"commit `{machine.get('git_commit', '?')}`"
        + ("" if meta.get("complete", True) else " (**interrupted**: some cells are missing; resume with --resume)"),
    ]
    bw = meta.get("bandwidth_gbps") or {}
    if bw:
        lines.append(
            "- Measured read bandwidth: " + ", ".join(f"{float(v):.1f} GB/s on {k} thread(s)" for k, v in bw.items())
        )
    counts = frame["status"].value_counts()
    lines.append(
        f"- Rows: {int(counts.get(STATUS_OK, 0))} measured, {int(counts.get(STATUS_SKIPPED_BUDGET, 0))} skipped by the "
        f"time cut-off, {int(counts.get(STATUS_SKIPPED_MEMORY, 0))} skipped for memory"
        + (f", {int(counts[STATUS_FAILED_CHECK])} failed the check" if STATUS_FAILED_CHECK in counts else "")
    )
    return lines


def _failed_section(frame: pd.DataFrame) -> list[str]:
    """Implementations whose answers were wrong (or raised): named with why, never timed."""
    failed = frame[frame["status"] == STATUS_FAILED_CHECK]
    if failed.empty:
        return []
    lines = ["", "## Failed the check (not timed)", ""]
    for name, rows in failed.groupby("implementation", sort=False):
        lines.append(f"- `{name}` ({len(rows)} rows): {rows['reason'].dropna().astype(str).iloc[0]}")
    return lines


def _claims_section(frame: pd.DataFrame) -> list[str]:
    data = headline(frame)
    table = claims_table(frame, COURSE_SHAPE)
    speed = speedups(data)
    m_c, n_c = COURSE_SHAPE
    times = data[(data["status"] == STATUS_OK) & (data["m"] == m_c) & (data["n_x"] == n_c)].set_index("implementation")
    rows = []
    for _, r in table.iterrows():
        t = times["median_s"].get(r["implementation"], np.nan)
        rows.append(
            [
                r["approach"],
                f"`{r['implementation']}`",
                "1x (baseline)" if r["claimed"] == 1 else f"~{r['claimed']:.0f}x",
                f"{fmt_speedup(r['course_shape'])} ({fmt_seconds(t)})",
                fmt_speedup(r["grid_median"]),
                f"{fmt_speedup(r['grid_min'])} to {fmt_speedup(r['grid_max'])}",
            ]
        )
    lines = [
        "",
        "## The note's speed table, measured",
        "",
        f"Setting: {setting_label(data)} (the course's own array, the headline comparison). Speedup = "
        f"time of `{BASELINE}` / time of the implementation, cell by cell.",
        "",
        _table(
            [
                "Approach",
                "implementation",
                "claimed",
                f"course shape m={m_c}, n_x={n_c:,}",
                "median over grid",
                "range over grid",
            ],
            rows,
        ),
        "",
        "## Verdicts",
        "",
        f"A claim of ~Kx counts as holding in a cell when the measured speedup is at least {HOLDS_FACTOR:g} x K "
        "(within a factor of two of the claim, or better).",
        "",
    ]
    for approach, (name, claimed) in CLAIMS.items():
        if claimed == 1:
            continue
        verdict, sentence = claim_verdict(speed[name] if name in speed else pd.Series(dtype=float), claimed)
        lines.append(f"- **~{claimed:.0f}x ({approach}, `{name}`): {verdict}.** {sentence}")
    return lines


def _plots_section(plots: Path, out: Path) -> list[str]:
    lines = ["", "## Plots", ""]
    found = False
    for stem, caption in PLOTS:
        png = plots / f"{stem}.png"
        if png.is_file():
            found = True
            lines += [f"### {caption}", "", f"![{caption}]({_rel(png, out)})", ""]
    if not found:
        lines.append(f"No plots found in `{plots}`; draw them with `python -m bench plot`.")
    return lines


def _method_section(frame: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    ok = frame[frame["status"] == STATUS_OK]
    few = ok[ok["rounds"] < MIN_ROUNDS]
    lines = [
        "",
        "## How this was measured",
        "",
        "- The timed unit is one `propagate` call on data made beforehand from the seed; a warm-up call "
        "first, and for JIT implementations the compiling first call is recorded apart as `compile_s`.",
        f"- Loops per round calibrated so a round lasts at least {meta.get('round_s', '?')} s; up to "
        f"{meta.get('max_rounds', '?')} rounds within {meta.get('cell_budget_s', '?')} s per cell; "
        "median, IQR and min.",
        f"- Cut-off: a cell predicted (from the same implementation's measured cells) to take more than "
        f"{meta.get('call_budget_s', '?')} s per call is not run "
        "and is recorded as `skipped_budget` with its prediction.",
        "- Correctness gate: before timing, each implementation's result on the cell's data is compared with "
        "`fully_vectorized`; an implementation that disagrees or raises gets `failed_check` rows and is not timed.",
        "- BLAS and Numba thread pools are fixed per row with threadpoolctl and `numba.set_num_threads`.",
    ]
    if not few.empty:
        lines.append(
            f"- {len(few)} slow rows have fewer than {MIN_ROUNDS} rounds (budget-limited); see the `rounds` column."
        )
    return lines


def build_report(
    frame: pd.DataFrame, meta: dict[str, Any], lecture: pd.DataFrame | None, out: Path, plots: Path
) -> str:
    from bench.beyond import beyond_section
    from bench.why import why_section

    lines = _header(frame, meta)
    lines += _failed_section(frame)
    lines += _claims_section(frame)
    lines += beyond_section(frame, meta)
    lines += why_section(frame, lecture)
    lines += _plots_section(plots, out)
    lines += _method_section(frame, meta)
    return "\n".join(lines) + "\n"


def write_report(
    frame: pd.DataFrame, meta: dict[str, Any], lecture: pd.DataFrame | None, out: Path, plots: Path
) -> Path:
    from bench.results import write_text_atomic

    path = out / REPORT_MD
    write_text_atomic(path, build_report(frame, meta, lecture, out, plots))
    return path
