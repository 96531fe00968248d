"""Report section "Beyond the note": fused and parallel kernels against the memory-bandwidth limit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.views import fmt_speedup
from bench.base.constants import COURSE_SHAPE
from bench.base.hierarchy import hierarchy_of, out_of_cache_bytes
from bench.base.results import STATUS_OK

# Targets, checked against measurements in the report (never as timed tests).
TARGET_PARALLEL_BW = 0.80  # of the measured all-threads read bandwidth, examples-major, out of cache
TARGET_PARALLEL_SPEEDUP = 1.8  # over fully_vectorized at the same thread count, examples-major
TARGET_FUSED_SPEEDUP = 1.6  # over fully_vectorized on one thread, examples-major


def _times(ok: pd.DataFrame, name: str, layout: str, threads: int) -> pd.Series:
    rows = ok[(ok["implementation"] == name) & (ok["layout"] == layout) & (ok["threads"] == threads)]
    return rows.set_index(["m", "n_x"])["median_s"]


def _verdict(value: float, target: float, what: str) -> str:
    if not np.isfinite(value):
        return "not measured"
    if value >= target:
        return f"met ({what} {value:.2f} >= {target:g})"
    return f"**missed** by {(1 - value / target) * 100:.0f}% ({what} {value:.2f} < {target:g})"


def beyond_section(frame: pd.DataFrame, meta: dict[str, Any]) -> list[str]:
    ok = frame[(frame["status"] == STATUS_OK) & (frame["dtype"] == "float64")]
    names = set(ok["implementation"])
    if not {"fully_vectorized"} & names or not {"numba_fused", "numba_parallel"} & names:
        return []
    beyond = out_of_cache_bytes(meta)
    measured = hierarchy_of(meta) is not None
    bandwidth = {int(k): float(v) for k, v in (meta.get("bandwidth_gbps") or {}).items()}
    all_threads = max(set(ok["threads"]))
    lines = [
        "",
        "## Beyond the note: one pass over X, and every core",
        "",
        "`fully_vectorized` reads X from memory twice per step (once for `w.T @ X`, once for `X @ dZ.T`). "
        "`numba_fused` reads it once; `numba_parallel` does the same on every core. Once X is larger than "
        "the cache, the step is bound by memory bandwidth, so reading X once should be up to twice as fast.",
        "",
        f"Out of cache here means X of at least {beyond / 2**20:,.0f} MiB: "
        + (
            "where this machine's measured read bandwidth has fallen to main memory's (the memory sweep), "
            "whatever the OS reports"
            if measured
            else "4x the last-level cache the OS reports (this run has no memory sweep)"
        )
        + f"; float64; all threads = {all_threads}. Figures are medians over those cells (range in brackets).",
        "",
    ]
    sizing = meta.get("sizing") or {}
    if "added_cell" in sizing:
        m_add, n_add = sizing["added_cell"]
        lines += [
            f"The grid was extended by the cell m = {m_add:,}, n_x = {n_add:,} to reach 4x the measured last "
            "cache capacity.",
            "",
        ]
    if "memory_short" in sizing:
        lines += [
            f"This machine's free memory is too small to reach 4x the measured last cache capacity: "
            f"{sizing['memory_short']}.",
            "",
        ]
    rows = []
    checks = []
    big = ok[ok["bytes_x"] >= beyond]
    if big.empty:
        lines += ["No measured cell has X out of cache on this machine, so the out-of-cache rows below are n/a.", ""]
    for layout in sorted(set(ok["layout"])):
        label = "examples-major (F)" if layout == "F" else "features-major (C)"
        for scope, data in (
            ("out of cache", big),
            (
                f"course shape {COURSE_SHAPE[0]} x {COURSE_SHAPE[1]:,}",
                ok[(ok["m"] == COURSE_SHAPE[0]) & (ok["n_x"] == COURSE_SHAPE[1])],
            ),
        ):
            fv1 = _times(data, "fully_vectorized", layout, 1)
            fvall = _times(data, "fully_vectorized", layout, all_threads)
            fused = _times(data, "numba_fused", layout, 1)
            par = _times(data, "numba_parallel", layout, all_threads)
            fused_speed = (fv1 / fused).dropna()
            par_speed = (fvall / par).dropna()
            par_rows = data[
                (data["implementation"] == "numba_parallel")
                & (data["layout"] == layout)
                & (data["threads"] == all_threads)
            ]
            par_bw = par_rows["bw_fraction"].dropna()

            def show(s: pd.Series, fmt: Any = fmt_speedup) -> str:
                if s.empty:
                    return "n/a"
                return f"{fmt(float(s.median()))} ({fmt(float(s.min()))} to {fmt(float(s.max()))})"

            def pct(v: float) -> str:
                return f"{v * 100:.0f}%"

            rows.append([label, scope, show(fused_speed), show(par_speed), show(par_bw, pct)])
            if scope == "out of cache" and layout == "F":
                checks += [
                    (
                        "numba_parallel reaches >= 80% of the all-threads read bandwidth",
                        _verdict(
                            float(par_bw.median()) if not par_bw.empty else np.nan,
                            TARGET_PARALLEL_BW,
                            "fraction",
                        ),
                    ),
                    (
                        f"numba_parallel >= {TARGET_PARALLEL_SPEEDUP}x fully_vectorized at {all_threads} threads",
                        _verdict(
                            float(par_speed.median()) if not par_speed.empty else np.nan,
                            TARGET_PARALLEL_SPEEDUP,
                            "speedup",
                        ),
                    ),
                    (
                        f"numba_fused >= {TARGET_FUSED_SPEEDUP}x fully_vectorized on 1 thread",
                        _verdict(
                            float(fused_speed.median()) if not fused_speed.empty else np.nan,
                            TARGET_FUSED_SPEEDUP,
                            "speedup",
                        ),
                    ),
                ]
            elif layout == "C" or scope != "out of cache":
                for what, s in (
                    ("numba_fused (1 thread)", fused_speed),
                    (f"numba_parallel ({all_threads} threads)", par_speed),
                ):
                    if not s.empty:
                        checks.append(
                            (
                                f"{label}, {scope}: {what} not slower than fully_vectorized",
                                _verdict(float(s.min()), 1.0, "worst speedup"),
                            )
                        )
    lines.append(_header_table(rows))
    lines += ["", "Targets (measured in this run):", ""]
    lines += [f"- {what}: {result}" for what, result in checks]
    if bandwidth:
        lines += [
            "",
            "Main-memory read bandwidth (the memory sweep's last plateau, best of several reads per size): "
            + ", ".join(f"{v:.1f} GB/s on {k} thread(s)" for k, v in sorted(bandwidth.items()))
            + ".",
        ]
    lines += ["", "### Which layout suits which implementation", ""]
    lines += _layout_lines(ok)
    return lines


def _header_table(rows: list[list[str]]) -> str:
    header = [
        "layout",
        "cells",
        "numba_fused / fully_vectorized, 1 thread",
        "numba_parallel / fully_vectorized, all threads",
        "numba_parallel, share of read bandwidth",
    ]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


WHY_LAYOUT = {
    "two_loop": "the interpreter's cost per element hides the memory access pattern",
    "feature_vectorized": "each `X[:, i]` is one contiguous column in F order but a strided gather in C order",
    "fully_vectorized": "BLAS handles both orders of the two matrix-vector products",
    "numba_loop": "its inner loop walks one example's features, contiguous only in F order",
    "numba_fused": "in F order each example is one contiguous stream; in C order it works in blocks of examples",
    "numba_parallel": "as numba_fused, split over threads",
}


def _layout_lines(ok: pd.DataFrame) -> list[str]:
    if set(ok["layout"]) != {"C", "F"}:
        return ["Only one layout was measured."]
    lines = []
    one = ok[ok["threads"] == 1]
    for name, rows in one.groupby("implementation", sort=False):
        t = rows.pivot_table(index=["m", "n_x"], columns="layout", values="median_s", aggfunc="first").dropna()
        t = t[(t.index.get_level_values("m") > 1) & (t.index.get_level_values("n_x") > 1)]
        if t.empty:
            continue
        ratio = t["C"] / t["F"]
        med = float(ratio.median())
        faster = "F (examples-major)" if med > 1 else "C (features-major)"
        factor = med if med > 1 else 1 / med
        verdict = "the two layouts are within 10%" if factor < 1.1 else f"{faster} is faster by {factor:.2g}x"
        lines.append(
            f"- `{name}`: {verdict} at the median cell "
            f"(C/F time ratio {ratio.min():.2g} to {ratio.max():.2g}); {WHY_LAYOUT.get(str(name), '')}."
        )
    return lines
