"""The structure the code promises: one registry line adds an implementation everywhere; present/ names none."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analyse.analysis import analyse
from bench.base.results import COLUMNS
from bench.present.report import build_report
from implementations import REGISTRY, Goal, Implementation, registry
from tests.helpers import table_rows

ROOT = Path(__file__).resolve().parents[1]
CELLS = ((10, 10), (100, 100), (1_000, 100), (10_000, 100), (100_000, 200))


def _kernel() -> Implementation:
    return Implementation(
        name="dummy_kernel",
        propagate=REGISTRY["fully_vectorized"].propagate,
        summary="A kernel that exists only in this test.",
        layout_note="the dummy's own note on layouts",
        reads_of_x=1,
        goal=Goal(speedup=(("F", 1.2),)),
    )


def _peer() -> Implementation:
    return Implementation(
        name="dummy_peer",
        propagate=REGISTRY["fully_vectorized"].propagate,
        summary="A framework that exists only in this test.",
        role="peer",
    )


def _frame() -> pd.DataFrame:
    """Synthetic rows: the note's three implementations and the two dummies, both layouts, 1 thread."""
    rows: list[dict[str, Any]] = []
    for m, n_x in CELLS:
        full = 1e-5 + 1e-9 * m * n_x
        times = {
            "two_loop": 1e-6 + 1e-7 * m * n_x,
            "feature_vectorized": 1e-6 * m + 1e-9 * m * n_x,
            "fully_vectorized": full,
            "dummy_peer": full / 2,
        }
        for layout, kernel in (("C", full / 1.1), ("F", full / 1.5)):
            for name, t in {**times, "dummy_kernel": kernel}.items():
                row: dict[str, Any] = dict.fromkeys(COLUMNS)
                row |= {"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": layout}
                row |= {"threads": 1, "status": "ok", "median_s": t, "iqr_s": t / 100, "min_s": t, "rounds": 5}
                rows.append(row | {"loops": 1, "bytes_x": m * n_x * 8, "bw_fraction": 0.5})
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture
def dummies(monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry's own dict: the one line a new implementation adds, read by everything through REGISTRY.
    for impl in (_kernel(), _peer()):
        monkeypatch.setitem(registry._BY_NAME, impl.name, impl)


def _rows_naming(text: str, name: str) -> list[list[str]]:
    return [row for row in table_rows(text) if any(name in cell for cell in row)]


@pytest.mark.usefixtures("dummies")
def test_a_registered_implementation_appears_in_every_table_it_belongs_to(tmp_path: Path) -> None:
    a = analyse(_frame(), {"profile": "test"})
    # In the analysis: its kernel goal, its layouts, its model, its wins against the reference, the peers' tables.
    assert a.beyond is not None
    goal = a.beyond.checks[
        (a.beyond.checks["implementation"] == "dummy_kernel") & (a.beyond.checks["what"] == "speedup")
    ]
    assert goal["value"].iloc[0] == pytest.approx(1.5) and bool(goal["met"].iloc[0])
    layouts = a.beyond.layouts.set_index("implementation")
    assert layouts.loc["dummy_kernel", "c_over_f_median"] == pytest.approx(1.5 / 1.1)
    assert layouts.loc["dummy_kernel", "note"] == "the dummy's own note on layouts"
    assert "dummy_kernel" in a.models and "dummy_peer" in a.models
    wins = a.kernel_wins.set_index("implementation")
    assert wins.loc["dummy_kernel", "wins"] == len(CELLS)
    speedup = a.peers["speedup"]
    assert set(speedup["implementation"]) == {"dummy_peer"}
    assert speedup.dropna()["median"].tolist() == pytest.approx([2.0] * len(speedup.dropna()))
    # In the report: a column of the Beyond table, and rows of the model, layout and peers tables.
    text = build_report(a, tmp_path, tmp_path)
    header = next(row for row in table_rows(text) if row[:2] == ["layout", "cells"])
    assert "dummy_kernel / fully_vectorized, 1 thread" in header
    assert _rows_naming(text, "`dummy_kernel`") and "`dummy_kernel`: " in text
    assert any(row[0] == "`dummy_peer`" for row in table_rows(text))


def _source(folder: str) -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted((ROOT / folder).rglob("*.py"))]


def test_present_names_no_implementation() -> None:
    names = list(REGISTRY)
    found = [
        f"{path.name}: {name}"
        for path, text in _source("bench/present")
        for name in names
        if re.search(rf"\b{re.escape(name)}\b", text)
    ]
    assert found == []


def test_no_function_in_bench_is_longer_than_80_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, text in _source("bench")
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []
