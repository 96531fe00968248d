"""Reproducibility of two runs: overlapping intervals, spread, and rules that differ only through uncertain cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.analyse.reproduce import reproduce_summary, rules_compared, speedup_pairs
from bench.measure.estimates import SPEEDUP_COLUMNS


def _speedups(folder: Path, values: dict[tuple[int, int], tuple[float, float, float, bool]]) -> Path:
    folder.mkdir()
    rows = [
        {"implementation": "fully_vectorized", "baseline": "two_loop", "m": m, "n_x": n, "dtype": "float64",
         "layout": "C", "threads": 1, "speedup": s, "ci_low": lo, "ci_high": hi, "ci_level": 0.98, "pairs": 10,
         "paired": True, "threshold": 150.0, "unstable": False, "uncertain": u}
        for (m, n), (s, lo, hi, u) in values.items()
    ]  # fmt: skip
    pd.DataFrame(rows, columns=list(SPEEDUP_COLUMNS)).to_csv(folder / "speedups.csv", index=False)
    (folder / "results.csv").write_text("implementation\n")
    return folder


def test_overlap_spread_and_the_worst_cell(tmp_path: Path) -> None:
    a = _speedups(tmp_path / "a", {(10, 10): (1.0, 0.9, 1.1, False), (100, 100): (200.0, 190, 210, False)})
    b = _speedups(tmp_path / "b", {(10, 10): (1.05, 1.0, 1.1, False), (100, 100): (400.0, 380, 420, False)})
    pairs = speedup_pairs(a, b, "a", "b")
    assert pairs["overlap"].tolist() == [True, False]
    assert pairs["spread"].tolist() == [1.05, 2.0]
    summary = reproduce_summary(pairs).set_index("scope")
    assert summary.loc["headline", "overlapping"] == 1 and summary.loc["headline", "cells"] == 2
    assert summary.loc["headline", "spread_worst"] == 2.0
    assert "m=100 n_x=100" in str(summary.loc["headline", "worst_cell"])
    assert not summary.loc["headline", "agrees"]


def _verdict(rule: list[tuple[str, str, int]], text: str) -> dict[str, Any]:
    return {
        "implementation": "fully_vectorized",
        "rule": {"all": [{"variable": v, "op": o, "value": x} for v, o, x in rule]},
        "rule_text": text,
    }


def test_rules_that_differ_only_on_uncertain_cells_reproduce(tmp_path: Path) -> None:
    cells = {(m, n): (300.0 if m * n >= 10_000 else 10.0, 0.0, 0.0, False) for m in (10, 100, 1000) for n in (10, 100)}
    cells[(1000, 10)] = (160.0, 140.0, 180.0, True)  # the only cell the two rules disagree on
    a = _speedups(tmp_path / "a", cells)
    b = _speedups(tmp_path / "b", cells)
    pairs = speedup_pairs(a, b, "a", "b")
    rule_a = _verdict([("m*n_x", ">=", 10_000)], "m x n_x >= 10,000")
    rule_b = _verdict([("n_x", ">=", 100), ("m*n_x", ">=", 10_000)], "n_x >= 100 and m x n_x >= 10,000")
    table = rules_compared([rule_a], [rule_b], pairs, ("a", "b"))
    assert table["outcome"].tolist() == ["differs only on cells uncertain in a run"]
    cells[(1000, 10)] = (160.0, 155.0, 165.0, False)  # certain in both runs: the rules really differ
    c, d = _speedups(tmp_path / "c", cells), _speedups(tmp_path / "d", cells)
    table = rules_compared([rule_a], [rule_b], speedup_pairs(c, d, "c", "d"), ("c", "d"))
    assert table["outcome"].tolist() == ["differs"] and table["cells_disagreeing"].tolist() == [1]
    assert rules_compared([rule_a], [rule_a], pairs, ("a", "b"))["outcome"].tolist() == ["same rule"]
