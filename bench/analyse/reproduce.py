"""Does a run reproduce? Two runs' speedups cell by cell, with their intervals, and their verdict rules.

For `bench compare A B` of two runs on the same machine: a cell reproduces when the two
speedups' intervals overlap; the spread is the larger speedup over the smaller. The verdict
rules reproduce when they are the same, or when they disagree only on cells that one of the
runs marked uncertain.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.verdicts import Rule, cell_variables
from bench.base.claims import HEADLINE
from bench.base.results import load_speedups
from implementations import BASELINE

CELL = ("implementation", "m", "n_x", "dtype", "layout", "threads")
# Two runs of the same code on the same machine should agree this closely (median, worst cell).
AGREE_MEDIAN = 1.15
AGREE_WORST = 1.5


def speedup_pairs(a: Path, b: Path, label_a: str, label_b: str) -> pd.DataFrame:
    """Every speedup over two loops measured in both runs, side by side, with overlap and spread."""
    columns = [
        "run", "against", *CELL, "speedup_a", "low_a", "high_a", "uncertain_a",
        "speedup_b", "low_b", "high_b", "uncertain_b", "spread", "overlap", "headline",
    ]  # fmt: skip
    left, right = load_speedups(a), load_speedups(b)
    if left is None or right is None:
        return pd.DataFrame(columns=columns)
    keep = ["speedup", "ci_low", "ci_high", "uncertain"]
    left = left[left["baseline"] == BASELINE][[*CELL, *keep]]
    right = right[right["baseline"] == BASELINE][[*CELL, *keep]]
    both = left.merge(right, on=list(CELL), suffixes=("_a", "_b"))
    both = both.rename(columns={"ci_low_a": "low_a", "ci_high_a": "high_a", "ci_low_b": "low_b", "ci_high_b": "high_b"})
    both.insert(0, "against", label_a)
    both.insert(0, "run", label_b)
    high = np.fmax(both["speedup_a"], both["speedup_b"])
    low = np.fmin(both["speedup_a"], both["speedup_b"])
    both["spread"] = high / low
    both["overlap"] = (both["low_a"] <= both["high_b"]) & (both["low_b"] <= both["high_a"])
    both["headline"] = np.ones(len(both), dtype=bool)
    for column, value in HEADLINE.items():
        both["headline"] &= both[column] == value
    return both[columns]


def reproduce_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair of runs and scope (headline, every setting): cells, share overlapping, median and worst spread."""
    rows = []
    for (run, against), group in pairs.groupby(["run", "against"], sort=False):
        for scope, part in (("headline", group[group["headline"]]), ("every setting", group)):
            spread = part["spread"].to_numpy(dtype=float)
            worst = part.iloc[int(np.argmax(spread))] if spread.size else None
            rows.append(
                {
                    "run": run,
                    "against": against,
                    "scope": scope,
                    "cells": len(part),
                    "overlapping": int(part["overlap"].sum()),
                    "share": float(part["overlap"].mean()) if len(part) else math.nan,
                    "spread_median": float(np.median(spread)) if spread.size else math.nan,
                    "spread_worst": float(spread.max()) if spread.size else math.nan,
                    "worst_cell": (
                        f"{worst['implementation']} m={int(worst['m'])} n_x={int(worst['n_x'])} "
                        f"{worst['dtype']} {worst['layout']} {int(worst['threads'])}t"
                        if worst is not None
                        else ""
                    ),
                    "agrees": bool(spread.size and np.median(spread) <= AGREE_MEDIAN and spread.max() <= AGREE_WORST),
                }
            )
    return pd.DataFrame(rows)


def rules_compared(
    verdicts_a: list[dict[str, Any]] | None,
    verdicts_b: list[dict[str, Any]] | None,
    pairs: pd.DataFrame,
    labels: tuple[str, str],
) -> pd.DataFrame:
    """Per claim: both runs' rules, and whether they are the same, differ only on uncertain cells, or differ."""
    columns = ["run", "against", "implementation", "rule_a", "rule_b", "outcome", "cells_disagreeing"]
    if not verdicts_a or not verdicts_b:
        return pd.DataFrame(columns=columns)
    by_name = {str(v.get("implementation")): v for v in verdicts_b}
    rows = []
    for record_a in verdicts_a:
        name = str(record_a.get("implementation"))
        record_b = by_name.get(name)
        if record_b is None:
            continue
        text_a, text_b = str(record_a.get("rule_text", "")), str(record_b.get("rule_text", ""))
        cells = pairs[pairs["headline"] & (pairs["implementation"] == name)]
        rule_a, rule_b = Rule.from_json(record_a.get("rule")), Rule.from_json(record_b.get("rule"))
        certain = cells[~(cells["uncertain_a"].astype(bool) | cells["uncertain_b"].astype(bool))]
        disagree = 0
        if rule_a is not None and rule_b is not None and not certain.empty:
            values = cell_variables(list(zip(certain["m"], certain["n_x"], strict=True)), 8)
            disagree = int((rule_a.mask(values) != rule_b.mask(values)).sum())
        elif (rule_a is None) != (rule_b is None):
            disagree = len(certain)
        if text_a == text_b:
            outcome = "same rule"
        elif disagree == 0:
            outcome = "differs only on cells uncertain in a run"
        else:
            outcome = "differs"
        rows.append(
            {"run": labels[1], "against": labels[0], "implementation": name, "rule_a": text_a, "rule_b": text_b,
             "outcome": outcome, "cells_disagreeing": disagree}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
