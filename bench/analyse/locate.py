"""Where a verdict's threshold falls between two grid values, the cells to measure next to locate it.

A rule can only put its threshold at a measured value; with a grid in powers of ten the true
crossing may lie anywhere within a factor of ten. For each condition of each verdict whose
threshold is more than MAX_GAP from the nearest cell on the other side, this proposes cells on
that variable between the two: at the crossing the cost models predict where it lies inside the
gap, else at the gap's geometric middle (bisection). The run then times them (headline setting)
and the rule is found again over every measured cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.model import CostModel, fit_models
from bench.analyse.verdicts import Condition, Rule, Verdict, cell_variables, claim_verdicts
from bench.analyse.views import headline, split_off_grid
from bench.base.hierarchy import curve_of
from implementations import BASELINE

MAX_GAP = 1.5  # a threshold is located when the nearest cell on the other side is within this factor
SHAPES = 3  # cells proposed per condition: the same value of its variable at up to this many shapes
Cell = tuple[int, int]


def _gap(v: Verdict, c: Condition) -> tuple[float, float] | None:
    """(nearest value on the other side, the threshold) when they are more than MAX_GAP apart."""
    nearest = v.nearest_beyond(c)
    if nearest is None:
        return None
    low, high = sorted((nearest, c.value))
    return (nearest, c.value) if high / max(low, 1.0) > MAX_GAP else None


def _shape(c: Condition, edge: Cell, value: float) -> Cell:
    """A cell like `edge` (a cell at the threshold) with the condition's variable at `value`."""
    m, n = edge
    if c.variable == "n_x":
        return m, max(1, round(value))
    if c.variable == "m":
        return max(1, round(value)), n
    # m x n_x: keep the shape's smaller side, scale the larger.
    return (m, max(1, round(value / m))) if n >= m else (max(1, round(value / n)), n)


def _crossing(c: Condition, edge: Cell, bounds: tuple[float, float], v: Verdict, models: dict[str, CostModel]) -> float:
    """The value of the condition's variable where the models' speedup crosses the threshold, inside the gap."""
    low, high = sorted(bounds)
    middle = float(np.sqrt(max(low, 1.0) * high))
    base, impl = models.get(v.baseline), models.get(v.implementation)
    if base is None or impl is None:
        return middle
    xs = np.geomspace(max(low, 1.0), high, 41)[1:-1]
    cells = [_shape(c, edge, x) for x in xs]
    m = np.array([a for a, _ in cells], dtype=float)
    n = np.array([b for _, b in cells], dtype=float)
    above = base.predict_many(m, n) / impl.predict_many(m, n) >= v.threshold
    changes = np.flatnonzero(above[1:] != above[:-1])
    return float(np.sqrt(xs[changes[0]] * xs[changes[0] + 1])) if changes.size else middle


def locate_targets(verdicts: list[Verdict], models: dict[str, CostModel], measured: set[Cell]) -> list[Cell]:
    """Cells not yet measured that would bring each verdict's thresholds within MAX_GAP of a measured cell."""
    out: list[Cell] = []
    for v in verdicts:
        if v.rule is None or v.baseline != BASELINE:
            continue
        for c in v.rule.conditions:
            bounds = _gap(v, c)
            if bounds is None:
                continue
            cells = [(m, n) for m, n, _ in v.speedups]
            values = cell_variables(cells, 8)
            others = Rule(tuple(o for o in v.rule.conditions if o != c)).mask(values)
            # Cells at the threshold where the rule's other conditions hold: where this one decides.
            edges = [cell for cell, hit in zip(cells, (values[c.variable] == c.value) & others, strict=True) if hit]
            if not edges:
                continue
            picked = [edges[i] for i in np.linspace(0, len(edges) - 1, min(SHAPES, len(edges))).round().astype(int)]
            for edge in dict.fromkeys(picked):
                cell = _shape(c, edge, _crossing(c, edge, bounds, v, models))
                if cell not in measured and cell not in out:
                    out.append(cell)
    return out


def locate_run(frame: pd.DataFrame, meta: dict[str, Any]) -> list[Cell]:
    """The cells a run should time next to locate its verdicts' thresholds (none when all are located).

    Only what locating needs: the verdicts and the models over the cells the analysis fits on
    (off-grid cells left out), without the held-out refits the report's errors need.
    """
    seen, _ = split_off_grid(frame, meta)
    models = fit_models(headline(seen), curve_of(meta, 1))
    measured = {(int(m), int(n)) for m, n in zip(frame["m"], frame["n_x"], strict=True)}
    return locate_targets(claim_verdicts(seen), models, measured)
