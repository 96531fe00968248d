"""How robust is this answer: the robustness study's factors, and what each does to each verdict.

The study (robustness.csv, measured by `python -m bench robustness`) gives factors; this module
applies them to the run's cells and decides, per claim and effect, whether the verdict's region
would change. Results applied to this run's cells are *derived*: what the factor would do, not
measured. present/ turns the records into sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.verdicts import Verdict
from bench.analyse.views import cell_items, headline, speedups
from bench.base.constants import ALIASING_STRIDE_BYTES, DEFAULT_MMAP_THRESHOLD_BYTES
from implementations import BASELINE, REFERENCE, REGISTRY

IMPACTS_CSV = "robustness_impacts.csv"
NOISY_IQR = 0.25  # an IQR above this share of the median marks a row measured on a busy machine
# Set aliasing needs more features than a cache set has ways (8 to 12 in L1 on common x86 cores).
ALIASING_MIN_N_X = 16

Cell = tuple[int, int]


@dataclass(frozen=True)
class Impact:
    """What one effect does to one claim's verdict.

    outcome: unaffected (no cell of it is exposed), unknown (the study did not measure it),
    unchanged, changes (cells would cross the threshold), shrinks (fewer cells would hold),
    settled (a re-run would not cross it), could_move (some cells are within the spread), or
    not_measured (the run has no cell of the claim).
    """

    effect: str
    implementation: str
    claimed: float
    threshold: float
    holds: str  # the verdict's region, in words
    outcome: str
    cells: int = 0  # cells the effect was applied to (or the claim's cells)
    affected: tuple[Cell, ...] = ()
    held: int = 0  # of the affected cells, those already at the threshold
    gain: tuple[Cell, ...] = ()
    loss: tuple[Cell, ...] = ()
    factor: float = float("nan")
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlignmentScale:
    """A kernel and the reference, each timed with X where the grid puts it and on a cache line, in one cell.

    scale: what X on a line would do to the kernel's speedup over the reference (its factor over the
    reference's; *derived*, not itself measured).
    """

    implementation: str
    layout: str
    m: int
    n_x: int
    factor: float
    reference_factor: float

    @property
    def scale(self) -> float:
        return self.factor / self.reference_factor


@dataclass(frozen=True)
class Robustness:
    """The study's measured rows, the process spread, and each effect's impact on each verdict."""

    study: pd.DataFrame  # the ok rows of robustness.csv, with `noise` and `beyond_noise`
    study_cpus: tuple[str, ...]
    itemsize: int
    aliasing_cells: tuple[Cell, ...]  # this run's cells with an aliasing stride and n_x >= ALIASING_MIN_N_X
    impacts: tuple[Impact, ...]
    alignment: tuple[AlignmentScale, ...] = ()

    def impacts_of(self, effect: str) -> list[Impact]:
        return [i for i in self.impacts if i.effect == effect]

    def table(self) -> pd.DataFrame:
        """robustness_impacts.csv: one row per effect and claim."""
        rows = [
            {
                "effect": i.effect,
                "implementation": i.implementation,
                "claimed": i.claimed,
                "threshold": i.threshold,
                "holds": i.holds,
                "outcome": i.outcome,
                "cells": i.cells,
                "affected": len(i.affected),
                "held": i.held,
                "would_reach": len(i.gain),
                "would_fall_below": len(i.loss),
                "factor": i.factor,
            }
            for i in self.impacts
        ]
        return pd.DataFrame(rows)


def holds_text(v: Verdict) -> str:
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


def largest_temporary(implementation: str, m: int, n_x: int) -> int:
    """Elements of the largest array one step allocates (0: none), from the implementation's `temporaries`."""
    impl = REGISTRY.get(implementation)
    kind = impl.temporaries if impl is not None else "features"
    return {"examples": max(m, n_x), "features": n_x, "none": 0}[kind]


def speeds(frame: pd.DataFrame, implementation: str, baseline: str = BASELINE) -> dict[Cell, float]:
    """Measured speedup over `baseline` per (m, n_x), headline setting."""
    speed = speedups(headline(frame), baseline)
    if implementation not in speed:
        return {}
    return {(m, n_x): s for m, n_x, s in cell_items(speed[implementation].dropna())}


def crossings(speed: dict[Cell, float], cells: set[Cell], threshold: float, scale: float) -> tuple[list[Cell], ...]:
    """Among `cells`, those that would start to hold and those that would stop, with speedups times `scale`."""
    gain = [c for c, s in speed.items() if c in cells and s < threshold <= s * scale]
    loss = [c for c, s in speed.items() if c in cells and s * scale < threshold <= s]
    return gain, loss


def _impact(effect: str, v: Verdict, outcome: str, **values: Any) -> Impact:
    return Impact(effect, v.implementation, v.claimed, v.threshold, holds_text(v), outcome, **values)


def _moved(gain: Sequence[Cell], loss: Sequence[Cell]) -> str:
    return "changes" if gain or loss else "unchanged"


def allocator_impacts(
    study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict], itemsize: int
) -> list[Impact]:
    rows = study[study["effect"] == "allocator"]
    if rows.empty:
        return []
    exposed: dict[str, float] = {}  # implementation -> the largest factor measured above the threshold
    where: dict[str, dict[str, int]] = {}
    for r in rows.to_dict("records"):
        name = str(r["implementation"])
        above = largest_temporary(name, int(r["m"]), int(r["n_x"])) * itemsize > DEFAULT_MMAP_THRESHOLD_BYTES
        if above and float(r["factor"]) > exposed.get(name, 0.0):
            exposed[name] = float(r["factor"])
            where[name] = {k: int(r[k]) for k in ("m", "n_x", "m_b", "n_x_b")}
    out = []
    for v in verdicts:
        speed = speeds(frame, v.implementation)
        affected = sorted(
            c for c in speed if largest_temporary(v.implementation, *c) * itemsize > DEFAULT_MMAP_THRESHOLD_BYTES
        )
        if not affected:
            out.append(_impact("allocator", v, "unaffected"))
            continue
        held = sum(1 for c in affected if speed[c] >= v.threshold)
        factor = exposed.get(v.implementation)
        if factor is None:
            out.append(_impact("allocator", v, "unknown", cells=len(affected), affected=tuple(affected), held=held))
            continue
        gain, loss = crossings(speed, set(affected), v.threshold, factor)
        out.append(
            _impact("allocator", v, _moved(gain, loss), cells=len(affected), affected=tuple(affected), held=held,
                    gain=tuple(gain), loss=tuple(loss), factor=factor, detail={"where": where[v.implementation]})
        )  # fmt: skip
    return out


def aliasing_cells(frame: pd.DataFrame, itemsize: int) -> list[Cell]:
    """Cells of the headline setting whose C-order row stride is a multiple of the aliasing stride."""
    data = headline(frame)
    if set(data["layout"]) != {"C"}:
        return []
    return sorted(
        {
            (int(m), int(n))
            for m, n in data[["m", "n_x"]].itertuples(index=False)
            if (int(m) * itemsize) % ALIASING_STRIDE_BYTES == 0 and int(n) >= ALIASING_MIN_N_X
        }
    )


def power_of_two_impacts(
    study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict], cells: list[Cell]
) -> list[Impact]:
    rows = study[study["effect"] == "power_of_two"]
    if rows.empty or not cells:
        return []
    named = rows[(rows["m"] == rows["n_x"]) & (rows["m_b"] == rows["n_x_b"])]
    use = named if not named.empty else rows
    factors = {str(r["implementation"]): float(r["factor"]) for r in use.to_dict("records")}
    base = factors.get(BASELINE, 1.0)
    out = []
    for v in verdicts:
        speed = speeds(frame, v.implementation)
        affected = [c for c in cells if c in speed]
        if v.implementation not in factors:
            out.append(_impact("power_of_two", v, "unknown"))
        elif not affected:
            out.append(_impact("power_of_two", v, "unaffected"))
        else:
            gain, loss = crossings(speed, set(affected), v.threshold, factors[v.implementation] / base)
            out.append(
                _impact("power_of_two", v, _moved(gain, loss), cells=len(affected), affected=tuple(affected),
                        gain=tuple(gain), loss=tuple(loss), factor=factors[v.implementation] / base,
                        detail={"own": factors[v.implementation], "baseline": base})
            )  # fmt: skip
    return out


def baseline_style_impacts(
    study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict], lists_verdicts: Sequence[Verdict]
) -> list[Impact]:
    rows = study[study["effect"] == "baseline_style"]
    if rows.empty:
        return []
    low, high = float(rows["factor"].min()), float(rows["factor"].max())
    other_baseline = str(rows["implementation_b"].iloc[0])
    measured = {v.implementation: v for v in lists_verdicts if v.cells > 0 and v.baseline == other_baseline}
    out = []
    for v in verdicts:
        other = measured.get(v.implementation)
        speed = speeds(frame, v.implementation)
        held = sum(s >= v.threshold for s in speed.values())
        if other is not None:
            held_lists = sum(s >= v.threshold for s in speeds(frame, v.implementation, other.baseline).values())
            detail = {"baseline": other.baseline, "holds_other": holds_text(other), "held_other": held_lists,
                      "cells_other": other.cells, "low": low, "high": high, "measured": True}  # fmt: skip
            outcome = "unchanged" if holds_text(v) == holds_text(other) else "changes"
            out.append(_impact("baseline_style", v, outcome, cells=v.cells, held=held, detail=detail))
            continue
        if not speed:
            out.append(_impact("baseline_style", v, "not_measured"))
            continue
        at_high = sum(s / high >= v.threshold for s in speed.values())
        at_low = sum(s / low >= v.threshold for s in speed.values())
        detail = {"baseline": other_baseline, "low": low, "high": high, "at_high": at_high, "at_low": at_low,
                  "measured": False}  # fmt: skip
        outcome = "unchanged" if at_high == held else "shrinks"
        out.append(_impact("baseline_style", v, outcome, cells=len(speed), held=held, detail=detail))
    return out


def process_spread(study: pd.DataFrame) -> dict[str, float]:
    """implementation -> slowest / fastest median over fresh processes."""
    return {
        str(r["implementation"]): float(r["factor"]) for r in study[study["effect"] == "process"].to_dict("records")
    }


def process_impacts(study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict]) -> list[Impact]:
    spread = process_spread(study)
    if not spread:
        return []
    worst = max(spread.values())
    base = spread.get(BASELINE, worst)
    out = []
    for v in verdicts:
        speed = speeds(frame, v.implementation)
        if not speed:
            out.append(_impact("process", v, "not_measured"))
            continue
        band = spread.get(v.implementation, worst) * base
        near = [c for c, s in speed.items() if v.threshold / band <= s < v.threshold * band]
        out.append(
            _impact("process", v, "could_move" if near else "settled", cells=len(speed), affected=tuple(near),
                    factor=band, detail={"own_spread": v.implementation in spread})
        )  # fmt: skip
    return out


def alignment_scales(study: pd.DataFrame) -> list[AlignmentScale]:
    """Each alignment row of a kernel paired with the reference's in the same cell and layout."""
    rows = study[study["effect"] == "alignment"]
    key = ["layout", "m", "n_x"]
    reference = {
        tuple(r[k] for k in key): float(r["factor"])
        for r in rows[rows["implementation"] == REFERENCE].to_dict("records")
    }
    out = []
    for r in rows[rows["implementation"] != REFERENCE].to_dict("records"):
        other = reference.get(tuple(r[k] for k in key))
        if other is not None:
            out.append(
                AlignmentScale(
                    str(r["implementation"]), str(r["layout"]), int(r["m"]), int(r["n_x"]), float(r["factor"]), other
                )
            )
    return out


def beyond_noise(study: pd.DataFrame) -> pd.DataFrame:
    """The study's rows with `noise` (the larger process spread of the two sides) and whether the factor clears it.

    An effect smaller than the spread between fresh processes is not told apart from noise; on a
    busy machine the medians alone can clear it, so the minima must clear it too, in the same direction.
    """
    spread = process_spread(study)
    worst = max(spread.values(), default=1.0)
    noise: list[float] = []
    clear: list[bool | float] = []  # NaN for the process rows: nothing to clear
    iqr: list[float] = []
    for r in study.to_dict("records"):
        side = max(spread.get(str(r["implementation"]), worst), spread.get(str(r["implementation_b"]), worst))
        both = [float(r["factor"])] + ([float(r["factor_min"])] if pd.notna(r.get("factor_min")) else [])
        process = r["effect"] == "process"
        noise.append(np.nan if process else side)
        clear.append(np.nan if process else all(f > side for f in both) or all(f < 1 / side for f in both))
        iqr.append(max(float(r["iqr_a_s"]) / float(r["time_a_s"]), float(r["iqr_b_s"]) / float(r["time_b_s"])))
    return study.assign(noise=noise, beyond_noise=clear, iqr_share=iqr, noisy=[s > NOISY_IQR for s in iqr])


def robustness(
    study: pd.DataFrame, frame: pd.DataFrame, verdicts: Sequence[Verdict], lists_verdicts: Sequence[Verdict]
) -> Robustness:
    """The study's ok rows judged against the process spread, and every effect's impacts on the verdicts."""
    data = headline(frame)
    itemsize = int(np.dtype(str(data["dtype"].iloc[0])).itemsize) if not data.empty else 8
    cells = aliasing_cells(frame, itemsize)
    impacts = [
        *allocator_impacts(study, frame, verdicts, itemsize),
        *power_of_two_impacts(study, frame, verdicts, cells),
        *baseline_style_impacts(study, frame, verdicts, lists_verdicts),
        *process_impacts(study, frame, verdicts),
    ]
    cpus = tuple(sorted({str(c) for c in study["cpu"].dropna()})) if "cpu" in study else ()
    return Robustness(beyond_noise(study), cpus, itemsize, tuple(cells), tuple(impacts), tuple(alignment_scales(study)))
