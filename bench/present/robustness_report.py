"""Report section "How robust is this answer": the robustness study's factors, and what they do to each verdict.

Numbers come from robustness.csv (measured by `python -m bench robustness`) and from the run's
results table. Where a measured factor is applied to this run's cells, the result is labelled
*derived*: it says what the factor would do, and was not itself measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.verdicts import Verdict, claim_verdicts
from bench.analyse.views import cell_items, fmt_seconds, fmt_speedup, headline, speedups
from bench.base.constants import ALIASING_STRIDE_BYTES, DEFAULT_MMAP_THRESHOLD_BYTES, KEEP_MAPPED_ENV
from bench.base.errors import BenchError
from bench.measure.robustness import ROBUSTNESS_CSV, STATUS_OK, load_robustness
from implementations import BASELINE

LISTS_BASELINE = "two_loop_lists"
NOISY_IQR = 0.25  # an IQR above this share of the median marks a row measured on a busy machine
MAX_LISTED = 8  # cells named in one sentence before "and N more"
# Set aliasing needs more features than a cache set has ways (8 to 12 in L1 on common x86 cores).
ALIASING_MIN_N_X = 16


def _largest_temporary(implementation: str, m: int, n_x: int) -> int:
    """Elements of the largest array one step allocates (0: none worth counting).

    fully_vectorized makes about a dozen (1, m) temporaries (Z, exp, A, S, loss, dZ, ...) and
    an (n_x, 1) dw; the loops allocate only n_x-element arrays (dw, x_i * dz_i); the lists
    baseline allocates Python floats only.
    """
    if implementation == "fully_vectorized":
        return max(m, n_x)
    if implementation == LISTS_BASELINE:
        return 0
    return n_x


def _cells_text(cells: Sequence[tuple[int, int]]) -> str:
    shown = [f"m = {m:,}, n_x = {n:,}" for m, n in sorted(cells, key=lambda c: (c[1], c[0]))[:MAX_LISTED]]
    more = len(cells) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _factor(value: float) -> str:
    return f"{value:.2f}x"


def _cell_of(row: pd.Series) -> str:
    if int(row["m_b"]) != int(row["m"]) or int(row["n_x_b"]) != int(row["n_x"]):
        return f"{int(row['m']):,} x {int(row['n_x']):,} against {int(row['m_b']):,} x {int(row['n_x_b']):,}"
    return f"m = {int(row['m']):,}, n_x = {int(row['n_x']):,}"


def _holds_text(v: Verdict) -> str:
    """The verdict's region in a few words."""
    if v.cells == 0:
        return "not measured"
    if v.rule_text == "in no measured cell":
        return "holds in no measured cell"
    if v.rule_text == "every measured cell":
        return "holds in every measured cell"
    if not v.general:
        return f"holds in isolated cells only (best rule: {v.rule_text})"
    return f"holds where {v.rule_text}"


def _label(v: Verdict) -> str:
    return f"~{v.claimed:.0f}x (`{v.implementation}`)"


def _speeds(frame: pd.DataFrame, implementation: str, baseline: str = BASELINE) -> dict[tuple[int, int], float]:
    """Measured speedup over `baseline` per (m, n_x), headline setting."""
    speed = speedups(headline(frame), baseline)
    if implementation not in speed:
        return {}
    return {(m, n_x): s for m, n_x, s in cell_items(speed[implementation].dropna())}


def _itemsize(frame: pd.DataFrame) -> int:
    data = headline(frame)
    return int(np.dtype(str(data["dtype"].iloc[0])).itemsize) if not data.empty else 8


Cell = tuple[int, int]


def _crossings(
    speed: dict[Cell, float], cells: set[Cell], threshold: float, scale: float
) -> tuple[list[Cell], list[Cell]]:
    """Among `cells`, those that would start to hold and those that would stop, with speedups times `scale`."""
    gain: list[Cell] = []
    loss: list[Cell] = []
    for cell, s in speed.items():
        if cell not in cells:
            continue
        if s < threshold <= s * scale:
            gain.append(cell)
        elif s * scale < threshold <= s:
            loss.append(cell)
    return gain, loss


def _change_sentence(
    gain: Sequence[tuple[int, int]], loss: Sequence[tuple[int, int]], threshold: float, scaled: str
) -> str:
    if not gain and not loss:
        return f"none of them would cross {fmt_speedup(threshold)} ({scaled}, *derived*): **unchanged**."
    parts = []
    if gain:
        parts.append(f"{len(gain)} would reach {fmt_speedup(threshold)} ({_cells_text(gain)})")
    if loss:
        parts.append(f"{len(loss)} would fall below it ({_cells_text(loss)})")
    return f"{' and '.join(parts)} ({scaled}, *derived*): **the verdict's region would change** there."


def _summary_table(study: pd.DataFrame, spread: dict[str, float]) -> list[str]:
    lines = [
        "| effect | implementation | cell | variant a | variant b | time a | time b | factor (a / b) | "
        "factor of minima | beyond the process spread? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    worst = max(spread.values(), default=1.0)
    for _, r in study.iterrows():
        factor = float(r["factor"])
        if r["effect"] == "process":
            beyond = "-"
        else:
            # An effect smaller than the spread between fresh processes is not told apart from noise; on a busy
            # machine the medians alone can clear it, so the minima must clear it too, in the same direction.
            noise = max(spread.get(str(r["implementation"]), worst), spread.get(str(r["implementation_b"]), worst))
            both = [factor] + ([float(r["factor_min"])] if pd.notna(r.get("factor_min")) else [])
            clear = all(f > noise for f in both) or all(f < 1 / noise for f in both)
            beyond = "yes" if clear else f"no (spread {_factor(noise)})"
        basis = " per element" if r.get("basis") == "per_element" else ""
        spread_iqr = max(float(r["iqr_a_s"]) / float(r["time_a_s"]), float(r["iqr_b_s"]) / float(r["time_b_s"]))
        if spread_iqr > NOISY_IQR:
            basis += f" (noisy: IQR {spread_iqr * 100:.0f}% of the median)"
        minima = _factor(float(r["factor_min"])) if pd.notna(r.get("factor_min")) else "-"
        b_name = f"{r['variant_b']}" + (
            f" (`{r['implementation_b']}`)" if r["implementation_b"] != r["implementation"] else ""
        )
        lines.append(
            f"| {r['effect']} | `{r['implementation']}` | {_cell_of(r)} | {r['variant_a']} | {b_name} | "
            f"{fmt_seconds(float(r['time_a_s']))} | {fmt_seconds(float(r['time_b_s']))} | "
            f"{_factor(factor)}{basis} | {minima} | {beyond} |"
        )
    return lines


def _allocator(study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict]) -> list[str]:
    rows = study[study["effect"] == "allocator"]
    if rows.empty:
        return []
    itemsize = _itemsize(frame)
    threshold_kib = DEFAULT_MMAP_THRESHOLD_BYTES // 1024
    env = " and ".join(f"`{k}={v}`" for k, v in KEEP_MAPPED_ENV)
    lines = ["", "### Allocator state (glibc malloc)", ""]
    for _, r in rows.iterrows():
        lines.append(
            f"- `{r['implementation']}` at {_cell_of(r)}: {fmt_seconds(float(r['time_a_s']))} with glibc's default "
            f"settings, {fmt_seconds(float(r['time_b_s']))} with freed memory kept mapped: **{_factor(r['factor'])}** "
            f"(median over {int(r['processes'])} fresh processes each)."
        )
    lines += [
        "",
        f"Kept mapped means {env} in the worker's environment, which glibc reads at start-up. "
        f"`fully_vectorized` allocates about a dozen (1, m) temporaries per step, m x {itemsize} bytes each; "
        f"glibc mmaps requests above its mmap threshold ({threshold_kib} KiB by default). The threshold is "
        "dynamic: after the first free it rises and the temporaries come from the heap, but freeing them "
        "leaves more than the trim threshold (twice the mmap threshold) at the heap's top, which glibc hands "
        "back to the system, so every step page-faults its temporaries in again. Smaller arrays, and "
        "compiled kernels that allocate only dw, are not affected.",
        "",
        "The grid is timed in the default state: no MALLOC_* tuning, the state a training loop in a default "
        "Python process is in. The kept-mapped state is a tuning a user has to opt into; the factor above is "
        "what it is worth. A long-lived process can also drift into it (freeing a large array raises the "
        "dynamic threshold), which is why the study times both states in fresh processes.",
        "",
    ]
    by_impl: dict[str, float] = {}
    where: dict[str, str] = {}
    for _, r in rows.iterrows():
        name = str(r["implementation"])
        above = _largest_temporary(name, int(r["m"]), int(r["n_x"])) * itemsize > DEFAULT_MMAP_THRESHOLD_BYTES
        if above and float(r["factor"]) > by_impl.get(name, 0.0):
            by_impl[name], where[name] = float(r["factor"]), _cell_of(r)
    for v in verdicts:
        speed = _speeds(frame, v.implementation)
        affected = {
            (m, n)
            for m, n in speed
            if _largest_temporary(v.implementation, m, n) * itemsize > DEFAULT_MMAP_THRESHOLD_BYTES
        }
        head = f"- {_label(v)}, {_holds_text(v)}: "
        if not affected:
            lines.append(
                head + f"no measured cell has a temporary above {threshold_kib} KiB for this implementation: "
                "**unaffected**."
            )
            continue
        held = sum(1 for cell, s in speed.items() if cell in affected and s >= v.threshold)
        text = head + f"{len(affected)} cells have temporaries above the threshold ({_cells_text(sorted(affected))}); "
        text += f"{held} of them already reach {fmt_speedup(v.threshold)}. "
        factor = by_impl.get(v.implementation)
        if factor is None:
            lines.append(text + "The study did not measure this implementation above the threshold: **unknown**.")
            continue
        gain, loss = _crossings(speed, affected, v.threshold, factor)
        scaled = f"its time divided by {_factor(factor)}, the largest factor measured, at {where[v.implementation]}"
        lines.append(text + "With memory kept mapped, " + _change_sentence(gain, loss, v.threshold, scaled))
    return lines


def _power_of_two(study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict]) -> list[str]:
    rows = study[study["effect"] == "power_of_two"]
    if rows.empty:
        return []
    itemsize = _itemsize(frame)
    c_order = set(headline(frame)["layout"]) == {"C"}
    lines = ["", "### Power-of-two sizes", ""]
    for _, r in rows.iterrows():
        lines.append(
            f"- `{r['implementation']}` at {_cell_of(r)}: {fmt_seconds(float(r['per_element_a_s']))} against "
            f"{fmt_seconds(float(r['per_element_b_s']))} per element: **{_factor(r['factor'])}**."
        )
    cells = sorted(
        {
            (int(m), int(n))
            for m, n in headline(frame)[["m", "n_x"]].itertuples(index=False)
            if c_order and (int(m) * itemsize) % ALIASING_STRIDE_BYTES == 0 and int(n) >= ALIASING_MIN_N_X
        }
    )
    lines += [
        "",
        f"In C order one example's features lie m x {itemsize} bytes apart; when that stride is a multiple of "
        f"{ALIASING_STRIDE_BYTES // 1024} KiB they all map to the same cache sets, and a loop that walks an "
        "example's features evicts its own data once there are more of them than a set has ways. The default "
        "profile's grid uses powers of ten (and the course shape) for this reason, so its verdicts do not rest on "
        "a pathological size.",
        "",
    ]
    if not cells:
        return [
            *lines,
            f"No cell of this run (headline setting) has such a stride (m a multiple of "
            f"{ALIASING_STRIDE_BYTES // itemsize}) with n_x >= {ALIASING_MIN_N_X}: **no verdict is affected**.",
        ]
    lines += [f"Cells of this run with such a stride and n_x >= {ALIASING_MIN_N_X}: {_cells_text(cells)}.", ""]
    named = rows[(rows["m"] == rows["n_x"]) & (rows["m_b"] == rows["n_x_b"])]
    use = named if not named.empty else rows
    factors = {str(r["implementation"]): float(r["factor"]) for _, r in use.iterrows()}
    base = factors.get(BASELINE, 1.0)
    for v in verdicts:
        speed = _speeds(frame, v.implementation)
        affected = {c for c in cells if c in speed}
        head = f"- {_label(v)}, {_holds_text(v)}: "
        if v.implementation not in factors:
            lines.append(head + "not measured by the study: **unknown**.")
            continue
        if not affected:
            lines.append(head + "no measured cell of it has such a stride: **unaffected**.")
            continue
        ratio = factors[v.implementation] / base
        gain, loss = _crossings(speed, affected, v.threshold, ratio)
        scaled = (
            f"speedup times {_factor(factors[v.implementation])} / {_factor(base)} (`{v.implementation}` and "
            f"`{BASELINE}` per element, measured at the study's square cells), as if measured at a neighbour size"
        )
        lines.append(head + f"of its {len(affected)} such cells, " + _change_sentence(gain, loss, v.threshold, scaled))
    return lines


def _baseline_style(
    study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict], lists_verdicts: Sequence[Verdict]
) -> list[str]:
    rows = study[study["effect"] == "baseline_style"]
    if rows.empty:
        return []
    lines = ["", "### The baseline's style", ""]
    for _, r in rows.iterrows():
        lines.append(
            f"- At {_cell_of(r)}: `{r['implementation']}` over NumPy arrays {fmt_seconds(float(r['time_a_s']))}, "
            f"`{r['implementation_b']}` over lists {fmt_seconds(float(r['time_b_s']))}: **{_factor(r['factor'])}**."
        )
    low, high = float(rows["factor"].min()), float(rows["factor"].max())
    lines += [
        "",
        "Indexing a NumPy array from Python makes a new scalar object per element; a list hands back a float "
        f'that exists. Every "Nx over two loops" therefore depends on how the 1x baseline holds its data: '
        f"over lists it is {_factor(low)} to {_factor(high)} faster, and every speedup that much smaller.",
        "",
    ]
    measured = {v.implementation: v for v in lists_verdicts if v.cells > 0}
    for v in verdicts:
        other = measured.get(v.implementation)
        if other is not None:
            held = sum(s >= v.threshold for s in _speeds(frame, v.implementation).values())
            held_lists = sum(s >= v.threshold for s in _speeds(frame, v.implementation, LISTS_BASELINE).values())
            same = _holds_text(v) == _holds_text(other)
            counts = (
                f"{held} of {v.cells} cells over `{BASELINE}`, {held_lists} of {other.cells} over `{LISTS_BASELINE}`"
            )
            if same:
                lines.append(f"- {_label(v)} {_holds_text(v)} with either baseline ({counts}): **unchanged**.")
            else:
                lines.append(
                    f"- {_label(v)}: over `{BASELINE}` it {_holds_text(v)}; over `{LISTS_BASELINE}` (measured in this "
                    f"run) it {_holds_text(other)} ({counts}): **changes with the baseline**."
                )
            continue
        speed = _speeds(frame, v.implementation)
        if not speed:
            lines.append(f"- {_label(v)}: not measured in this run.")
            continue
        held = sum(s >= v.threshold for s in speed.values())
        at_high = sum(s / high >= v.threshold for s in speed.values())
        at_low = sum(s / low >= v.threshold for s in speed.values())
        kept = f"{at_high}" if at_high == at_low else f"{at_high} to {at_low}"
        change = "**unchanged**" if at_high == held else "**fewer cells would hold: the verdict's region would shrink**"
        lines.append(
            f"- {_label(v)}, {_holds_text(v)} over `{BASELINE}` (in {held} of {len(speed)} cells). "
            f"`{LISTS_BASELINE}` was not measured in this run; with every speedup divided by {_factor(low)} to "
            f"{_factor(high)} (*derived*), {kept} of the {len(speed)} cells would reach {fmt_speedup(v.threshold)}: "
            f"{change}."
        )
    return lines


def _process(study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict]) -> list[str]:
    rows = study[study["effect"] == "process"]
    if rows.empty:
        return []
    lines = ["", "### Run-to-run spread between fresh processes", ""]
    spread: dict[str, float] = {}
    for _, r in rows.iterrows():
        medians = [float(t) for t in str(r.get("medians_a_s") or "").split(";") if t.strip()]
        shown = ", ".join(fmt_seconds(t) for t in medians)
        spread[str(r["implementation"])] = float(r["factor"])
        lines.append(
            f"- `{r['implementation']}` at {_cell_of(r)}: medians {shown} in {int(r['processes'])} fresh processes: "
            f"**{_factor(r['factor'])}** (slowest / fastest)."
        )
    worst = max(spread.values())
    base = spread.get(BASELINE, worst)
    lines += [
        "",
        "The IQRs in the results table are within one process; these are between processes. A speedup is the "
        "ratio of two medians, so between runs it can move by up to the product of both spreads.",
        "",
    ]
    for v in verdicts:
        speed = _speeds(frame, v.implementation)
        if not speed:
            lines.append(f"- {_label(v)}: not measured in this run.")
            continue
        band = spread.get(v.implementation, worst) * base
        near = [cell for cell, s in speed.items() if v.threshold / band <= s < v.threshold * band]
        own = "" if v.implementation in spread else "; its own spread not measured, the largest measured used"
        head = (
            f"- {_label(v)}, {_holds_text(v)}: within {_factor(band)} of {fmt_speedup(v.threshold)} (*derived*{own}): "
        )
        if not near:
            lines.append(head + "no cell; **a re-run would not change the verdict**.")
        else:
            lines.append(
                head + f"{len(near)} of {len(speed)} cells ({_cells_text(near)}): "
                "**a re-run could move these across the threshold**; the rest are settled."
            )
    return lines


def robustness_section(frame: pd.DataFrame, meta: dict[str, Any], folder: Path) -> list[str]:
    """The section, from folder/robustness.csv; a line saying how to measure it when there is none."""
    lines = ["", "## How robust is this answer", ""]
    path = folder / ROBUSTNESS_CSV
    if not path.is_file():
        return [
            *lines,
            f"No robustness study beside these results (no `{ROBUSTNESS_CSV}` in `{folder}`). Measure it with "
            f"`python -m bench robustness --out {folder}` (or `make robustness`), about a minute, then rewrite this "
            "report.",
        ]
    try:
        study = load_robustness(path)
    except BenchError as exc:
        return [*lines, f"The robustness study could not be read ({exc}); measure it again with `make robustness`."]
    study = study[study["status"] == STATUS_OK]
    if study.empty:
        return [*lines, f"`{ROBUSTNESS_CSV}` has no measured comparison; measure it again with `make robustness`."]
    over_loops = claim_verdicts(frame, BASELINE)
    over_lists = (
        claim_verdicts(frame, LISTS_BASELINE) if LISTS_BASELINE in set(headline(frame)["implementation"]) else []
    )
    spread = {str(r["implementation"]): float(r["factor"]) for _, r in study[study["effect"] == "process"].iterrows()}
    lines += [
        "A speedup that moves several times with an incidental choice is not an answer until the choices that "
        "move it are known. `python -m bench robustness` measured each effect below side by side, every variant "
        "in its own fresh worker process timed with the grid's gate and timing code (float64, C order, 1 thread). "
        "Factor = time of variant a / time of variant b (medians): per element for power-of-two sizes, slowest / "
        "fastest process for the spread; the factor of minima is the same ratio on each side's fastest round, "
        "steadier when the machine is busy. Anything marked *derived* applies a measured factor to this run's "
        "measured times; it was not itself measured.",
        "",
    ]
    cpus = {str(c) for c in study["cpu"].dropna()} if "cpu" in study else set()
    run_cpu = str(meta.get("machine", {}).get("cpu", ""))
    if cpus and run_cpu and run_cpu not in cpus:
        lines += [f"Note: the study ran on {', '.join(sorted(cpus))}, this run on {run_cpu}.", ""]
    lines += _summary_table(study, spread)
    lines += _allocator(study, frame, over_loops)
    lines += _power_of_two(study, frame, over_loops)
    lines += _baseline_style(study, frame, over_loops, over_lists)
    lines += _process(study, frame, over_loops)
    return lines
