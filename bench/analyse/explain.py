"""Why the speedups are what they are: the cost models' tables and the figures the Why section states.

The models are fitted once per analysis (bench.analyse.analysis); everything here reads them.
Which claim is "partial" and which "full" is read off the implementations: the claimed one
whose step still loops in Python over the examples, and the claimed one that does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.model import CostModel
from bench.analyse.verdicts import Verdict
from bench.analyse.views import fmt_bytes, fmt_seconds, headline
from bench.base.claims import CLAIMS
from bench.base.hierarchy import Bandwidth, Hierarchy, out_of_cache_bytes
from bench.base.results import STATUS_FAILED_CHECK, STATUS_OK
from bench.measure.lecture import LECTURE_SECONDS
from implementations import BASELINE, REFERENCE, REGISTRY

MODEL_CSV = "model.csv"  # every parameter: value, unit, source
MODEL_ERRORS_CSV = "model_errors.csv"  # per implementation: errors on seen, left-out and off-grid cells
LEVELS_CSV = "model_levels.csv"
KERNEL_WINS_CSV = "kernel_wins.csv"
PREDICTED_CSV = "predicted.csv"
# Targets for the fit over the measured cells of the headline slice (checked in the report, not in tests).
TARGET_MEDIAN_ERROR = 0.10
TARGET_WORST_ERROR = 0.35
FULL_THRESHOLD = 150.0  # half the note's ~300x: where the full claim starts to hold
PARTIAL_REACH = 5.0  # the speedup at which partial vectorisation is said to pay


def _size(nbytes: float) -> str:
    return fmt_bytes(nbytes) if np.isfinite(nbytes) else "memory"


def level_points(model: CostModel) -> list[tuple[float, float]]:
    """(a working set at the middle of each measured level, its largest size or inf) for the per-level costs."""
    bw = model.bandwidth
    if bw is None or not bw.level_bytes:
        return []
    out, low = [], float(min(bw.sizes))
    for size in bw.level_bytes:
        mid = np.sqrt(low * size) if np.isfinite(size) else max(low * 4, float(max(bw.sizes)))
        out.append((float(mid), float(size)))
        low = float(size) if np.isfinite(size) else low
    return out


def _extras(model: CostModel) -> str:
    text = ""
    if model.walk_stall > 0:
        text += f"; a strided walk waits {model.walk_stall:.2g} of a line read per element once its n_x lines " + (
            "outgrow a quarter of L2 (all of it at L2's capacity; a power-of-two stride fills it sooner)"
            if model.facts.compiled
            else "outgrow L1 (all of it at L2's capacity; a power-of-two stride fills them sooner)"
        )
    if model.alloc_per_example_s > 0:
        text += f"; {fmt_seconds(model.alloc_per_example_s)} more per example past glibc's mmap threshold"
    return text


def readable(name: str, model: CostModel) -> str:
    """The model in the unit that explains each implementation best (model_errors.csv's `readable`)."""
    call = f"call {fmt_seconds(model.call_s)}"
    impl = REGISTRY.get(name)
    loops = impl is not None and impl.python_loops
    if loops and model.per_example_s < 10 * model.per_element_s:
        # Two interpreted multiply-adds per element (one for z, one for dw), each a few bytecodes.
        return (
            f"{model.per_element_s * 1e9 / 2:.0f} ns per interpreted multiply-add (2 per element), "
            f"{fmt_seconds(model.per_example_s)} per example; {call}" + _extras(model)
        )
    if loops:
        return (
            f"{fmt_seconds(model.per_example_s)} per Python-level iteration (example), "
            f"+ {model.per_element_s * 1e9:.2g} ns per element; {call}" + _extras(model)
        )
    points = level_points(model)
    if points:
        sizes = " / ".join(("in " if not np.isfinite(b) else "") + _size(b) for _, b in points)
        costs = " / ".join(f"{model.element_s(mid) * 1e9:.2g}" for mid, _ in points)
        reads = f"{model.facts.reads:g} read" + ("" if model.facts.reads == 1 else "s")
        text = f"{call}; per element {costs} ns with X up to {sizes} ({reads} of X)"
    else:
        text = f"{call}; {model.per_element_s * 1e9:.2g} ns per element"
    if model.per_example_s > 0:
        text += f"; {fmt_seconds(model.per_example_s)} per example"
    return text + _extras(model)


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _signed(model: CostModel, rows: pd.DataFrame) -> np.ndarray:
    """predicted / measured - 1 on the ok rows given."""
    predicted = model.predict_many(rows["m"].to_numpy(float), rows["n_x"].to_numpy(float))
    return np.asarray(predicted / rows["median_s"].to_numpy(float) - 1.0)


def _gbps(bandwidth: Bandwidth | None, nbytes: float) -> float | None:
    return float(1e-9 / bandwidth.seconds_per_byte(np.array([nbytes]))[0]) if bandwidth is not None else None


def level_table(models: dict[str, CostModel]) -> pd.DataFrame:
    """model_levels.csv: each implementation's cost per element streamed from each measured level of the memory."""
    rows = [
        {
            "implementation": name,
            "level": k + 1,
            "up_to_bytes": _finite(size),
            "read_gbps": _gbps(model.bandwidth, mid),
            "per_element_s": model.element_s(mid),
        }
        for name, model in models.items()
        for k, (mid, size) in enumerate(level_points(model))
    ]
    return pd.DataFrame(rows, columns=["implementation", "level", "up_to_bytes", "read_gbps", "per_element_s"])


def parameter_table(models: dict[str, CostModel]) -> pd.DataFrame:
    """model.csv: every number of every model, with its unit, its source and what it is."""
    rows = [
        {"implementation": name, "parameter": p.name, "value": p.value, "unit": p.unit, "source": p.source,
         "meaning": p.meaning}
        for name, model in models.items()
        for p in model.parameters()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["implementation", "parameter", "value", "unit", "source", "meaning"])


def _errors(rel: np.ndarray) -> tuple[float, float]:
    return (float(np.median(np.abs(rel))), float(np.abs(rel).max())) if rel.size else (np.nan, np.nan)


def model_table(models: dict[str, CostModel], data: pd.DataFrame, off_grid: pd.DataFrame) -> pd.DataFrame:
    """model_errors.csv: per implementation, the errors on the cells fitted, left out one by one, and never fitted.

    `data` holds the cells the fit saw, `off_grid` the cells it did not (measured in the same run).
    """
    rows = []
    for name, model in models.items():
        seen = data[(data["status"] == STATUS_OK) & (data["implementation"] == name)]
        unseen = off_grid[(off_grid["status"] == STATUS_OK) & (off_grid["implementation"] == name)]
        rel, rel_off = _signed(model, seen), _signed(model, unseen)
        worst = int(np.argmax(np.abs(rel)))
        off_median, off_worst = _errors(rel_off)
        worst_off = unseen.iloc[int(np.argmax(np.abs(rel_off)))] if rel_off.size else None
        rows.append(
            {
                "implementation": name,
                "parameters": model.fitted_count,
                "cells": model.points,
                "median_rel_error": model.median_rel_error,
                "worst_rel_error": model.max_rel_error,
                "worst_m": int(seen["m"].iloc[worst]),
                "worst_n_x": int(seen["n_x"].iloc[worst]),
                "worst_signed_error": float(rel[worst]),
                "held_out_median_error": model.held_out_median_error,
                "held_out_worst_error": model.held_out_max_error,
                "off_grid_cells": int(rel_off.size),
                "off_grid_median_error": off_median,
                "off_grid_worst_error": off_worst,
                "off_grid_worst_m": int(worst_off["m"]) if worst_off is not None else None,
                "off_grid_worst_n_x": int(worst_off["n_x"]) if worst_off is not None else None,
                "meets_targets": model.median_rel_error <= TARGET_MEDIAN_ERROR
                and model.max_rel_error <= TARGET_WORST_ERROR,
                "readable": readable(name, model),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Partial:
    """Partial vectorisation by the model: what an example costs, and where it breaks even and pays 5x."""

    implementation: str
    per_example_s: float
    per_madd_s: float  # the baseline's cost per interpreted multiply-add (two per element)
    break_even_n_x: float
    reach_n_x: float | None  # where it reaches PARTIAL_REACH at m = at_m; None: never, by the model
    at_m: float
    rule: str


@dataclass(frozen=True)
class Full:
    """Full vectorisation by the model: a fixed cost per step, a cost per element, and the cap in memory."""

    implementation: str
    call_s: float
    per_element_in_cache_s: float
    baseline_per_element_s: float
    elements_for_threshold: float
    out_of_cache_bytes: float
    reads_at_memory_speed: float  # the per-element cost in memory, as reads of X at memory's bandwidth
    cap: float
    alloc_per_example_s: float
    rule: str


def claimed(python_loops: bool) -> str | None:
    """The claimed implementation (not the baseline) whose step does, or does not, loop in Python."""
    for name, claim in CLAIMS.values():
        impl = REGISTRY.get(name)
        if claim > 1 and impl is not None and impl.python_loops == python_loops:
            return name
    return None


def _rule(verdicts: list[Verdict], name: str) -> str:
    return next((v.rule_text for v in verdicts if v.implementation == name), "n/a")


def partial_figures(models: dict[str, CostModel], data: pd.DataFrame, verdicts: list[Verdict]) -> Partial | None:
    name = claimed(python_loops=True)
    base, fv = models.get(BASELINE), models.get(name or "")
    if base is None or fv is None or name is None:
        return None
    # Speedup at large m: (base per element x n_x + base per example) / (fv per example + fv per element x n_x).
    n_grid = np.geomspace(1, 1e6, 600)
    big_m = float(data["m"].max())
    speed = base.predict_many(np.full_like(n_grid, big_m), n_grid) / fv.predict_many(
        np.full_like(n_grid, big_m), n_grid
    )
    reach = n_grid[speed >= PARTIAL_REACH]
    return Partial(
        implementation=name,
        per_example_s=fv.per_example_s,
        per_madd_s=base.per_element_s / 2,
        break_even_n_x=fv.per_example_s / max(base.per_element_s, 1e-30),
        reach_n_x=float(reach[0]) if reach.size else None,
        at_m=big_m,
        rule=_rule(verdicts, name),
    )


def full_figures(
    models: dict[str, CostModel], meta: dict[str, Any], hierarchy: Hierarchy | None, verdicts: list[Verdict]
) -> Full | None:
    name = claimed(python_loops=False)
    base, full = models.get(BASELINE), models.get(name or "")
    if base is None or full is None or name is None:
        return None
    margin = base.element_s(1e4) - FULL_THRESHOLD * full.element_s(1e4)
    in_memory = full.element_s(1e12)
    reads = (
        in_memory * hierarchy.memory_gbps * 1e9 / full.itemsize if hierarchy is not None else float("nan")
    )  # fmt: skip
    return Full(
        implementation=name,
        call_s=full.call_s,
        per_element_in_cache_s=full.element_s(1e4),
        baseline_per_element_s=base.per_element_s,
        elements_for_threshold=FULL_THRESHOLD * full.call_s / margin if margin > 0 else float("inf"),
        out_of_cache_bytes=out_of_cache_bytes(meta),
        reads_at_memory_speed=reads,
        cap=base.element_s(1e12) / in_memory if in_memory > 0 else float("inf"),
        alloc_per_example_s=full.alloc_per_example_s,
        rule=_rule(verdicts, name),
    )


def kernel_wins(data: pd.DataFrame, models: dict[str, CostModel]) -> pd.DataFrame:
    """Per kernel on one thread: the cells where it beats the reference, and the fixed costs that explain them."""
    columns = ["implementation", "cells", "wins", "largest_win_elements", "call_s", "reference_call_s"]
    times = data[data["status"] == STATUS_OK].pivot_table(
        index=["m", "n_x"], columns="implementation", values="median_s", aggfunc="first"
    )
    reference = models.get(REFERENCE)
    rows = []
    for name, impl in REGISTRY.items():
        if impl.role != "kernel" or impl.threading != "none" or name not in models or reference is None:
            continue
        if not {name, REFERENCE} <= set(times.columns):
            continue
        both = times[[name, REFERENCE]].dropna()
        wins = both[both[name] < both[REFERENCE]]
        rows.append(
            {
                "implementation": name,
                "cells": len(both),
                "wins": len(wins),
                "largest_win_elements": max((m * n for m, n in wins.index), default=0),
                "call_s": models[name].call_s,
                "reference_call_s": reference.call_s,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def predicted_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Headline cells the cut-off skipped, with the prediction it made (failures have their own section)."""
    skipped = headline(frame)
    skipped = skipped[~skipped["status"].isin([STATUS_OK, STATUS_FAILED_CHECK])]
    return skipped.sort_values(["implementation", "m", "n_x"])[["implementation", "m", "n_x", "status", "predicted_s"]]


@dataclass(frozen=True)
class Lecture:
    """The lecture's demo as measured here, beside the lecture's own (quoted) figures."""

    table: pd.DataFrame  # variant, label, median_s, quoted_s (NaN where the lecture gives none)
    ratio: float | None  # loop over a NumPy array / np.dot, measured
    quoted_ratio: float  # the same ratio in the lecture
    list_s: float | None  # the loop over a Python list, measured
    list_ratio: float | None  # that loop / np.dot


def lecture_figures(lecture: pd.DataFrame | None) -> Lecture | None:
    if lecture is None or lecture.empty:
        return None
    t = lecture.set_index("variant")["median_s"]
    table = lecture[["variant", "label", "median_s"]].assign(
        quoted_s=[LECTURE_SECONDS.get(str(v), np.nan) for v in lecture["variant"]]
    )
    ratio = float(t["loop_numpy"] / t["np_dot"]) if {"loop_numpy", "np_dot"} <= set(t.index) else None
    listed = ratio is not None and "loop_list" in t.index
    return Lecture(
        table=table,
        ratio=ratio,
        quoted_ratio=LECTURE_SECONDS["loop_numpy"] / LECTURE_SECONDS["np_dot"],
        list_s=float(t["loop_list"]) if listed else None,
        list_ratio=float(t["loop_list"] / t["np_dot"]) if listed else None,
    )
