"""Report section "Why": a fitted cost model per implementation, the crossovers, the lecture's demo."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.lecture import LECTURE_SECONDS
from bench.model import CostModel, crossover_n_x, fit_models
from bench.results import STATUS_FAILED_CHECK, STATUS_OK
from bench.views import (
    CLAIMS,
    HOLDS_FACTOR,
    cell_items,
    fmt_seconds,
    fmt_speedup,
    headline,
    setting_label,
    speedups,
)
from implementations import BASELINE, REFERENCE, REGISTRY


def _constants(name: str, model: CostModel, itemsize: int) -> str:
    """The model in the unit that explains each implementation best."""
    over = fmt_seconds(model.overhead_s)
    if name == "two_loop":
        # Two multiply-adds per element (one for z, one for dw), each a few bytecodes.
        return f"{model.per_element_s * 1e9 / 2:.0f} ns per scalar multiply-add (2 per element); call {over}"
    if REGISTRY.get(name) is not None and REGISTRY[name].python_loops:
        return (
            f"{model.per_example_s * 1e6:.2f} µs per Python-level iteration (example), "
            f"+ {model.per_element_s * 1e9:.2g} ns per element; call {over}"
        )
    gbps = itemsize / model.per_element_s / 1e9 if model.per_element_s > 0 else float("inf")
    return f"per-call overhead {over}; effective {gbps:.1f} GB/s of X ({model.per_element_s * 1e9:.3g} ns per element)"


def why_section(frame: pd.DataFrame, lecture: pd.DataFrame | None) -> list[str]:
    data = headline(frame)
    models = fit_models(data)
    lines = ["", "## Why the speedups are what they are", ""]
    if models:
        lines += [
            f"Each implementation's measured times ({setting_label(data)}) are fitted by "
            "t = overhead + m x per-example + m x n_x x per-element, with nonnegative terms and a robust "
            "(Huber) loss on the relative error. Fit error is over the measured cells.",
            "",
            "| implementation | model, in readable units | median / worst fit error | cells |",
            "|---|---|---|---|",
        ]
        for name, model in models.items():
            lines.append(
                f"| `{name}` | {_constants(name, model, 8)} | {model.median_rel_error * 100:.0f}% / "
                f"{model.max_rel_error * 100:.0f}% | {model.points} |"
            )
        lines += ["", *_crossovers(data, models), *_predicted(frame, models)]
    lines += _lecture(lecture)
    return lines


def _crossovers(data: pd.DataFrame, models: dict[str, CostModel]) -> list[str]:
    lines = ["### Crossovers", ""]
    speed = speedups(data)
    base = models.get(BASELINE)
    fv = models.get("feature_vectorized")
    if base and fv and "feature_vectorized" in speed:
        n_star = crossover_n_x(base, fv, 1.0)
        measured = speed["feature_vectorized"].dropna()
        slower = measured[measured < 1]
        where = ", ".join(sorted({f"{n:,}" for (_m, n) in slower.index}, key=lambda s: int(s.replace(",", ""))))
        model_txt = "never, by the model" if n_star is None else f"n_x > {n_star:.1f} by the model"
        lines.append(
            f"- `feature_vectorized` beats `two_loop` once n_x is large enough to pay for NumPy's per-call cost "
            f"(about {fmt_seconds(fv.per_example_s)} per example against {fmt_seconds(base.per_element_s)} per "
            f"element of interpreted loop): {model_txt}. Measured slower than `two_loop` in "
            f"{slower.size} of {measured.size} cells" + (f", at n_x = {where}." if where else ".")
        )
    nl, ref = models.get("numba_loop"), models.get(REFERENCE)
    times = data[data["status"] == STATUS_OK].pivot_table(
        index=["m", "n_x"], columns="implementation", values="median_s", aggfunc="first"
    )
    if nl and ref and {"numba_loop", REFERENCE} <= set(times.columns):
        both = times[["numba_loop", REFERENCE]].dropna()
        wins = both[both["numba_loop"] < both[REFERENCE]]
        biggest = max((m * n for m, n in wins.index), default=0)
        lines.append(
            f"- `numba_loop` beats `{REFERENCE}` where NumPy's fixed cost per call "
            f"({fmt_seconds(ref.overhead_s)} against {fmt_seconds(nl.overhead_s)}) outweighs the loops: measured in "
            f"{len(wins)} of {len(both)} cells, up to m x n_x = {biggest:,} elements."
        )
    for name, claimed in CLAIMS.values():
        model = models.get(name)
        if claimed == 1 or not (base and model):
            continue
        n_star = crossover_n_x(base, model, HOLDS_FACTOR * claimed)
        text = (
            "never reaches it, by the model"
            if n_star is None
            else f"reaches it from n_x = {max(1.0, n_star):.0f} on, at large m, by the model"
        )
        measured = speed[name].dropna() if name in speed else pd.Series(dtype=float)
        held = sorted({n for _m, n, v in cell_items(measured) if v >= HOLDS_FACTOR * claimed})
        check = f"; measured: first at n_x = {held[0]:,}" if held else "; measured: in no cell"
        lines.append(f"- The ~{claimed:.0f}x claim ({fmt_speedup(HOLDS_FACTOR * claimed)} or more) {text}{check}.")
    return [*lines, ""]


def _predicted(frame: pd.DataFrame, models: dict[str, CostModel]) -> list[str]:
    skipped = headline(frame)
    skipped = skipped[~skipped["status"].isin([STATUS_OK, STATUS_FAILED_CHECK])]  # failures have their own section
    if skipped.empty:
        return []
    lines = [
        "### Cells not measured (predicted, not measured)",
        "",
        "The cut-off skipped these; the times are the *predictions* it made before skipping, never used as results.",
        "",
        "| implementation | m | n_x | status | predicted time per call |",
        "|---|---|---|---|---|",
    ]
    for _, r in skipped.sort_values(["implementation", "m", "n_x"]).iterrows():
        pred = r["predicted_s"]
        lines.append(
            f"| `{r['implementation']}` | {r['m']:,} | {r['n_x']:,} | {r['status']} | "
            f"{'*' + fmt_seconds(pred) + ' (predicted)*' if np.isfinite(pred) else 'n/a'} |"
        )
    return [*lines, ""]


def _lecture(lecture: pd.DataFrame | None) -> list[str]:
    if lecture is None or lecture.empty:
        return []
    t = lecture.set_index("variant")["median_s"]
    lines = [
        "### The lecture's demo: a 1,000,000-element dot product",
        "",
        "The ~300x comes from this demo: a Python for-loop against `np.dot`. "
        "Lecture figures are *quoted*, not measured.",
        "",
        "| variant | measured (median) | lecture (quoted) |",
        "|---|---|---|",
    ]
    for _, r in lecture.iterrows():
        quoted = LECTURE_SECONDS.get(str(r["variant"]))
        lines.append(f"| {r['label']} | {fmt_seconds(r['median_s'])} | {fmt_seconds(quoted) if quoted else '-'} |")
    if {"loop_numpy", "np_dot"} <= set(t.index):
        ratio = t["loop_numpy"] / t["np_dot"]
        quoted_ratio = LECTURE_SECONDS["loop_numpy"] / LECTURE_SECONDS["np_dot"]
        lines += [
            "",
            f"Measured ratio loop / np.dot: **{fmt_speedup(ratio)}** (the lecture: {fmt_speedup(quoted_ratio)}, "
            '"about 300 times").',
        ]
        if "loop_list" in t.index:
            lines.append(
                f"Over Python lists the same loop takes {fmt_seconds(t['loop_list'])}, so against that baseline "
                f"np.dot is {fmt_speedup(t['loop_list'] / t['np_dot'])}: indexing a NumPy array from Python boxes "
                "every element into a new scalar object, which is part of what the 1x baseline pays."
            )
    return [*lines, ""]
