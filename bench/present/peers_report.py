"""The report's "What an engineer would pick instead" section, and its tables as CSV.

The alternatives to hand-vectorising with NumPy: a JIT'd loop (Numba) or the framework already
in use (JAX, PyTorch: the implementations that declare requirements). Four tables, all from
the results table at 1 thread (the headline setting), each also written as CSV beside REPORT.md:

- peers_fastest.csv: per region of the grid, how often each implementation was the fastest;
- peers_speedup.csv: each peer's speedup over fully_vectorized per region (median and range);
- peers_compile.csv: JIT compile times (the first call of a row, recorded apart as compile_s);
- peers_baselines.csv: the note's ratios against both baselines, two_loop and two_loop_lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.analyse.views import (
    fmt_seconds,
    fmt_speedup,
    headline,
    implementation_order,
    setting_label,
    time_grid,
)
from bench.base.claims import CLAIMS
from bench.base.results import STATUS_OK, STATUS_SKIPPED_UNAVAILABLE, write_text_atomic
from implementations import BASELINE, REFERENCE, REGISTRY

LISTS_BASELINE = "two_loop_lists"
# Regions by elements of X (m x n_x). Up to 8,192 (64 KiB in float64) a step takes microseconds
# and per-call overheads (dispatch, a framework's bookkeeping) weigh most; up to 524,288 (4 MiB)
# X stays in a core's own caches on common CPUs; beyond, the step reads it from shared cache or memory.
REGION_LIMITS = (("small", 2**13), ("medium", 2**19), ("large", None))
CSV_FILES = {
    "fastest": "peers_fastest.csv",
    "speedup": "peers_speedup.csv",
    "compile": "peers_compile.csv",
    "baselines": "peers_baselines.csv",
}


def peer_names(frame: pd.DataFrame) -> list[str]:
    """Implementations that need an optional package, in registry order, whether measured or not."""
    names = implementation_order(frame)
    return [n for n in names if n in REGISTRY and REGISTRY[n].requirements]


def regions() -> list[tuple[str, int, int | None]]:
    """(label, fewest elements of X, most elements of X or None) for the small, medium and large cells."""
    out, low = [], 1
    for name, high in REGION_LIMITS:
        label = f"{name} (m x n_x <= {high:,})" if high is not None else f"{name} (m x n_x > {low - 1:,})"
        out.append((label, low, high))
        low = (high or 0) + 1
    return out


def _times_by_region(frame: pd.DataFrame) -> list[tuple[str, int, int | None, pd.DataFrame]]:
    data = headline(frame)
    times = time_grid(data)
    if times.empty:
        return [(label, lo, hi, times) for label, lo, hi in regions()]
    elements = pd.Series([m * n for m, n in times.index], index=times.index)
    out = []
    for label, lo, hi in regions():
        inside = (elements >= lo) & (elements <= (hi if hi is not None else np.inf))
        out.append((label, lo, hi, times[inside.to_numpy()]))
    return out


def _spread(values: pd.Series) -> dict[str, float]:
    values = values.dropna()
    if values.empty:
        return {"cells": 0, "median": np.nan, "min": np.nan, "max": np.nan}
    return {
        "cells": int(values.size),
        "median": float(values.median()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def peer_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The section's four tables as data; the markdown and the CSV files both come from these."""
    by_region = _times_by_region(frame)
    fastest, speedup = [], []
    for label, lo, hi, times in by_region:
        complete = times.dropna(how="all")
        winners = complete.idxmin(axis=1).value_counts() if not complete.empty else pd.Series(dtype=int)
        for name, wins in winners.items():
            fastest.append(
                {"region": label, "elements_lo": lo, "elements_hi": hi, "cells": len(complete), "implementation": name}
                | {"wins": int(wins)}
            )
        for name in peer_names(frame):
            ratio = times[REFERENCE] / times[name] if {REFERENCE, name} <= set(times.columns) else pd.Series()
            speedup.append({"implementation": name, "region": label} | _spread(ratio))

    ok = frame[(frame["status"] == STATUS_OK) & frame["compile_s"].notna()]
    compile_rows = []
    for name in implementation_order(ok):
        seconds = ok.loc[ok["implementation"] == name, "compile_s"]
        isolated = name in REGISTRY and REGISTRY[name].isolate
        compile_rows.append(
            {
                "implementation": name,
                "rows": int(seconds.size),
                "median_s": float(seconds.median()),
                "max_s": float(seconds.max()),
                "process": "a pinned worker per thread count" if isolated else "the run's own",
            }
        )

    times = time_grid(headline(frame))
    baseline_rows = []
    pairs = [(name, claimed) for name, claimed in CLAIMS.values() if claimed > 1] + [(LISTS_BASELINE, np.nan)]
    for name, claimed in pairs:
        for baseline in (BASELINE, LISTS_BASELINE):
            if name == baseline:
                continue
            ratio = times[baseline] / times[name] if {baseline, name} <= set(times.columns) else pd.Series()
            baseline_rows.append({"implementation": name, "baseline": baseline, "claimed": claimed} | _spread(ratio))

    return {
        "fastest": pd.DataFrame(
            fastest, columns=["region", "elements_lo", "elements_hi", "cells", "implementation", "wins"]
        ),
        "speedup": pd.DataFrame(speedup, columns=["implementation", "region", "cells", "median", "min", "max"]),
        "compile": pd.DataFrame(compile_rows, columns=["implementation", "rows", "median_s", "max_s", "process"]),
        "baselines": pd.DataFrame(
            baseline_rows, columns=["implementation", "baseline", "claimed", "cells", "median", "min", "max"]
        ),
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], table.to_dict("records"))


def _range_text(row: Mapping[str, Any]) -> str:
    if not row["cells"]:
        return "n/a"
    return (
        f"{fmt_speedup(row['median'])} ({fmt_speedup(row['min'])} to {fmt_speedup(row['max'])}, {row['cells']} cells)"
    )


def _why_not(frame: pd.DataFrame, name: str) -> str:
    rows = frame[frame["implementation"] == name]
    reasons = rows.loc[rows["status"] == STATUS_SKIPPED_UNAVAILABLE, "reason"].dropna()
    if not reasons.empty:
        return f"n/a: {reasons.iloc[0]}"
    return "n/a: not in this run" if rows.empty else "n/a"


def peers_section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section; every number comes from peer_tables."""
    tables = peer_tables(frame)
    setting = setting_label(headline(frame))
    lines = [
        "",
        "## What an engineer would pick instead",
        "",
        "Instead of vectorising by hand with NumPy: JIT-compile the loop (Numba) or use the framework already "
        f"in use (JAX, PyTorch). Setting: {setting}. Tables also in "
        + ", ".join(f"`{f}`" for f in CSV_FILES.values())
        + ".",
        "",
        "### Fastest implementation per region of the grid",
        "",
    ]
    fastest = tables["fastest"]
    rows = []
    for label, _lo, _hi in regions():
        part = fastest[fastest["region"] == label].sort_values("wins", ascending=False)
        if part.empty:
            rows.append([label, "0", "n/a"])
            continue
        cells = int(part["cells"].iloc[0])
        winners = ", ".join(f"`{r['implementation']}` ({r['wins']} of {cells})" for r in _records(part))
        rows.append([label, str(cells), winners])
    lines += _table(["region", "cells", "fastest (cells where it was fastest)"], rows)

    speedup = tables["speedup"]
    lines += ["", f"### Each peer against `{REFERENCE}` (speedup = its time / the peer's time)", ""]
    names = list(dict.fromkeys(speedup["implementation"]))
    if not names:
        lines.append("n/a: no peer is registered.")
    else:
        header = ["peer", *[label for label, _lo, _hi in regions()]]
        rows = []
        for name in names:
            part = speedup[speedup["implementation"] == name]
            if not part["cells"].any():
                rows.append([f"`{name}`", _why_not(frame, name), *([""] * (len(header) - 2))])
            else:
                rows.append([f"`{name}`", *[_range_text(r) for r in _records(part)]])
        lines += _table(header, rows)

    compile_table = tables["compile"]
    lines += ["", "### JIT compile times (`compile_s`: the first call of a row, timed apart)", ""]
    if compile_table.empty:
        lines.append("n/a: no JIT implementation was measured.")
    else:
        lines += _table(
            ["implementation", "rows", "median", "max", "process"],
            [
                [
                    f"`{r['implementation']}`",
                    str(r["rows"]),
                    fmt_seconds(r["median_s"]),
                    fmt_seconds(r["max_s"]),
                    r["process"],
                ]
                for r in _records(compile_table)
            ],
        )
        lines += [
            "",
            "Numba compiles once per dtype and layout, XLA once per shape, dtype and layout in each thread "
            "count's worker, so a row's first call includes a compile only where its combination is new: the "
            "median is over rows, the max is the costliest compile.",
        ]

    baselines = tables["baselines"]
    lines += [
        "",
        f"### The baseline's effect on the note's ratios (`{BASELINE}` against `{LISTS_BASELINE}`)",
        "",
        f"`{LISTS_BASELINE}` runs the same two loops over Python lists instead of NumPy arrays, as the lecture's "
        "demo does; dividing by it instead of by `two_loop` moves the note's ratios by the factor in the last row.",
        "",
    ]
    rows = []
    for r in _records(baselines):
        claimed = f"~{r['claimed']:.0f}x" if np.isfinite(r["claimed"]) else ""
        rows.append([f"`{r['implementation']}`", f"`{r['baseline']}`", claimed, _range_text(r)])
    lines += _table(["implementation", "against", "claimed", "speedup: median (range)"], rows)
    return lines


def write_peer_tables(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Write the section's tables as CSV files in `out` (atomic renames, like every output)."""
    paths = []
    for key, table in peer_tables(frame).items():
        path = out / CSV_FILES[key]
        write_text_atomic(path, table.to_csv(index=False))
        paths.append(path)
    return paths
