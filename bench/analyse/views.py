"""Derived views of the tidy table shared by plots and report: the headline slice and speedups.

The headline comparison is the course's own setting: float64, the (n_x, m) array in
C order (features-major), one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.base.claims import CLAIMS, HEADLINE, HOLDS_FACTOR
from bench.base.results import STATUS_OK
from implementations import BASELINE, REFERENCE, REGISTRY


def implementation_order(frame: pd.DataFrame) -> list[str]:
    """Registry order first (slowest expected to fastest), then any other names in the table."""
    present = list(dict.fromkeys(frame["implementation"]))
    return [n for n in REGISTRY if n in present] + [n for n in present if n not in REGISTRY]


def headline(frame: pd.DataFrame, **overrides: Any) -> pd.DataFrame:
    """Rows of the headline setting (or the closest the table has), all statuses."""
    wanted = {**HEADLINE, **overrides}
    out = frame
    for column, value in wanted.items():
        if column not in out.columns:
            continue
        subset = out[out[column] == value]
        if subset.empty and column != "threads":
            # e.g. a run of float32 only: fall back to what was measured rather than nothing.
            subset = out[out[column] == out[column].iloc[0]] if not out.empty else out
        out = subset
    return out


def setting_label(frame: pd.DataFrame) -> str:
    parts = []
    for column in ("dtype", "layout", "threads"):
        values = sorted(set(frame[column]))
        if len(values) == 1:
            parts.append(f"{values[0]} thread(s)" if column == "threads" else f"{column} {values[0]}")
    return ", ".join(parts)


def time_grid(frame: pd.DataFrame, values: str = "median_s") -> pd.DataFrame:
    """implementation x (m, n_x) -> median seconds of ok rows (or another column: values), one setting."""
    ok = frame[frame["status"] == STATUS_OK]
    return ok.pivot_table(index=["m", "n_x"], columns="implementation", values=values, aggfunc="first")


def spread_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """implementation x (m, n_x) -> the IQR of each ok row's rounds in seconds, one setting."""
    return time_grid(frame, "iqr_s")


def speedups(frame: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Speedup of each implementation over `baseline` per measured cell (NaN where either is missing).

    Over the two-loop baseline, a row's paired estimate (the median of round-by-round ratios,
    bench.base.results.with_speedups) is used where the run has one; elsewhere the ratio of medians.
    """
    times = time_grid(frame)
    if baseline not in times.columns:
        return pd.DataFrame(index=times.index)
    ratio = times.rdiv(times[baseline], axis=0)
    if baseline != BASELINE or "speedup" not in frame.columns:
        return ratio
    ok = frame[(frame["status"] == STATUS_OK) & frame["speedup"].notna()]
    if ok.empty:
        return ratio
    paired = ok.pivot_table(index=["m", "n_x"], columns="implementation", values="speedup", aggfunc="first")
    return paired.reindex(index=ratio.index, columns=ratio.columns).combine_first(ratio)


def uncertain_cells(frame: pd.DataFrame, implementation: str) -> set[tuple[int, int]]:
    """(m, n_x) where the implementation's speedup over the baseline is uncertain (bench.measure.estimates)."""
    if "uncertain" not in frame.columns:
        return set()
    rows = frame[(frame["implementation"] == implementation) & frame["uncertain"].astype(bool)]
    return {(int(m), int(n)) for m, n in zip(rows["m"], rows["n_x"], strict=True)}


def grid_axes(frame: pd.DataFrame) -> tuple[list[int], list[int]]:
    """The m and n_x values of the rectangular grid (off-grid extras like the course shape left out)."""
    cells = frame[["m", "n_x"]].drop_duplicates()
    m_counts = cells.groupby("m")["n_x"].nunique()
    n_counts = cells.groupby("n_x")["m"].nunique()
    ms = sorted(int(v) for v in m_counts.index[(m_counts > 1) | (len(n_counts) == 1)])
    ns = sorted(int(v) for v in n_counts.index[(n_counts > 1) | (len(m_counts) == 1)])
    return ms, ns


def cell_items(series: pd.Series) -> Iterator[tuple[int, int, float]]:
    """(m, n_x, value) for a series indexed by (m, n_x)."""
    for key, value in series.items():
        m, n_x = cast(tuple[int, int], key)
        yield int(m), int(n_x), float(value)


def spread(values: pd.Series) -> dict[str, float]:
    """Cells, median, min and max of the non-missing values (NaN figures and 0 cells when there are none)."""
    values = values.dropna()
    if values.empty:
        return {"cells": 0, "median": np.nan, "min": np.nan, "max": np.nan}
    return {
        "cells": int(values.size),
        "median": float(values.median()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def fmt_bytes(nbytes: float) -> str:
    """A size in KiB, MiB or GiB, three significant digits."""
    unit, scale = next(((u, f) for u, f in (("GiB", 2**30), ("MiB", 2**20)) if nbytes >= f), ("KiB", 2**10))
    value = nbytes / scale
    # Three significant digits, never in exponent form (1,020 KiB, not 1.02e+03 KiB).
    return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"


def fmt_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    for unit, scale in (("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.3g} {unit}"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_speedup(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.2g}x" if value < 10 else f"{value:,.0f}x"


def _interval_at(data: pd.DataFrame, name: str, cell: tuple[int, int]) -> tuple[float, float]:
    """The paired speedup's interval of one implementation at one cell (NaN where the run has none)."""
    if "speedup_low" not in data.columns:
        return np.nan, np.nan
    row = data[(data["implementation"] == name) & (data["m"] == cell[0]) & (data["n_x"] == cell[1])]
    if row.empty:
        return np.nan, np.nan
    return float(row["speedup_low"].iloc[0]), float(row["speedup_high"].iloc[0])


def claims_table(frame: pd.DataFrame, course_shape: tuple[int, int]) -> pd.DataFrame:
    """The note's speed table with measured speedups: at the course shape and over the grid."""
    data = headline(frame)
    speed = speedups(data)
    rows = []
    for approach, (name, claimed) in CLAIMS.items():
        column = speed[name].dropna() if name in speed else pd.Series(dtype=float)
        at_course = float(column.get(course_shape, np.nan))
        low, high = _interval_at(data, name, course_shape)
        rows.append(
            {
                "approach": approach,
                "implementation": name,
                "claimed": claimed,
                "course_shape": at_course,
                "course_low": low,
                "course_high": high,
                "grid_median": float(column.median()) if not column.empty else np.nan,
                "grid_min": float(column.min()) if not column.empty else np.nan,
                "grid_max": float(column.max()) if not column.empty else np.nan,
                "cells": int(column.size),
                "holds_cells": int((column >= HOLDS_FACTOR * claimed).sum()),
            }
        )
    return pd.DataFrame(rows)


# The baselines a page lets the reader compare against: the note's two loops, and full vectorisation.
PAIR_BASELINES = (BASELINE, REFERENCE)


def pair_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every row against each baseline measured in the same setting and cell, every status kept.

    Columns: the row's KEY, status and reason, its time (median, IQR, rounds), the baseline and
    its time, the speedup (paired estimate over two loops where the run has one, else the ratio of
    medians) with its interval where there is one, and `uncertain`. For the report page's plots.
    """
    setting = ["m", "n_x", "dtype", "layout", "threads"]
    columns = ["median_s", "iqr_s", "status", "reason"]
    out = []
    for baseline in PAIR_BASELINES:
        base = frame[frame["implementation"] == baseline][[*setting, *columns]]
        rows = frame[frame["implementation"] != baseline].merge(
            base.rename(columns={c: f"{c}_base" for c in columns}), on=setting, how="inner"
        )
        # A cell whose baseline was not measured has no speedup: the row says why.
        unmeasured = rows["status_base"] != STATUS_OK
        rows.loc[unmeasured, "median_s_base"] = np.nan
        rows["reason"] = (
            rows["reason"]
            .astype(object)
            .where(
                ~unmeasured | rows["reason"].notna(),
                "baseline "
                + rows["status_base"].astype(str)
                + ": "
                + rows["reason_base"].astype(object).fillna("").astype(str),
            )
        )
        ratio = rows["median_s_base"] / rows["median_s"]
        paired = (
            rows["speedup"] if baseline == BASELINE and "speedup" in rows.columns else pd.Series(np.nan, rows.index)
        )
        rows = rows.assign(
            baseline=baseline,
            speedup=paired.where(paired.notna(), ratio),
            speedup_low=rows["speedup_low"] if baseline == BASELINE and "speedup_low" in rows else np.nan,
            speedup_high=rows["speedup_high"] if baseline == BASELINE and "speedup_high" in rows else np.nan,
            uncertain=rows["uncertain"] if baseline == BASELINE and "uncertain" in rows else False,
        )
        out.append(rows)
    keep = [
        "implementation", "baseline", *setting, "status", "reason", "median_s", "iqr_s", "rounds",
        "median_s_base", "iqr_s_base", "speedup", "speedup_low", "speedup_high", "uncertain",
    ]  # fmt: skip
    table = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=keep)
    for column in keep:
        if column not in table.columns:
            table[column] = np.nan
    return table[keep]


def split_cells(frame: pd.DataFrame, cells: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of cells not listed, and those of the listed (m, n_x) cells."""
    wanted = {(int(m), int(n)) for m, n in cells or []}
    pairs = zip(frame["m"], frame["n_x"], strict=True)
    listed = pd.Series([(int(m), int(n)) in wanted for m, n in pairs], index=frame.index, dtype=bool)
    return frame[~listed], frame[listed]


def split_off_grid(frame: pd.DataFrame, meta: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows the analysis fits on, and the off-grid cells' rows (metadata's off_grid_cells) none sees."""
    return split_cells(frame, meta.get("off_grid_cells"))
