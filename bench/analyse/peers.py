"""What an engineer would pick instead: the peers' tables, each also written as CSV beside REPORT.md.

The alternatives to hand-vectorising with NumPy: a JIT'd loop (Numba) or the framework already
in use (JAX, PyTorch: the implementations whose role is "peer"). Four tables, all from the
results table at 1 thread (the headline setting):

- peers_fastest.csv: per region of the grid, how often each implementation was the fastest, and how
  many of those wins were close (close_wins: within the larger IQR of the two rows);
- peers_speedup.csv: each peer's speedup over the reference implementation per region (median and range);
- peers_compile.csv: JIT compile times (the first call of a row, recorded apart as compile_s);
- peers_baselines.csv: the note's ratios against every baseline (the loops over arrays, and over lists).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analyse.views import headline, implementation_order, spread, spread_grid, time_grid
from bench.base.claims import CLAIMS
from bench.base.results import STATUS_OK
from implementations import BASELINE, REFERENCE, REGISTRY

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
    """The peers (frameworks an engineer might use instead) in the table, in registry order, measured or not."""
    names = implementation_order(frame)
    return [n for n in names if n in REGISTRY and REGISTRY[n].role == "peer"]


def baselines() -> list[str]:
    """Every 1x baseline: the note's own first, then the others (how the loops hold their data)."""
    return [BASELINE] + [n for n, impl in REGISTRY.items() if impl.role == "baseline" and n != BASELINE]


def regions(out_of_cache_bytes: float | None = None) -> list[tuple[str, int, int | None]]:
    """(label, fewest elements of X, most elements of X or None) for the small, medium and large cells.

    With out_of_cache_bytes (the run's measured limit), one more row: the large cells whose
    float64 X is at least that large, read from main memory at every step.
    """
    out, low = [], 1
    for name, high in REGION_LIMITS:
        label = f"{name} (m x n_x <= {high:,})" if high is not None else f"{name} (m x n_x > {low - 1:,})"
        out.append((label, low, high))
        low = (high or 0) + 1
    if out_of_cache_bytes is not None and np.isfinite(out_of_cache_bytes):
        fewest = max(low, math.ceil(out_of_cache_bytes / 8))
        out.append((f"of which out of cache (X >= {out_of_cache_bytes / 2**20:,.0f} MiB)", fewest, None))
    return out


def _times_by_region(
    frame: pd.DataFrame, out_of_cache_bytes: float | None
) -> list[tuple[str, int, int | None, pd.DataFrame]]:
    data = headline(frame)
    times = time_grid(data)
    if times.empty:
        return [(label, lo, hi, times) for label, lo, hi in regions(out_of_cache_bytes)]
    elements = pd.Series([m * n for m, n in times.index], index=times.index)
    out = []
    for label, lo, hi in regions(out_of_cache_bytes):
        inside = (elements >= lo) & (elements <= (hi if hi is not None else np.inf))
        out.append((label, lo, hi, times[inside.to_numpy()]))
    return out


def close_wins(times: pd.DataFrame, iqr: pd.DataFrame) -> pd.Series:
    """Per cell (a row of times: implementation -> median seconds), whether its fastest implementation
    won by no more than the larger IQR of its row and the runner-up's (the one there is, where only
    one has an IQR): a win the rows' own spread could reverse. Cells with one implementation are not close."""
    iqr = iqr.reindex(index=times.index, columns=times.columns)  # where neither row has an IQR: not close
    close = []
    for cell, row in times.iterrows():
        ranked = row.dropna().sort_values()
        if ranked.size < 2:
            close.append(False)
            continue
        (first, second), (t1, t2) = ranked.index[:2], ranked.to_numpy()[:2]
        spread_s = pd.Series([iqr.at[cell, first], iqr.at[cell, second]], dtype=float).max()  # skips NaN
        close.append(bool(pd.notna(spread_s) and t2 - t1 <= spread_s))
    return pd.Series(close, index=times.index, dtype=bool)


def peer_tables(frame: pd.DataFrame, out_of_cache_bytes: float | None = None) -> dict[str, pd.DataFrame]:
    """The section's four tables as data; the markdown and the CSV files both come from these.

    out_of_cache_bytes (the run's measured limit) adds the out-of-cache cells as a region of their own.
    """
    by_region = _times_by_region(frame, out_of_cache_bytes)
    iqr = spread_grid(headline(frame))
    fastest, speedup = [], []
    for label, lo, hi, times in by_region:
        complete = times.dropna(how="all")
        winner = complete.idxmin(axis=1) if not complete.empty else pd.Series(dtype=str)
        close = close_wins(complete, iqr) if not complete.empty else pd.Series(dtype=bool)
        for name, wins in winner.value_counts().items():
            fastest.append(
                {"region": label, "elements_lo": lo, "elements_hi": hi, "cells": len(complete), "implementation": name}
                | {"wins": int(wins), "close_wins": int((close & (winner == name)).sum())}
            )
        for name in peer_names(frame):
            ratio = times[REFERENCE] / times[name] if {REFERENCE, name} <= set(times.columns) else pd.Series()
            speedup.append({"implementation": name, "region": label} | spread(ratio))

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
    others = baselines()
    pairs = [(name, claimed) for name, claimed in CLAIMS.values() if claimed > 1] + [(n, np.nan) for n in others[1:]]
    for name, claimed in pairs:
        for baseline in others:
            if name == baseline:
                continue
            ratio = times[baseline] / times[name] if {baseline, name} <= set(times.columns) else pd.Series()
            baseline_rows.append({"implementation": name, "baseline": baseline, "claimed": claimed} | spread(ratio))

    return {
        "fastest": pd.DataFrame(
            fastest, columns=["region", "elements_lo", "elements_hi", "cells", "implementation", "wins", "close_wins"]
        ),
        "speedup": pd.DataFrame(speedup, columns=["implementation", "region", "cells", "median", "min", "max"]),
        "compile": pd.DataFrame(compile_rows, columns=["implementation", "rows", "median_s", "max_s", "process"]),
        "baselines": pd.DataFrame(
            baseline_rows, columns=["implementation", "baseline", "claimed", "cells", "median", "min", "max"]
        ),
    }
