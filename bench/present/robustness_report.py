"""Report section "How robust is this answer": formats bench.analyse.robustness.Robustness; decides nothing.

Where a measured factor is applied to this run's cells, the text labels the result *derived*:
it says what the factor would do, and was not itself measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.analyse.robustness import ALIASING_MIN_N_X, IMPACTS_CSV, Impact, Robustness
from bench.analyse.views import fmt_seconds, fmt_speedup
from bench.base.constants import ALIASING_STRIDE_BYTES, DEFAULT_MMAP_THRESHOLD_BYTES, KEEP_MAPPED_ENV
from bench.measure.robustness import ROBUSTNESS_CSV
from bench.present.tables import md_rows
from implementations import BASELINE, REFERENCE, REGISTRY

MAX_LISTED = 8  # cells named in one sentence before "and N more"


def _cells_text(cells: Sequence[tuple[int, int]]) -> str:
    shown = [f"m = {m:,}, n_x = {n:,}" for m, n in sorted(cells, key=lambda c: (c[1], c[0]))[:MAX_LISTED]]
    more = len(cells) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _factor(value: float) -> str:
    return f"{value:.2f}x"


def _cell_of(row: pd.Series) -> str:
    # The study's setting is C order; a row in another layout says so.
    layout = f", {row['layout']} order" if str(row.get("layout", "C")) != "C" else ""
    if int(row["m_b"]) != int(row["m"]) or int(row["n_x_b"]) != int(row["n_x"]):
        return f"{int(row['m']):,} x {int(row['n_x']):,} against {int(row['m_b']):,} x {int(row['n_x_b']):,}{layout}"
    return f"m = {int(row['m']):,}, n_x = {int(row['n_x']):,}{layout}"


def _label(i: Impact) -> str:
    return f"~{i.claimed:.0f}x (`{i.implementation}`)"


def _change_sentence(i: Impact, scaled: str) -> str:
    if not i.gain and not i.loss:
        return f"none of them would cross {fmt_speedup(i.threshold)} ({scaled}, *derived*): **unchanged**."
    parts = []
    if i.gain:
        parts.append(f"{len(i.gain)} would reach {fmt_speedup(i.threshold)} ({_cells_text(i.gain)})")
    if i.loss:
        parts.append(f"{len(i.loss)} would fall below it ({_cells_text(i.loss)})")
    return f"{' and '.join(parts)} ({scaled}, *derived*): **the verdict's region would change** there."


def _summary_table(r: Robustness) -> list[str]:
    rows = []
    for _, s in r.study.iterrows():
        if s["effect"] == "process":
            beyond = "-"
        else:
            beyond = "yes" if s["beyond_noise"] else f"no (spread {_factor(float(s['noise']))})"
        basis = " per element" if s.get("basis") == "per_element" else ""
        if s["noisy"]:
            basis += f" (noisy: IQR {s['iqr_share'] * 100:.0f}% of the median)"
        minima = _factor(float(s["factor_min"])) if pd.notna(s.get("factor_min")) else "-"
        other = f" (`{s['implementation_b']}`)" if s["implementation_b"] != s["implementation"] else ""
        rows.append(
            [s["effect"], f"`{s['implementation']}`", _cell_of(s), s["variant_a"], f"{s['variant_b']}{other}",
             fmt_seconds(float(s["time_a_s"])), fmt_seconds(float(s["time_b_s"])),
             f"{_factor(float(s['factor']))}{basis}", minima, beyond]
        )  # fmt: skip
    header = ["effect", "implementation", "cell", "variant a", "variant b", "time a", "time b", "factor (a / b)",
              "factor of minima", "beyond the process spread?"]  # fmt: skip
    return [md_rows(header, rows)]


def _allocator(r: Robustness) -> list[str]:
    rows = r.study[r.study["effect"] == "allocator"]
    if rows.empty:
        return []
    threshold_kib = DEFAULT_MMAP_THRESHOLD_BYTES // 1024
    env = " and ".join(f"`{k}={v}`" for k, v in KEEP_MAPPED_ENV)
    lines = ["", "### Allocator state (glibc malloc)", ""]
    for _, s in rows.iterrows():
        lines.append(
            f"- `{s['implementation']}` at {_cell_of(s)}: {fmt_seconds(float(s['time_a_s']))} with glibc's default "
            f"settings, {fmt_seconds(float(s['time_b_s']))} with freed memory kept mapped: **{_factor(s['factor'])}** "
            f"(median over {int(s['processes'])} fresh processes each)."
        )
    allocating = [f"`{n}`" for n, impl in REGISTRY.items() if impl.temporaries == "examples"]
    lines += [
        "",
        f"Kept mapped means {env} in the worker's environment, which glibc reads at start-up. "
        f"{', '.join(allocating)} allocate (1, m) temporaries every step, m x {r.itemsize} bytes each; "
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
    for i in r.impacts_of("allocator"):
        head = f"- {_label(i)}, {i.holds}: "
        if i.outcome == "unaffected":
            lines.append(
                head + f"no measured cell has a temporary above {threshold_kib} KiB for this implementation: "
                "**unaffected**."
            )
            continue
        text = head + f"{len(i.affected)} cells have temporaries above the threshold ({_cells_text(i.affected)}); "
        text += f"{i.held} of them already reach {fmt_speedup(i.threshold)}. "
        if i.outcome == "unknown":
            lines.append(text + "The study did not measure this implementation above the threshold: **unknown**.")
            continue
        w = i.detail["where"]
        at = pd.Series(w)
        scaled = f"its time divided by {_factor(i.factor)}, the largest factor measured, at {_cell_of(at)}"
        lines.append(text + "With memory kept mapped, " + _change_sentence(i, scaled))
    return lines


def _power_of_two(r: Robustness) -> list[str]:
    rows = r.study[r.study["effect"] == "power_of_two"]
    if rows.empty:
        return []
    lines = ["", "### Power-of-two sizes", ""]
    for _, s in rows.iterrows():
        lines.append(
            f"- `{s['implementation']}` at {_cell_of(s)}: {fmt_seconds(float(s['per_element_a_s']))} against "
            f"{fmt_seconds(float(s['per_element_b_s']))} per element: **{_factor(s['factor'])}**."
        )
    lines += [
        "",
        f"In C order one example's features lie m x {r.itemsize} bytes apart; when that stride is a multiple of "
        f"{ALIASING_STRIDE_BYTES // 1024} KiB they all map to the same cache sets, and a loop that walks an "
        "example's features evicts its own data once there are more of them than a set has ways. The default "
        "profile's grid uses powers of ten (and the course shape) for this reason, so its verdicts do not rest on "
        "a pathological size.",
        "",
    ]
    if not r.aliasing_cells:
        return [
            *lines,
            f"No cell of this run (headline setting) has such a stride (m a multiple of "
            f"{ALIASING_STRIDE_BYTES // r.itemsize}) with n_x >= {ALIASING_MIN_N_X}: **no verdict is affected**.",
        ]
    lines += [
        f"Cells of this run with such a stride and n_x >= {ALIASING_MIN_N_X}: {_cells_text(r.aliasing_cells)}.",
        "",
    ]
    for i in r.impacts_of("power_of_two"):
        head = f"- {_label(i)}, {i.holds}: "
        if i.outcome == "unknown":
            lines.append(head + "not measured by the study: **unknown**.")
        elif i.outcome == "unaffected":
            lines.append(head + "no measured cell of it has such a stride: **unaffected**.")
        else:
            scaled = (
                f"speedup times {_factor(i.detail['own'])} / {_factor(i.detail['baseline'])} (`{i.implementation}` "
                f"and `{BASELINE}` per element, measured at the study's square cells), as if measured at a neighbour "
                "size"
            )
            lines.append(head + f"of its {len(i.affected)} such cells, " + _change_sentence(i, scaled))
    return lines


def _baseline_line(i: Impact) -> str:
    d = i.detail
    if d["measured"]:
        other = d["baseline"]
        counts = (
            f"{i.held} of {i.cells} cells over `{BASELINE}`, {d['held_other']} of {d['cells_other']} over `{other}`"
        )
        if i.outcome == "unchanged":
            return f"- {_label(i)} {i.holds} with either baseline ({counts}): **unchanged**."
        return (
            f"- {_label(i)}: over `{BASELINE}` it {i.holds}; over `{other}` (measured in this "
            f"run) it {d['holds_other']} ({counts}): **changes with the baseline**."
        )
    if i.outcome == "not_measured":
        return f"- {_label(i)}: not measured in this run."
    kept = f"{d['at_high']}" if d["at_high"] == d["at_low"] else f"{d['at_high']} to {d['at_low']}"
    change = (
        "**unchanged**" if i.outcome == "unchanged" else "**fewer cells would hold: the verdict's region would shrink**"
    )
    return (
        f"- {_label(i)}, {i.holds} over `{BASELINE}` (in {i.held} of {i.cells} cells). "
        f"`{d['baseline']}` was not measured in this run; with every speedup divided by {_factor(d['low'])} to "
        f"{_factor(d['high'])} (*derived*), {kept} of the {i.cells} cells would reach {fmt_speedup(i.threshold)}: "
        f"{change}."
    )


def _baseline_style(r: Robustness) -> list[str]:
    rows = r.study[r.study["effect"] == "baseline_style"]
    if rows.empty:
        return []
    lines = ["", "### The baseline's style", ""]
    for _, s in rows.iterrows():
        lines.append(
            f"- At {_cell_of(s)}: `{s['implementation']}` over NumPy arrays {fmt_seconds(float(s['time_a_s']))}, "
            f"`{s['implementation_b']}` over lists {fmt_seconds(float(s['time_b_s']))}: **{_factor(s['factor'])}**."
        )
    low, high = float(rows["factor"].min()), float(rows["factor"].max())
    lines += [
        "",
        "Indexing a NumPy array from Python makes a new scalar object per element; a list hands back a float "
        f'that exists. Every "Nx over two loops" therefore depends on how the 1x baseline holds its data: '
        f"over lists it is {_factor(low)} to {_factor(high)} faster, and every speedup that much smaller.",
        "",
    ]
    return lines + [_baseline_line(i) for i in r.impacts_of("baseline_style")]


def _alignment(r: Robustness) -> list[str]:
    rows = r.study[r.study["effect"] == "alignment"]
    if rows.empty:
        return []
    lines = ["", "### Where X starts (alignment)", ""]
    for _, s in rows.iterrows():
        beyond = (
            "beyond the process spread"
            if s["beyond_noise"]
            else f"within the process spread ({_factor(float(s['noise']))})"
        )
        offsets = str(s.get("x_offset_a") or "").strip()
        where = f" ({offsets} bytes into a line)" if offsets else ""
        lines.append(
            f"- `{s['implementation']}` at {_cell_of(s)}: {fmt_seconds(float(s['time_a_s']))} with X where the grid "
            f"puts it{where} against {fmt_seconds(float(s['time_b_s']))} on a line: **{_factor(s['factor'])}**, "
            f"{beyond}."
        )
    lines += [
        "",
        "A NumPy array starts where malloc put it: 16 bytes into a 64-byte cache line where glibc maps a large "
        "block for it (a 16-byte header), on any 16-byte step where the block comes from the heap (as large ones "
        "can once glibc has raised its mapping threshold). Unless X starts on a line, every 64-byte vector load "
        "along its contiguous axis straddles two lines. "
        "So that this does not vary from cell to cell or from one run to the next, the grid places every X at one "
        "offset (see how this was measured), and the claims' verdicts rest on it (the study did not time the "
        "baseline with X on a line).",
        "",
    ]
    for a in r.alignment:
        lines.append(
            f"- With X on a line, `{a.implementation}`'s speedup over `{REFERENCE}` at m = {a.m:,}, n_x = {a.n_x:,}, "
            f"{a.layout} order, would be {_factor(a.scale)} the one measured with X where the grid puts it "
            f"({_factor(a.factor)} / {_factor(a.reference_factor)}, *derived*)."
        )
    return lines


def _process(r: Robustness) -> list[str]:
    rows = r.study[r.study["effect"] == "process"]
    if rows.empty:
        return []
    lines = ["", "### Run-to-run spread between fresh processes", ""]
    for _, s in rows.iterrows():
        medians = [float(t) for t in str(s.get("medians_a_s") or "").split(";") if t.strip()]
        lines.append(
            f"- `{s['implementation']}` at {_cell_of(s)}: medians {', '.join(fmt_seconds(t) for t in medians)} in "
            f"{int(s['processes'])} fresh processes: **{_factor(s['factor'])}** (slowest / fastest)."
        )
    lines += [
        "",
        "The IQRs in the results table are within one process; these are between processes. A speedup is the "
        "ratio of two medians, so between runs it can move by up to the product of both spreads.",
        "",
    ]
    for i in r.impacts_of("process"):
        if i.outcome == "not_measured":
            lines.append(f"- {_label(i)}: not measured in this run.")
            continue
        own = "" if i.detail["own_spread"] else "; its own spread not measured, the largest measured used"
        head = f"- {_label(i)}, {i.holds}: within {_factor(i.factor)} of {fmt_speedup(i.threshold)} (*derived*{own}): "
        if i.outcome == "settled":
            lines.append(head + "no cell; **a re-run would not change the verdict**.")
        else:
            lines.append(
                head + f"{len(i.affected)} of {i.cells} cells ({_cells_text(i.affected)}): "
                "**a re-run could move these across the threshold**; the rest are settled."
            )
    return lines


INTRO = (
    "A speedup that moves several times with an incidental choice is not an answer until the choices that "
    "move it are known. `python -m bench robustness` measured each effect below side by side, every variant "
    "in its own fresh worker process (alignment's two in the same one, round by round) timed with the grid's gate "
    "and timing code (float64, C order unless a row "
    "says otherwise, 1 thread). "
    "Factor = time of variant a / time of variant b (medians): per element for power-of-two sizes, slowest / "
    "fastest process for the spread; the factor of minima is the same ratio on each side's fastest round, "
    "steadier when the machine is busy. Anything marked *derived* applies a measured factor to this run's "
    f"measured times; it was not itself measured. What each effect does to each verdict is also in `{IMPACTS_CSV}`."
)


def robustness_section(r: Robustness | None, missing: str, run_cpu: str) -> list[str]:
    """The section; `missing` is the sentence to show when the run has no usable study."""
    lines = ["", "## How robust is this answer", ""]
    if r is None:
        return [*lines, missing]
    lines += [INTRO, ""]
    if r.study_cpus and run_cpu and run_cpu not in r.study_cpus:
        lines += [f"Note: the study ran on {', '.join(r.study_cpus)}, this run on {run_cpu}.", ""]
    lines += _summary_table(r)
    lines += _allocator(r)
    lines += _power_of_two(r)
    lines += _baseline_style(r)
    lines += _alignment(r)
    lines += _process(r)
    return lines


def missing_study_text(folder: str, problem: str | None) -> str:
    """The sentence for a run without a usable study: none beside it, unreadable, or nothing measured."""
    if problem is None:
        return (
            f"No robustness study beside these results (no `{ROBUSTNESS_CSV}` in `{folder}`). Measure it with "
            f"`python -m bench robustness --out {folder}` (or `make robustness`), about a minute, then rewrite this "
            "report."
        )
    return problem
