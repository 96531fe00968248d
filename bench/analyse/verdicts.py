"""Verdicts as rules that can be checked: where each of the note's claims holds, over the measured cells.

For each claim, every simple rule over the cells is tried (one condition on n_x, m, m x n_x
or the bytes of X, or two such conditions together) and the one that agrees with the most
cells wins, the simpler on a tie. The verdict then states the rule, how many cells agree,
and every exception, so a reader can check it against the table; a rule whose region holds
a single cell is never stated as a general rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse.views import cell_items, fmt_speedup, headline, speedups, uncertain_cells
from bench.base.claims import CLAIMS, HOLDS_FACTOR
from implementations import BASELINE

VARIABLES = ("n_x", "m", "m*n_x", "bytes_x")  # on a tie, earlier variables are preferred
OPS = (">=", "<=")
VERDICTS_JSON = "verdicts.json"
RULE_CHECKS_CSV = "rule_checks.csv"  # each rule against the cells between the grid's sizes


@dataclass(frozen=True)
class Condition:
    """One comparison of a cell's variable with a value, e.g. m*n_x >= 10,000."""

    variable: str
    op: str
    value: float

    def mask(self, values: dict[str, np.ndarray]) -> np.ndarray:
        column = values[self.variable]
        return column >= self.value if self.op == ">=" else column <= self.value

    def text(self) -> str:
        name = {"n_x": "n_x", "m": "m", "m*n_x": "m x n_x", "bytes_x": "X"}[self.variable]
        value = _fmt_bytes(self.value) if self.variable == "bytes_x" else f"{self.value:,.0f}"
        return f"{name} {self.op} {value}"

    def to_json(self) -> dict[str, Any]:
        return {"variable": self.variable, "op": self.op, "value": int(self.value)}


@dataclass(frozen=True)
class Rule:
    """All of its conditions at once; no condition means every cell."""

    conditions: tuple[Condition, ...]

    def mask(self, values: dict[str, np.ndarray]) -> np.ndarray:
        out = np.ones(len(values["m"]), dtype=bool)
        for condition in self.conditions:
            out &= condition.mask(values)
        return out

    def text(self) -> str:
        return " and ".join(c.text() for c in self.conditions) or "every measured cell"

    def to_json(self) -> dict[str, Any]:
        return {"all": [c.to_json() for c in self.conditions]}

    @classmethod
    def from_json(cls, data: Any) -> Rule | None:
        """A rule as verdicts.json holds it ({"all": [{"variable", "op", "value"}, ...]}); None if it is not one."""
        if not isinstance(data, dict):
            return None
        return cls(tuple(Condition(str(c["variable"]), str(c["op"]), float(c["value"])) for c in data.get("all", [])))


@dataclass(frozen=True)
class Verdict:
    """Where one claim holds: the best rule, its agreement with the cells, and the exceptions."""

    implementation: str
    approach: str
    claimed: float
    threshold: float
    baseline: str
    rule: Rule | None  # None: the claim holds in no measured cell
    agree: int
    cells: int
    exceptions: tuple[tuple[int, int], ...]
    holding: int  # cells where the claim holds
    support: int  # cells where the rule says "holds" and the claim does hold
    speedups: tuple[tuple[int, int, float], ...]  # every counted cell, for the sentence and checks
    uncertain: tuple[tuple[int, int, float], ...] = ()  # cells left out: their interval cannot tell (see estimates)

    @property
    def general(self) -> bool:
        """A rule only reads as a rule when more than one holding cell supports it."""
        return self.rule is not None and self.support > 1

    @property
    def rule_text(self) -> str:
        if self.cells == 0:
            return "not measured"
        if self.rule is None:
            return "in no measured cell"
        return self.rule.text()

    def headline(self) -> str:
        """The verdict in a few words."""
        if self.cells == 0:
            return "not measured"
        if self.rule is None:
            return "does not hold in any measured cell"
        if not self.rule.conditions:
            return "holds in every measured cell"
        if not self.general:
            held = [(m, n) for m, n, s in self.speedups if s >= self.threshold]
            where = "; ".join(f"m = {m:,}, n_x = {n:,}" for m, n in held)
            return f"holds in {len(held)} of {self.cells} cells only ({where}): no general rule"
        return f"holds where {self.rule.text()}{self._gap()}"

    def nearest_beyond(self, condition: Condition) -> float | None:
        """The measured value of the condition's variable nearest its threshold on the side where it fails."""
        column = cell_variables([(m, n) for m, n, _ in self.speedups], 8)[condition.variable]
        other = column[column < condition.value] if condition.op == ">=" else column[column > condition.value]
        if other.size == 0 or condition.variable == "bytes_x":
            return None
        return float(other.max() if condition.op == ">=" else other.min())

    def _gap(self) -> str:
        """How tightly each threshold is located: the nearest measured cell on the other side of it."""
        if self.rule is None:
            return ""
        parts = []
        for condition in self.rule.conditions:
            nearest = self.nearest_beyond(condition)
            if nearest is None:
                continue
            factor = max(nearest, condition.value) / max(min(nearest, condition.value), 1.0)
            name = condition.text().split(" ")[0] if condition.variable != "m*n_x" else "m x n_x"
            parts.append(f"{name} located within {factor:.3g}x, between {nearest:,.0f} and {condition.value:,.0f}")
        return f" ({'; '.join(parts)})" if parts else ""

    def sentence(self) -> str:
        """The verdict, its agreement and every exception, in one line."""
        if self.cells == 0:
            if self.uncertain:
                return f"Every one of the {len(self.uncertain)} measured cells is uncertain{self._uncertain_text()}."
            return "No cell has both this implementation and the baseline measured."
        values = [s for _, _, s in self.speedups]
        measured = f"measured {fmt_speedup(min(values))} to {fmt_speedup(max(values))}"
        text = (
            f"At least {fmt_speedup(self.threshold)} in {self.holding} of {self.cells} cells ({measured}). "
            f"The rule agrees with {self.agree} of {self.cells} cells"
        )
        if not self.exceptions:
            return text + "; no exceptions." + self._uncertain_text()
        speed = {(m, n): s for m, n, s in self.speedups}
        parts = []
        for m, n in self.exceptions:
            s = speed[(m, n)]
            said = "holds" if s < self.threshold else "does not hold"
            parts.append(f"m = {m:,}, n_x = {n:,} ({fmt_speedup(s)}; the rule says it {said})")
        return text + f"; exceptions: {'; '.join(parts)}." + self._uncertain_text()

    def _uncertain_text(self) -> str:
        if not self.uncertain:
            return ""
        cells = "; ".join(f"m = {m:,}, n_x = {n:,} ({fmt_speedup(s)})" for m, n, s in self.uncertain)
        return (
            " Left out as uncertain (interval across the threshold, or measured while the machine was unstable): "
            f"{cells}."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "approach": self.approach,
            "baseline": self.baseline,
            "claimed": self.claimed,
            "threshold": self.threshold,
            "rule": self.rule.to_json() if self.rule is not None else None,
            "rule_text": self.rule_text,
            "verdict": self.headline(),
            "general": self.general,
            "agree": self.agree,
            "cells": self.cells,
            "exceptions": [[m, n] for m, n in self.exceptions],
            "uncertain": [[m, n] for m, n, _ in self.uncertain],
        }


def _fmt_bytes(value: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def cell_variables(cells: Sequence[tuple[int, int]], itemsize: int) -> dict[str, np.ndarray]:
    m = np.array([c[0] for c in cells], dtype=float)
    n_x = np.array([c[1] for c in cells], dtype=float)
    return {"m": m, "n_x": n_x, "m*n_x": m * n_x, "bytes_x": m * n_x * itemsize}


def _candidates(values: dict[str, np.ndarray]) -> list[Condition]:
    out = []
    for variable in VARIABLES:
        levels = np.unique(values[variable])
        for op in OPS:
            # ">= smallest" and "<= largest" are every cell: the empty rule says that more simply.
            usable = levels[1:] if op == ">=" else levels[:-1]
            out += [Condition(variable, op, float(v)) for v in usable]
    return out


def find_rule(cells: Sequence[tuple[int, int]], holds: Sequence[bool], itemsize: int = 8) -> Rule | None:
    """The rule over the cells that best separates holds from not; simpler first on a tie.

    Candidates: the empty rule (every cell), one condition, and two conditions together.
    None when the claim holds in no cell.
    """
    target = np.asarray(holds, dtype=bool)
    if not target.any():
        return None
    values = cell_variables(cells, itemsize)
    conditions = _candidates(values)
    masks = np.array([c.mask(values) for c in conditions]).reshape(len(conditions), len(target))
    best_rule = Rule(())
    best = int((target == np.ones_like(target)).sum())
    if best == len(target) or not conditions:
        return best_rule
    single = (masks == target).sum(axis=1)
    i = int(np.argmax(single))  # argmax keeps the first best: VARIABLES order, then smaller values
    if single[i] > best:
        best, best_rule = int(single[i]), Rule((conditions[i],))
    if best == len(target):
        return best_rule
    for a, b in itertools.combinations(range(len(conditions)), 2):
        if conditions[a].variable == conditions[b].variable and conditions[a].op == conditions[b].op:
            continue  # the same bound twice is one condition
        score = int(((masks[a] & masks[b]) == target).sum())
        if score > best:
            best, best_rule = score, Rule((conditions[a], conditions[b]))
    return best_rule


def verdict_for(
    speed: pd.Series,
    implementation: str,
    approach: str,
    claimed: float,
    baseline: str = BASELINE,
    itemsize: int = 8,
    uncertain: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> Verdict:
    """The verdict on one claim from speedups indexed by (m, n_x); NaN cells are not measured.

    Cells in `uncertain` count neither for nor against a rule: they are left out of the
    search and the agreement, and listed, so no rule can rest on them.
    """
    speed = speed.dropna()
    doubtful = tuple((m, n, v) for m, n, v in cell_items(speed) if (m, n) in uncertain)
    speed = speed[[(m, n) not in uncertain for m, n, _ in cell_items(speed)]]
    cells = [(int(m), int(n)) for m, n in speed.index]
    values = [float(v) for v in speed.to_numpy()]
    threshold = HOLDS_FACTOR * claimed
    holds = [v >= threshold for v in values]
    rule = find_rule(cells, holds, itemsize) if cells else None
    said = rule.mask(cell_variables(cells, itemsize)) if rule is not None else np.zeros(len(cells), dtype=bool)
    exceptions = tuple(c for c, h, r in zip(cells, holds, said, strict=True) if h != bool(r))
    return Verdict(
        implementation=implementation,
        approach=approach,
        claimed=claimed,
        threshold=threshold,
        baseline=baseline,
        rule=rule,
        agree=len(cells) - len(exceptions),
        cells=len(cells),
        exceptions=exceptions,
        holding=sum(holds),
        support=int(sum(h and bool(r) for h, r in zip(holds, said, strict=True))),
        speedups=tuple((m, n, v) for (m, n), v in zip(cells, values, strict=True)),
        uncertain=doubtful,
    )


def claim_verdicts(frame: pd.DataFrame, baseline: str = BASELINE) -> list[Verdict]:
    """One verdict per claim of the note, over the headline slice (float64, C, 1 thread).

    Cells are those where both the implementation and the baseline were measured; cells
    whose speedup is uncertain are listed apart and do not count.
    """
    data = headline(frame)
    speed = speedups(data, baseline)
    itemsize = int(np.dtype(str(data["dtype"].iloc[0])).itemsize) if not data.empty else 8
    out = []
    for approach, (name, claimed) in CLAIMS.items():
        if claimed == 1:
            continue
        column = speed[name] if name in speed else pd.Series(dtype=float)
        doubtful = uncertain_cells(data, name) if baseline == BASELINE else set()
        out.append(verdict_for(column, name, approach, claimed, baseline, itemsize, doubtful))
    return out


def rule_checks(verdicts: Sequence[Verdict], off_grid: pd.DataFrame) -> pd.DataFrame:
    """Each verdict's rule on the off-grid cells (headline rows the rule never saw): agreement and exceptions.

    A cell agrees when the rule says "holds" exactly where the measured speedup reaches the threshold;
    uncertain cells are listed apart and do not count, as on the grid.
    """
    columns = ["implementation", "claimed", "threshold", "rule", "cells", "agree", "exceptions", "uncertain"]
    rows = []
    for v in verdicts:
        speed = speedups(off_grid, v.baseline) if not off_grid.empty else pd.DataFrame()
        if v.implementation not in speed or (v.rule is None and v.cells == 0):
            rows.append({"implementation": v.implementation, "claimed": v.claimed, "threshold": v.threshold,
                         "rule": v.rule_text, "cells": 0, "agree": 0, "exceptions": "", "uncertain": ""})  # fmt: skip
            continue
        doubtful = uncertain_cells(off_grid, v.implementation) if v.baseline == BASELINE else set()
        items = [(m, n, s) for m, n, s in cell_items(speed[v.implementation].dropna())]
        counted = [(m, n, s) for m, n, s in items if (m, n) not in doubtful]
        said = _says(v.rule, [(m, n) for m, n, _ in counted], 8)  # the headline setting is float64
        wrong = [(m, n, s) for (m, n, s), r in zip(counted, said, strict=True) if bool(r) != (s >= v.threshold)]
        rows.append(
            {
                "implementation": v.implementation,
                "claimed": v.claimed,
                "threshold": v.threshold,
                "rule": v.rule_text,
                "cells": len(counted),
                "agree": len(counted) - len(wrong),
                "exceptions": "; ".join(f"{m}x{n}: {s:.3g}" for m, n, s in wrong),
                "uncertain": "; ".join(f"{m}x{n}" for m, n, _ in items if (m, n) in doubtful),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _says(rule: Rule | None, cells: list[tuple[int, int]], itemsize: int) -> np.ndarray:
    """Where a rule says the claim holds (nowhere for a verdict without a rule)."""
    if rule is None or not cells:
        return np.zeros(len(cells), dtype=bool)
    return rule.mask(cell_variables(cells, itemsize))
