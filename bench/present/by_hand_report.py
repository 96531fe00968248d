"""`bench kernels`'s table on the terminal: formats bench.measure.by_hand's rows; decides nothing."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.base.machine import machine_line
from bench.present.beyond import rank_test_clause
from bench.present.tables import md_rows
from implementations import REFERENCE

LAYOUT_LABEL = {"F": "examples-major (F)", "C": "features-major (C)"}


def _target(value: Any, fmt: str) -> str:
    return "" if pd.isna(value) else format(value, fmt)


def _verdicts(r: pd.Series) -> list[str]:
    """Each goal the kernel has, met or missed; figures to three decimals, so that a miss never reads as a tie."""
    where = f"{LAYOUT_LABEL.get(r['layout'], r['layout'])}, `{r['kernel']}` on {r['threads']} thread(s)"
    out = []
    if not pd.isna(r["speedup_met"]):
        out.append(
            f"- {where}: {r['speedup']:.3f}x `{REFERENCE}` against a goal of {r['target_speedup']:g}x: "
            + ("met" if r["speedup_met"] else "**missed**")
        )
    if not pd.isna(r["roof_share_met"]):
        out.append(
            f"- {where}: {r['roof_share']:.1%} of the roof against a goal of {r['target_roof_share']:.0%}: "
            + ("met" if r["roof_share_met"] else "**missed**")
        )
    steady = r.get("memory_steady")
    if steady is not None and not pd.isna(steady) and not bool(steady):
        out.append(
            f"- {where}: the one-pass read ran at {r['read_gbps_min']:.1f} to {r['read_gbps_max']:.1f} GB/s over the "
            f"repetitions ({r['read_gbps_max'] / r['read_gbps_min']:.2f}x): the machine changed speed while this "
            "kernel was timed, so its figures depend on which stretch each block fell in; run it again"
        )
    if not pd.isna(r["steady_met"]):
        out.append(
            f"- {where}: slowest / fastest call {r['kernel_spread']:.3f} against `{REFERENCE}`'s "
            f"{r['reference_spread']:.3f}: "
            + ("no wider (met)" if r["steady_met"] else "**wider** (missed)" + _noise(r))
        )
    return out


def _noise(r: pd.Series) -> str:
    """For a wider spread: whether by more than the repetitions' own variation (the rank test's p)."""
    p = r.get("steady_p_wider")
    if p is None or pd.isna(p):
        return ""
    return ", " + rank_test_clause(float(p), "repetitions", f"`{REFERENCE}`")


def kernels_text(table: pd.DataFrame, meta: dict[str, Any], m: int, n_x: int) -> str:
    """The by-hand table (markdown), what each figure is, and each goal met or missed."""
    header = [
        "layout", "kernel, threads", "kernel", REFERENCE, "speedup (range over reps)", "goal",
        "spread kernel / reference", "kernel GB/s", "roof GB/s", "share of roof", "goal",
    ]  # fmt: skip
    rows = [
        [
            LAYOUT_LABEL.get(r["layout"], r["layout"]),
            f"`{r['kernel']}`, {r['threads']}"
            + (f" ({r['plan']})" if isinstance(r["plan"], str) and r["plan"] else ""),
            f"{r['kernel_ms']:.3g} ms",
            f"{r['reference_ms']:.3g} ms",
            f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}x to {r['speedup_max']:.2f}x)",
            _target(r["target_speedup"], "g") + ("x" if not pd.isna(r["target_speedup"]) else ""),
            f"{r['kernel_spread']:.2f} / {r['reference_spread']:.2f}",
            f"{r['kernel_gbps']:.1f}",
            f"{r['roof_gbps']:.1f}",
            f"{r['roof_share']:.0%}",
            _target(r["target_roof_share"], ".0%"),
        ]
        for _, r in table.iterrows()
    ]
    reps, calls, warmup_ms = (
        (int(table[c].iloc[0]) for c in ("reps", "calls", "warmup_ms")) if not table.empty else (0, 0, 0)
    )
    lines = [
        f"The kernels' goals by hand at n_x = {n_x:,}, m = {m:,} (float64, {n_x * m * 8 / 2**20:,.0f} MiB of X), "
        f"measured now on {machine_line(meta)}.",
        "",
        md_rows(header, rows),
        "",
        f"Each figure: {reps} repetitions, each a block of {calls} consecutive calls after {warmup_ms} ms of untimed "
        f"ones, the kernel, `{REFERENCE}` and a one-pass read of the same X in a fresh random order, at the kernel's "
        "thread count. "
        "Times: the median over repetitions of each block's median. Speedup: the ratio within each repetition, "
        "median (range). Spread: a block's slowest / fastest call, the median over repetitions. Roof: the read's "
        f"rate, or `{REFERENCE}`'s own streaming rate (two reads of X) where that is higher, as in the report's "
        "Beyond section; it is a roof only once X is out of cache. In brackets after a kernel: the plan its set-up "
        "kept after timing each on this X (blocks: X read once; rows: X read twice in whole rows).",
        "",
        *[line for _, r in table.iterrows() for line in _verdicts(r)],
    ]
    return "\n".join(lines) + "\n"
