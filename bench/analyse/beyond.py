"""Beyond the note: each kernel with a goal against the reference, out of cache and at the course shape.

Which kernels, at which thread count and against what target is read off each implementation's
`goal`; this module measures them against it and decides met or missed. present/ only formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.views import spread
from bench.base.claims import JUDGED_DTYPE
from bench.base.constants import COURSE_SHAPE
from bench.base.hierarchy import hierarchy_of, out_of_cache_bytes, roof_of, roof_setters
from bench.base.results import STATUS_OK
from bench.base.stats import p_larger
from implementations import REFERENCE, REGISTRY, Implementation, with_goals

BEYOND_CSV = "beyond.csv"
BEYOND_CHECKS_CSV = "beyond_checks.csv"
LAYOUTS_CSV = "layouts.csv"
BEYOND_ROOFS_CSV = "beyond_roofs.csv"
ROOF_TABLE_COLUMNS = [
    "dtype",
    "layout",
    "threads",
    "m",
    "n_x",
    "rounds",
    "read_gbps",
    "best_other",
    "best_other_gbps",
    "roof_gbps",
]
TABLE_COLUMNS = ["layout", "scope", "implementation", "threads", "what", "cells", "median", "min", "max", "plans"]
# plans (what == "plans" only): the plans the kernel's set-ups kept over the scope's cells (results.csv's
# plan), as "blocks 3, rows 2"; a row of its own only where some set-up timed plans.
BEYOND_SHARES_CSV = "beyond_shares.csv"
SHARE_COLUMNS = ["dtype", "layout", "threads", "m", "n_x", "implementation", "gbps", "roof_gbps", "roof", "share"]
# Each out-of-cache cell's share of the roof it is measured against, for the kernels with a roof goal:
# roof "cell" (the read timed in that cell's rounds, or a faster implementation there: cell_roofs) or
# "sweep" (the sweep's read in that layout's pattern, where the cell has none).
CHECK_COLUMNS = ["layout", "scope", "implementation", "threads", "what", "value", "target", "met", "p_wider", "samples"]
# p_wider (spread goals only): one-sided Mann-Whitney p that the kernel's spreads per pass over a
# cell are larger than the reference's; samples: how many such spreads each side had (the fewer).
LAYOUT_COLUMNS = ["implementation", "cells", "c_over_f_median", "c_over_f_min", "c_over_f_max", "faster", "note"]
SAME_LAYOUT = 1.1  # C/F time ratios at the median within this factor: neither layout is faster
MIN_SPREAD_ROUNDS = 5  # a cell's slowest / fastest round needs this many rounds to mean anything
SHOWN_DTYPES = ("float64", "float32")
OUT_OF_CACHE = "out of cache"


@dataclass(frozen=True)
class Beyond:
    """The section's figures: kernels against the reference per layout and scope, the checks, the layouts."""

    out_of_cache_bytes: dict[int, float]  # per thread count: twice the last cache measured on that many threads
    measured_hierarchy: bool  # False: out of cache from the OS-reported cache size, no sweep
    roof_gbps: dict[str, dict[str, float]]  # the sweep's one-pass read of X per layout and threads (empty: none)
    cell_roofs: pd.DataFrame  # ROOF_TABLE_COLUMNS: the read timed beside the kernels, per cell out of cache
    all_threads: int
    bandwidth_gbps: dict[int, float]
    sizing: dict[str, Any]
    any_out_of_cache: bool
    table: pd.DataFrame  # TABLE_COLUMNS: a kernel's speedup over the reference, or its share of the roof
    checks: pd.DataFrame  # CHECK_COLUMNS: each goal, met (True), missed (False) or not measured (None)
    layouts: pd.DataFrame  # LAYOUT_COLUMNS: C/F time ratio per implementation at 1 thread, the faster one, why
    unjudged_dtypes: tuple[str, ...] = ()  # dtypes whose out-of-cache cells are shown, no goal checked
    cell_shares: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SHARE_COLUMNS))


def _rows(data: pd.DataFrame, name: str, layout: str, threads: int) -> pd.DataFrame:
    return data[(data["implementation"] == name) & (data["layout"] == layout) & (data["threads"] == threads)]


def _times(data: pd.DataFrame, name: str, layout: str, threads: int) -> pd.Series:
    return _rows(data, name, layout, threads).set_index(["m", "n_x"])["median_s"]


def _streaming_gbps(ok: pd.DataFrame) -> pd.DataFrame:
    """Each row's rate of reading X from memory (reads of X x bytes / time), for implementations without a roof goal."""
    reads = roof_setters()
    rows = ok[[name in reads for name in ok["implementation"]]]
    count = rows["implementation"].map(reads).astype(float)
    return rows.assign(streamed_gbps=count * rows["bytes_x"] / rows["median_s"] / 1e9)


def cell_roofs(roof_rounds: pd.DataFrame | None, ok: pd.DataFrame) -> pd.DataFrame:
    """Each cell's roof where the run timed the one-pass read in its rounds (roofs.csv), per dtype.

    The roof is the best streaming rate code reached in the cell: the read (median over its
    rounds), or an implementation judged against no roof reading X faster (fully_vectorized's
    two matrix-vector products, say), whichever is higher.
    """
    if roof_rounds is None or roof_rounds.empty:
        return pd.DataFrame(columns=ROOF_TABLE_COLUMNS)
    cell = ["dtype", "layout", "threads", "m", "n_x"]
    mine = roof_rounds[roof_rounds["dtype"].isin(SHOWN_DTYPES)]
    per = mine.groupby(cell)["seconds"].agg(["median", "count"]).reset_index()
    itemsize = per["dtype"].map(lambda d: np.dtype(d).itemsize)
    per["read_gbps"] = per["m"] * per["n_x"] * itemsize / per["median"] / 1e9
    streams = _streaming_gbps(ok)
    best = streams.loc[streams.groupby(cell)["streamed_gbps"].idxmax(), [*cell, "implementation", "streamed_gbps"]]
    per = per.merge(best, on=cell, how="left").rename(
        columns={"count": "rounds", "implementation": "best_other", "streamed_gbps": "best_other_gbps"}
    )
    per["roof_gbps"] = per[["read_gbps", "best_other_gbps"]].max(axis=1)
    per = per.sort_values("dtype", key=lambda d: d != JUDGED_DTYPE, kind="stable")
    return per[ROOF_TABLE_COLUMNS].reset_index(drop=True)


def plans_kept(rows: pd.DataFrame) -> str:
    """How many of these rows' set-ups kept each plan, as "blocks 3, rows 2"; "" where none timed plans."""
    if "plan" not in rows.columns:
        return ""
    counts = rows["plan"].dropna().astype(str).value_counts()
    return ", ".join(f"{plan} {count}" for plan, count in sorted(counts.items()))


def _median(values: pd.Series) -> float:
    return float(values.median()) if not values.empty else np.nan


def _check(
    row: dict[str, Any], what: str, value: float, target: float, at_most: bool = False, **extra: float
) -> dict[str, Any]:
    met = bool(value <= target if at_most else value >= target) if np.isfinite(value) and np.isfinite(target) else None
    return {**row, "what": what, "value": value, "target": target, "met": met, **extra}


def _spreads(
    rounds: pd.DataFrame | None, cells: pd.DataFrame, name: str, layout: str, threads: int, dtype: str = JUDGED_DTYPE
) -> pd.Series:
    """Slowest / fastest round within each pass over each of these cells (in dtype) for one implementation.

    Within a pass, not across passes: the rounds of one pass are consecutive calls, while two
    passes can be minutes apart on a machine whose speed drifts (the reference's too). Empty
    without rounds.
    """
    if rounds is None or cells.empty:
        return pd.Series(dtype=float)
    mine = rounds[
        (rounds["implementation"] == name)
        & (rounds["layout"] == layout)
        & (rounds["threads"] == threads)
        & (rounds["dtype"] == dtype)
    ]
    keys = set(zip(cells["m"], cells["n_x"], strict=True))
    # A boolean Series, not a list: an empty list would select columns, not rows.
    inside = [(m, n) in keys for m, n in zip(mine["m"], mine["n_x"], strict=True)]
    mine = mine[pd.Series(inside, index=mine.index, dtype=bool)]
    by = ["m", "n_x", "pass"] if "pass" in mine.columns else ["m", "n_x"]
    per_cell = mine.groupby(by)["seconds"].agg(["min", "max", "count"])
    per_cell = per_cell[per_cell["count"] >= MIN_SPREAD_ROUNDS]
    return (per_cell["max"] / per_cell["min"]).dropna()


def _scope_rows(
    data: pd.DataFrame,
    layout: str,
    scope: str,
    kernels: list[Implementation],
    all_threads: int,
    roofs: dict[tuple[str, int], float | None],
    rounds: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
    *,
    out_of_cache: bool,
    dtype: str = JUDGED_DTYPE,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The table's rows, the checks and each cell's share of its roof (SHARE_COLUMNS, out of cache)
    of one layout and scope (data: its cells, in dtype).

    Out of cache each goal is checked, in float64; in another dtype the same figures are shown
    and nothing is checked. Elsewhere a kernel is checked only for not being slower than the
    reference.
    """
    rows, checks, shares = [], [], []
    judged = out_of_cache and dtype == JUDGED_DTYPE
    for impl in kernels:
        goal = impl.goal
        assert goal is not None
        threads = all_threads if goal.all_threads else 1
        speed = (_times(data, REFERENCE, layout, threads) / _times(data, impl.name, layout, threads)).dropna()
        base = {"layout": layout, "scope": scope, "implementation": impl.name, "threads": threads}
        rows.append({**base, "what": "speedup", **spread(speed)})
        mine = _rows(data, impl.name, layout, threads)
        kept = plans_kept(mine)
        if kept:
            rows.append({**base, "what": "plans", "cells": len(mine), "plans": kept})
        share = pd.Series(dtype=float)
        if goal.roof_share:
            by_cell = mine.set_index(["m", "n_x"])
            cells = _cell_shares(by_cell, roofs.get((layout, threads)), paired, dtype, layout, threads)
            share = cells["share"].dropna()
            rows.append({**base, "what": "roof share", **spread(share)})
            if out_of_cache:
                keys = {"dtype": dtype, "layout": layout, "threads": threads, "implementation": impl.name}
                shares += [{**keys, **r} for r in cells.dropna(subset=["roof_gbps"]).reset_index().to_dict("records")]
        target = goal.speedup_in(layout)
        roof_target = goal.roof_in(layout)
        if judged and roof_target is not None:
            checks.append(_check(base, "roof share", _median(share), roof_target))
        if out_of_cache and goal.steady:
            kernel_spreads = _spreads(rounds, mine, impl.name, layout, threads, dtype)
            reference_spreads = _spreads(rounds, mine, REFERENCE, layout, threads, dtype)
            if not kernel_spreads.empty:
                rows.append({**base, "what": "spread", **spread(kernel_spreads)})
            if judged:
                checks.append(
                    _check(
                        base,
                        "spread",
                        _median(kernel_spreads),
                        _median(reference_spreads),
                        at_most=True,
                        p_wider=p_larger(kernel_spreads.to_numpy(), reference_spreads.to_numpy()),
                        samples=float(min(kernel_spreads.size, reference_spreads.size)),
                    )
                )
        if judged and target is not None:
            checks.append(_check(base, "speedup", _median(speed), target))
        elif not out_of_cache and not speed.empty:
            # Where no speedup is aimed for, the goal is not to be slower than the reference anywhere.
            checks.append(_check(base, "worst speedup", float(speed.min()), 1.0))
    return rows, checks, shares


def _cell_shares(
    mine: pd.DataFrame, roof: float | None, paired: pd.DataFrame | None, dtype: str, layout: str, threads: int
) -> pd.DataFrame:
    """Per cell of one kernel's rows (indexed by m, n_x): its GB/s, the roof it is measured against and its share.

    The roof: the one-pass read timed in the cell's own rounds (or a faster implementation there,
    cell_roofs), roof "cell"; where a cell has none, the sweep's read in this layout's pattern,
    roof "sweep"; before the sweep had one, the share is of memory's bandwidth (bw_fraction) and
    roof_gbps is NaN.
    """
    out = pd.DataFrame({"gbps": mine["gbps"].astype(float)}, index=mine.index)
    out["roof_gbps"] = float(roof) if roof else np.nan
    out["roof"] = "sweep" if roof else ""
    if paired is not None and not paired.empty:
        here = paired[(paired["dtype"] == dtype) & (paired["layout"] == layout) & (paired["threads"] == threads)]
        own = here.set_index(["m", "n_x"])["roof_gbps"].reindex(out.index)
        out.loc[own.notna(), "roof"] = "cell"
        out["roof_gbps"] = own.fillna(out["roof_gbps"])
    out["share"] = out["gbps"] / out["roof_gbps"]
    none = out["roof_gbps"].isna()
    if none.any():
        out.loc[none, "share"] = mine.loc[none, "bw_fraction"].astype(float)
    return out


def _order_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The out-of-cache goals first (roof shares, then speedups, the most ambitious kernel first), then the rest."""
    order = list(REGISTRY)
    goals = [c for c in checks if c["what"] != "worst speedup"]
    rank = {"roof share": 0, "speedup": 1, "spread": 2}
    goals.sort(key=lambda c: (rank.get(c["what"], 3), -order.index(c["implementation"])))
    return goals + [c for c in checks if c["what"] == "worst speedup"]


def layout_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per implementation at 1 thread: the C/F time ratio over cells with m and n_x above 1, and why."""
    if set(ok["layout"]) != {"C", "F"}:
        return pd.DataFrame(columns=LAYOUT_COLUMNS)
    rows = []
    for name, group in ok[ok["threads"] == 1].groupby("implementation", sort=False):
        t = group.pivot_table(index=["m", "n_x"], columns="layout", values="median_s", aggfunc="first").dropna()
        t = t[(t.index.get_level_values("m") > 1) & (t.index.get_level_values("n_x") > 1)]
        if t.empty:
            continue
        ratio = t["C"] / t["F"]
        impl = REGISTRY.get(str(name))
        median = float(ratio.median())
        faster = "F" if median >= SAME_LAYOUT else "C" if median <= 1 / SAME_LAYOUT else ""
        rows.append(
            {
                "implementation": name,
                "cells": len(ratio),
                "c_over_f_median": float(ratio.median()),
                "c_over_f_min": float(ratio.min()),
                "c_over_f_max": float(ratio.max()),
                "faster": faster,
                "note": impl.layout_note if impl is not None else "",
            }
        )
    return pd.DataFrame(rows, columns=LAYOUT_COLUMNS)


def beyond(
    frame: pd.DataFrame,
    meta: dict[str, Any],
    rounds: pd.DataFrame | None = None,
    roof_rounds: pd.DataFrame | None = None,
) -> Beyond | None:
    """The section's figures, or None when the run has no reference or no kernel with a goal.

    rounds (the run's rounds.csv) gives the spread of each cell's rounds, for the goals that ask for it;
    roof_rounds (roofs.csv) the one-pass read timed beside the kernels: each cell's own roof.
    """
    every = frame[frame["status"] == STATUS_OK]
    ok = every[every["dtype"] == JUDGED_DTYPE]
    names = set(ok["implementation"])
    kernels = with_goals(names)
    if REFERENCE not in names or not kernels:
        return None
    limits = {int(t): out_of_cache_bytes(meta, int(t)) for t in sorted(set(ok["threads"]))}
    all_threads = int(max(limits))
    big = ok[ok["bytes_x"] >= ok["threads"].map(limits)]
    shown = every[every["dtype"].isin(SHOWN_DTYPES[1:])]
    shown = shown[shown["bytes_x"] >= shown["threads"].map(limits)]
    course = ok[(ok["m"] == COURSE_SHAPE[0]) & (ok["n_x"] == COURSE_SHAPE[1])]
    roofs = {(lay, t): roof_of(meta, lay, t) for lay in set(ok["layout"]) for t in set(ok["threads"])}
    paired = cell_roofs(roof_rounds, every)
    # Only the cells out of cache at their thread count (a run may have timed the read in more: older ones did).
    itemsize = paired["dtype"].map(lambda d: np.dtype(d).itemsize)
    paired = paired[paired["m"] * paired["n_x"] * itemsize >= paired["threads"].map(limits)].reset_index(drop=True)
    rows, checks, shares = [], [], []
    for layout in sorted(set(ok["layout"])):
        scopes = [(OUT_OF_CACHE, big, JUDGED_DTYPE, True)]
        scopes += [(f"{OUT_OF_CACHE}, {d}", g, str(d), True) for d, g in shown.groupby("dtype") if not g.empty]
        scopes += [(f"course shape {COURSE_SHAPE[0]} x {COURSE_SHAPE[1]:,}", course, JUDGED_DTYPE, False)]
        for scope, data, dtype, out in scopes:
            more_rows, more_checks, more_shares = _scope_rows(
                data, layout, scope, kernels, all_threads, roofs, rounds, paired, out_of_cache=out, dtype=dtype
            )
            rows += more_rows
            checks += more_checks
            shares += more_shares
    return Beyond(
        out_of_cache_bytes=limits,
        measured_hierarchy=hierarchy_of(meta) is not None,
        roof_gbps=dict((meta.get("memory") or {}).get("roof") or {}),
        cell_roofs=paired,
        all_threads=all_threads,
        bandwidth_gbps={int(k): float(v) for k, v in (meta.get("bandwidth_gbps") or {}).items()},
        sizing=dict(meta.get("sizing") or {}),
        any_out_of_cache=not big.empty,
        table=pd.DataFrame(rows, columns=TABLE_COLUMNS),
        checks=pd.DataFrame(_order_checks(checks), columns=CHECK_COLUMNS),
        layouts=layout_table(ok),
        unjudged_dtypes=tuple(sorted(set(shown["dtype"]))),
        cell_shares=pd.DataFrame(shares, columns=SHARE_COLUMNS),
    )
