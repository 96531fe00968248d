"""Cells between the grid's sizes: timed in the headline setting only, never fitted; the model and rules meet them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.analyse.analysis import analyse
from bench.analyse.locate import locate_targets
from bench.analyse.views import split_off_grid
from bench.base.results import COLUMNS
from bench.measure.profiles import PROFILES
from bench.measure.runner import RunConfig, plan
from implementations import REGISTRY


def test_off_grid_cells_get_the_headline_setting_only() -> None:
    config = RunConfig(
        profile=PROFILES["quick"],
        implementations=(REGISTRY["fully_vectorized"], REGISTRY["two_loop"]),
        cells=((1, 1), (10, 10)),
        dtypes=("float64", "float32"),
        layouts=("C", "F"),
        threads=(1, 2),
        seed=1,
        out=Path("unused"),
        off_grid=((3, 3), (10, 10)),  # a cell already on the grid stays a grid cell
    )
    tasks = plan(config)
    off = [t for t in tasks if (t.m, t.n_x) == (3, 3)]
    assert {(t.implementation, t.dtype, t.layout, t.threads) for t in off} == {
        ("fully_vectorized", "float64", "C", 1),
        ("two_loop", "float64", "C", 1),
    }
    assert len([t for t in tasks if (t.m, t.n_x) == (10, 10)]) > 2
    # Smallest cell first, one cell's rows together.
    cells = [(t.m, t.n_x) for t in tasks]
    assert cells == sorted(cells, key=lambda c: (c[0] * c[1], c[0]))


def _row(name: str, m: int, n_x: int, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row |= {"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 1}
    return row | {"status": "ok", "median_s": seconds, "iqr_s": 0.0, "min_s": seconds, "rounds": 5, "loops": 1}


def test_the_analysis_fits_the_grid_and_tests_on_the_off_grid_cells() -> None:
    grid = [(m, n) for m in (1, 10, 100, 1_000) for n in (1, 10, 100, 1_000)]
    off = [(3, 3), (30, 300), (300, 30)]
    rows = []
    for m, n in [*grid, *off]:
        rows += [_row("two_loop", m, n, 1e-6 + 1e-7 * m * n), _row("fully_vectorized", m, n, 1e-5 + 1e-10 * m * n)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    meta = {"off_grid_cells": [list(c) for c in off]}
    seen, unseen = split_off_grid(frame, meta)
    assert len(unseen) == 6 and len(seen) == 32
    a = analyse(frame, meta)
    errors = a.model_table.set_index("implementation")
    assert errors.loc["two_loop", "off_grid_cells"] == 3
    assert errors["off_grid_worst_error"].to_numpy(float).max() < 0.01  # the times are the models' own form
    assert set(zip(a.frame["m"], a.frame["n_x"], strict=True)) == set(grid)  # verdicts and plots: the grid only
    checks = a.rule_checks.set_index("implementation")
    # On the grid ~300x (150x or more) holds from m x n_x = 100,000: 1e-2 / 2e-5 = 500x, and 1e-3 / 1.1e-5 = 91x
    # below. Off the grid, 9,000 elements: (1e-6 + 9e-4) / (1e-5 + 9e-7) = 83x, and 9 elements: 1x; no exception.
    full = checks.loc["fully_vectorized"]
    assert (full["cells"], full["agree"], full["exceptions"]) == (3, 3, "")
    assert "100,000" in full["rule"]
    assert a.claims.set_index("implementation").loc["fully_vectorized", "cells"] == 16


def test_locating_proposes_cells_where_the_models_cross_the_threshold_inside_the_gap() -> None:
    grid = [(m, n) for m in (1, 10, 100, 1_000) for n in (1, 10, 100, 1_000)]
    rows = []
    for m, n in grid:
        rows += [_row("two_loop", m, n, 1e-6 + 1e-7 * m * n), _row("fully_vectorized", m, n, 1e-5 + 1e-10 * m * n)]
    a = analyse(pd.DataFrame(rows, columns=list(COLUMNS)), {})
    full = next(v for v in a.verdicts if v.implementation == "fully_vectorized")
    assert full.rule is not None and full.rule.text() == "m x n_x >= 100,000"
    assert "located within 10x" in full.headline()
    targets = locate_targets(a.verdicts, a.models, set(grid))
    # (1e-6 + 1e-7 e) / (1e-5 + 1e-10 e) = 150 at e = 17,635 elements: inside the gap (10,000, 100,000).
    products = [m * n for m, n in targets]
    assert products and all(abs(p / 17_635 - 1) < 0.3 for p in products)
    assert not set(targets) & set(grid)
    # Cells on each side within 1.5x: 17,000 elements give 145x, 18,000 give 153x; the rule moves, nothing is left.
    for m, n in ((100, 170), (100, 180)):
        rows += [_row("two_loop", m, n, 1e-6 + 1e-7 * m * n), _row("fully_vectorized", m, n, 1e-5 + 1e-10 * m * n)]
    b = analyse(pd.DataFrame(rows, columns=list(COLUMNS)), {})
    located = next(v for v in b.verdicts if v.implementation == "fully_vectorized")
    assert located.rule is not None and located.rule.text() == "m x n_x >= 18,000"
    assert locate_targets(b.verdicts, b.models, {*grid, (100, 170), (100, 180)}) == []
