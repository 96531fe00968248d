"""Report section "Beyond the note": formats bench.analyse.beyond.Beyond; decides nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.beyond import (
    BEYOND_CHECKS_CSV,
    BEYOND_CSV,
    BEYOND_ROOFS_CSV,
    BEYOND_SHARES_CSV,
    LAYOUTS_CSV,
    OUT_OF_CACHE,
    SAME_LAYOUT,
    Beyond,
)
from bench.analyse.views import fmt_speedup
from bench.base.claims import JUDGED_DTYPE
from bench.base.results import ROOFS_CSV
from bench.base.stats import SIGNIFICANCE
from bench.present.tables import md_table
from implementations import REFERENCE, REGISTRY

LAYOUT_LABEL = {"F": "examples-major (F)", "C": "features-major (C)"}


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _ratio(value: float) -> str:
    return f"{value:.2f}"


_FORMATS = {"roof share": _pct, "spread": _ratio}


def _range(row: pd.Series, fmt: Any) -> str:
    if not row["cells"]:
        return "n/a"
    return f"{fmt(float(row['median']))} ({fmt(float(row['min']))} to {fmt(float(row['max']))})"


def _times(reads: int | None) -> str:
    return {None: "an unknown number of times", 1: "once", 2: "twice"}.get(reads, f"{reads} times")


def _column(name: str, threads: int, what: str) -> str:
    if what == "roof share":
        return f"{name}, share of the roof"
    if what == "spread":
        return f"{name}, slowest / fastest round"
    if what == "plans":
        return f"{name}, plans kept (cells)"
    return f"{name} / {REFERENCE}, " + ("1 thread" if threads == 1 else "all threads")


def figures_table(b: Beyond) -> str:
    """One row per layout and scope, one column per kernel's speedup (and roof share where it has a goal for it)."""
    cells = b.table.assign(
        column=[_column(r["implementation"], int(r["threads"]), r["what"]) for _, r in b.table.iterrows()],
        text=[
            r["plans"] if r["what"] == "plans" else _range(r, _FORMATS.get(str(r["what"]), fmt_speedup))
            for _, r in b.table.iterrows()
        ],
        layout=b.table["layout"].map(LAYOUT_LABEL),
    )
    wide = cells.pivot_table(index=["layout", "scope"], columns="column", values="text", aggfunc="first", sort=False)
    # A figure a scope has no cells for (no plans timed, no spread in cache) reads n/a, not nan.
    wide = wide[list(dict.fromkeys(cells["column"]))].fillna("n/a").reset_index().rename(columns={"scope": "cells"})
    return md_table(wide)


def _check_text(r: pd.Series) -> str:
    name, threads = r["implementation"], int(r["threads"])
    where = f"{LAYOUT_LABEL[r['layout']]}, {r['scope']}: "
    if r["what"] == "spread":
        return _spread_text(r, f"{where}{name}'s slowest / fastest round of a pass at {threads} threads, at the median")
    if r["what"] == "roof share":
        what = f"{where}{name} reaches >= {r['target']:.0%} of the roof at {threads} threads"
    elif r["what"] == "speedup":
        on = "on 1 thread" if threads == 1 else f"at {threads} threads"
        what = f"{where}{name} >= {r['target']:g}x {REFERENCE} {on}"
    else:
        on = "1 thread" if threads == 1 else f"{threads} threads"
        what = f"{LAYOUT_LABEL[r['layout']]}, {r['scope']}: {name} ({on}) not slower than {REFERENCE}"
    figure = {"roof share": "fraction", "speedup": "speedup"}.get(str(r["what"]), "worst speedup")
    value, target = float(r["value"]), float(r["target"])
    if not np.isfinite(value):
        return f"- {what}: not measured"
    shown = f"{value:.{_digits(value, target)}f}"
    if r["met"]:
        return f"- {what}: met ({figure} {shown} >= {target:g})"
    return f"- {what}: **missed** by {(1 - value / target) * 100:.0f}% ({figure} {shown} < {target:g})"


def _digits(value: float, target: float) -> int:
    """Decimals to print value and target with: 2, or as many more (up to 6) as it takes to tell them apart."""
    digits = 2
    while digits < 6 and f"{value:.{digits}f}" == f"{target:.{digits}f}" and value != target:
        digits += 1
    return digits


def _spread_text(r: pd.Series, what: str) -> str:
    value, target = float(r["value"]), float(r["target"])
    if not (np.isfinite(value) and np.isfinite(target)):
        return f"- {what}, no wider than {REFERENCE}'s: not measured (no rounds.csv beside the results)"
    verdict = "met" if r["met"] else "**missed**"
    sign = "<=" if r["met"] else ">"
    digits = _digits(value, target)
    return (
        f"- {what}, no wider than {REFERENCE}'s: {verdict} ({value:.{digits}f} {sign} {target:.{digits}f}){_noise(r)}"
    )


def _share_lines(b: Beyond) -> list[str]:
    """Each judged out-of-cache cell's share of its roof, lowest roof first, per kernel with a roof goal."""
    mine = b.cell_shares[(b.cell_shares["dtype"] == JUDGED_DTYPE) & b.cell_shares["share"].notna()]
    if mine.empty:
        return []
    parts = []
    for key, g in mine.groupby(["layout", "implementation", "threads"], sort=True):
        layout, name, threads = (str(k) for k in key)
        cells = "; ".join(
            f"{float(r['share']) * 100:.0f}% of {float(r['roof_gbps']):.1f} GB/s at m = {int(r['m']):,}, "
            f"n_x = {int(r['n_x']):,}" + (" (the sweep's read)" if r["roof"] == "sweep" else "")
            for r in g.sort_values(["roof_gbps", "m", "n_x"]).to_dict("records")
        )
        parts.append(f"{LAYOUT_LABEL[layout]}, `{name}` at {threads} thread(s): {cells}")
    return [
        "",
        f"Each cell's share of its roof, lowest roof first (`{BEYOND_SHARES_CSV}`): " + "; ".join(parts) + ".",
    ]


def rank_test_clause(p: float, over: str, reference: str, detail: str = "") -> str:
    """For a spread wider at the median than the reference's: whether by more than `over`'s own variation.

    p is the one-sided Mann-Whitney p that the kernel's spreads are the larger (bench.base.stats.p_larger);
    shared with `bench kernels`, which compares repetitions where this section compares passes.
    """
    figures = f"p = {p:.2g}" + (f", {detail}" if detail else "")
    if p < SIGNIFICANCE:
        return f"wider beyond the {over}' own variation (one-sided Mann-Whitney {figures})"
    return f"not distinguishable from {reference}'s by the {over}' own variation (one-sided Mann-Whitney {figures})"


def _noise(r: pd.Series) -> str:
    """For a missed spread goal: whether the wider spread is beyond the passes' own variation."""
    p, samples = r.get("p_wider", np.nan), r.get("samples", np.nan)
    if r["met"] or pd.isna(p):
        return ""
    passes = f"{int(samples)} pass{'es' if int(samples) != 1 else ''} a side, each over one cell"
    return "; " + rank_test_clause(p, "passes", REFERENCE, passes)


def _layout_line(r: pd.Series) -> str:
    med = float(r["c_over_f_median"])
    factor = med if med > 1 else 1 / med
    label = {"F": "F (examples-major)", "C": "C (features-major)"}.get(str(r["faster"] or ""))
    verdict = f"{label} is faster by {factor:.2g}x" if label else f"the two layouts are within {SAME_LAYOUT - 1:.0%}"
    why = f"; {r['note']}" if r["note"] else ""
    return (
        f"- `{r['implementation']}`: {verdict} at the median cell "
        f"(C/F time ratio {r['c_over_f_min']:.2g} to {r['c_over_f_max']:.2g}){why}."
    )


def _limits_text(limits: dict[int, float]) -> str:
    """'50 MiB', or '50 MiB on 1 thread and 80 MiB on 2 threads' where the thread counts' limits differ."""
    if len({round(v / 2**20) for v in limits.values()}) == 1:
        return f"{next(iter(limits.values())) / 2**20:,.0f} MiB"
    sizes = [f"{v / 2**20:,.0f} MiB on {t} thread{'s' if t > 1 else ''}" for t, v in sorted(limits.items())]
    return ", ".join(sizes[:-1]) + " and " + sizes[-1]


def _unjudged_text(b: Beyond) -> str:
    if not b.unjudged_dtypes:
        return ""
    scopes = " and ".join(f'"{OUT_OF_CACHE}, {d}"' for d in b.unjudged_dtypes)
    return f" (the rows {scopes} give the same figures for those cells, with no goal checked)"


def _intro(b: Beyond) -> list[str]:
    threads = dict(zip(b.table["implementation"], b.table["threads"], strict=False))
    kernels = "; ".join(
        f"`{n}` {_times(REGISTRY[n].reads_of_x)}" + (" on one thread" if t == 1 else " on every core")
        for n, t in threads.items()
    )
    lines = [
        "",
        "## Beyond the note: one pass over X, and every core",
        "",
        f"`{REFERENCE}` reads X from memory {_times(REGISTRY[REFERENCE].reads_of_x)} per step; the kernels with a "
        f"goal against it read it: {kernels}. Once X is larger than the cache, the step is bound by memory "
        "bandwidth, so reading X fewer times should be faster by up to the ratio of reads.",
        "",
        f"Out of cache here means X of at least {_limits_text(b.out_of_cache_bytes)}: "
        + (
            "twice the last cache this machine's memory sweep measured on that many threads (threads on other "
            "cores bring more cache), whatever the OS reports, so that X cannot stay in it from one pass to the next"
            if b.measured_hierarchy
            else "4x the last-level cache the OS reports (this run has no memory sweep)"
        )
        + f"; {JUDGED_DTYPE}{_unjudged_text(b)}; all threads = {b.all_threads}. Figures are medians over those "
        "cells (range in brackets). "
        f"Also in `{BEYOND_CSV}`, the targets in `{BEYOND_CHECKS_CSV}`.",
        "",
    ]
    if "added_cell" in b.sizing:
        m_add, n_add = b.sizing["added_cell"]
        lines += [
            f"The grid was extended by the cell m = {m_add:,}, n_x = {n_add:,} to reach 4x the measured last "
            "cache capacity.",
            "",
        ]
    if "memory_short" in b.sizing:
        lines += [
            "This machine's free memory is too small to reach 4x the measured last cache capacity: "
            f"{b.sizing['memory_short']}.",
            "",
        ]
    if not b.any_out_of_cache:
        lines += ["No measured cell has X out of cache on this machine, so the out-of-cache rows below are n/a.", ""]
    return lines


_PATTERN = (
    "(examples-major: each thread streams its contiguous share; features-major: the fused kernels' blocks of "
    "examples, eight rows' segments at a time as their first pass reads them; on several threads the parts run "
    "on Numba's thread pool, where "
    "Numba-compiled kernels run)"
)


def _cell_roof_text(b: Beyond) -> str:
    parts = []
    for (dtype, layout, threads), g in b.cell_roofs.groupby(["dtype", "layout", "threads"], sort=False):
        gbps = g["roof_gbps"]
        read = g["read_gbps"] >= g["roof_gbps"]
        setters = [f"the read in {int(read.sum())}"] if read.any() else []
        setters += [f"`{name}` in {n}" for name, n in g.loc[~read, "best_other"].value_counts().items()]
        parts.append(
            f"{LAYOUT_LABEL[str(layout)]} on {threads} thread(s){'' if dtype == JUDGED_DTYPE else ', ' + str(dtype)} "
            f"{gbps.median():.1f} GB/s "
            f"({gbps.min():.1f} to {gbps.max():.1f} over {len(g)} cell(s); set by " + ", ".join(setters) + ")"
        )
    return "; ".join(parts)


def _roof_lines(b: Beyond) -> list[str]:
    lines = [""]
    if not b.cell_roofs.empty:
        lines.append(
            "The roof of each out-of-cache cell is the best streaming rate code reached there: a compiled one-pass "
            f"read of the cell's own X in its layout's access pattern {_PATTERN}, timed in the same rounds as the "
            "kernels so that both see the same memory (its bandwidth drifts over a run), or an implementation "
            "with no roof goal that read X faster (reads of X x its bytes / time), whichever is higher: "
            f"{_cell_roof_text(b)}. Every round of the read in `{ROOFS_CSV}`, each cell's roof in "
            f"`{BEYOND_ROOFS_CSV}`; each cell's share is against its own roof."
        )
    sweep = [
        f"{LAYOUT_LABEL[layout]}: " + ", ".join(f"{float(v):.1f} GB/s on {k} thread(s)" for k, v in sorted(g.items()))
        for layout, g in sorted(b.roof_gbps.items())
    ]
    if sweep:
        lead = "The same read" if not b.cell_roofs.empty else "The roof: a compiled one-pass read"
        lines += [""] if len(lines) > 1 else []
        lines.append(
            f"{lead} of an X out of cache (4,096 features), timed once in the memory sweep before the cells"
            + (f" {_PATTERN}" if b.cell_roofs.empty else "")
            + ": "
            + "; ".join(sweep)
            + ("." if b.cell_roofs.empty else "; the share of a cell that has no roof of its own is against it.")
        )
    if len(lines) == 1:
        lines.append("The roof is main memory's read bandwidth: this run timed no one-pass read of X.")
    return lines


def beyond_section(b: Beyond | None) -> list[str]:
    if b is None:
        return []
    lines = _intro(b)
    lines += [figures_table(b), "", "Targets (measured in this run):", ""]
    lines += [_check_text(r) for _, r in b.checks.iterrows()]
    lines += _share_lines(b)
    if b.bandwidth_gbps:
        lines += [
            "",
            "Main-memory read bandwidth (the memory sweep's last plateau, best of several reads per size): "
            + ", ".join(f"{v:.1f} GB/s on {k} thread(s)" for k, v in sorted(b.bandwidth_gbps.items()))
            + ".",
        ]
    lines += _roof_lines(b)
    lines += ["", "### Which layout suits which implementation", ""]
    if b.layouts.empty:
        lines.append("Only one layout was measured.")
    else:
        lines += [_layout_line(r) for _, r in b.layouts.iterrows()]
        lines += ["", f"Also in `{LAYOUTS_CSV}`."]
    return lines
