"""The rule finder on synthetic speedup tables made from known rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from bench.analyse.verdicts import Condition, Rule, cell_variables, claim_verdicts, find_rule, verdict_for

AXIS_M = (1, 10, 100, 1_000, 10_000, 100_000)
AXIS_N = (1, 10, 100, 1_000, 10_000)
GRID = [(m, n) for m in AXIS_M for n in AXIS_N]


def _table(cells: list[tuple[int, int]], holds: list[bool], threshold: float = 150.0) -> pd.Series:
    index = pd.MultiIndex.from_tuples(cells, names=["m", "n_x"])
    return pd.Series([threshold * (3.0 if h else 0.2) for h in holds], index=index)


def _partition(rule: Rule | None, cells: list[tuple[int, int]]) -> list[bool]:
    if rule is None:
        return [False] * len(cells)
    return [bool(v) for v in rule.mask(cell_variables(cells, 8))]


conditions = st.builds(
    Condition,
    variable=st.sampled_from(["n_x", "m", "m*n_x"]),
    op=st.sampled_from([">=", "<="]),
    value=st.sampled_from([10.0, 100.0, 1_000.0, 10_000.0, 1e5, 1e6]),
)


@given(conditions)
def test_a_one_condition_rule_is_recovered_exactly(condition: Condition) -> None:
    holds = _partition(Rule((condition,)), GRID)
    found = find_rule(GRID, holds)
    assert _partition(found, GRID) == holds
    if found is not None:
        assert len(found.conditions) <= 1  # never a conjunction where one condition suffices


@given(conditions, conditions)
def test_a_two_condition_rule_is_matched_cell_for_cell(first: Condition, second: Condition) -> None:
    holds = _partition(Rule((first, second)), GRID)
    found = find_rule(GRID, holds)
    assert _partition(found, GRID) == holds


@given(conditions, st.sets(st.integers(0, len(GRID) - 1), max_size=3))
def test_agreement_and_exceptions_are_exact(condition: Condition, flipped: set[int]) -> None:
    holds = _partition(Rule((condition,)), GRID)
    noisy = [(not h) if i in flipped else h for i, h in enumerate(holds)]
    verdict = verdict_for(_table(GRID, noisy), "fully_vectorized", "Full", 300.0)
    said = _partition(verdict.rule, GRID)
    wrong = {cell for cell, h, r in zip(GRID, noisy, said, strict=True) if h != r}
    assert set(verdict.exceptions) == wrong
    assert verdict.agree == len(GRID) - len(wrong) and verdict.cells == len(GRID)
    assert verdict.agree >= len(GRID) - len(flipped)  # the generating rule agrees at least this well
    # Every exception the sentence lists really disagrees with the rule, and says which way.
    sentence = verdict.sentence()
    for m, n in verdict.exceptions:
        held = noisy[GRID.index((m, n))]
        assert f"m = {m:,}, n_x = {n:,}" in sentence
        assert ("the rule says it holds" if not held else "the rule says it does not hold") in sentence.split(
            f"m = {m:,}, n_x = {n:,}"
        )[1].split(")")[0]


def test_ties_prefer_the_simpler_rule_and_the_earlier_variable() -> None:
    # Along the diagonal m = n_x, "n_x >= 100", "m >= 100" and "m x n_x >= 10,000" all separate.
    cells = [(v, v) for v in (1, 10, 100, 1000)]
    rule = find_rule(cells, [False, False, True, True])
    assert rule == Rule((Condition("n_x", ">=", 100.0),))
    assert find_rule(cells, [True] * 4) == Rule(())
    assert find_rule(cells, [False] * 4) is None


def test_a_rule_resting_on_one_cell_is_not_stated_as_general() -> None:
    cells = [*GRID, (209, 12_288)]
    holds = [False] * len(GRID) + [True]
    verdict = verdict_for(_table(cells, holds), "fully_vectorized", "Full", 300.0)
    assert verdict.agree == len(cells) and not verdict.general
    assert "1 of 31 cells only" in verdict.headline() and "m = 209, n_x = 12,288" in verdict.headline()
    assert "holds where" not in verdict.headline()


def test_claim_verdicts_read_the_headline_slice_and_serialise() -> None:
    rows = []
    for m, n in GRID:
        base = 1e-7 * m * n + 1e-6
        for name, t in (
            ("two_loop", base),
            ("feature_vectorized", base / 20 if n >= 100 else base),
            ("fully_vectorized", base / 400 if m * n >= 10_000 else base / 2),
        ):
            rows.append(
                {
                    "implementation": name,
                    "m": m,
                    "n_x": n,
                    "dtype": "float64",
                    "layout": "C",
                    "threads": 1,
                    "status": "ok",
                    "median_s": t,
                }
            )
            # A second setting that must not leak into the headline verdicts.
            rows.append(
                {
                    "implementation": name,
                    "m": m,
                    "n_x": n,
                    "dtype": "float64",
                    "layout": "F",
                    "threads": 1,
                    "status": "ok",
                    "median_s": base,
                }
            )
    verdicts = {v.implementation: v for v in claim_verdicts(pd.DataFrame(rows))}
    assert verdicts["feature_vectorized"].rule_text == "n_x >= 100"
    assert verdicts["fully_vectorized"].rule_text == "m x n_x >= 10,000"
    assert all(v.agree == v.cells == len(GRID) for v in verdicts.values())
    payload = json.loads(json.dumps([v.to_json() for v in verdicts.values()]))
    assert payload[1]["rule"] == {"all": [{"variable": "m*n_x", "op": ">=", "value": 10000}]}
    assert {"implementation", "claimed", "threshold", "rule", "agree", "cells", "exceptions"} <= set(payload[0])
    assert np.isclose(payload[1]["threshold"], 150.0)


def test_uncertain_cells_count_neither_for_nor_against_and_are_listed() -> None:
    # The true rule is m x n_x >= 10,000; three cells measured on the wrong side of the threshold
    # would move the rule, but they are marked uncertain: the rule must be found without them.
    holds = [m * n >= 10_000 for m, n in GRID]
    wrong = {(1, 10_000), (100, 10), (10, 100)}
    flipped = [not h if c in wrong else h for c, h in zip(GRID, holds, strict=True)]
    verdict = verdict_for(_table(GRID, flipped), "fully_vectorized", "Full", 300.0, uncertain=wrong)
    assert verdict.rule_text == "m x n_x >= 10,000"
    assert verdict.cells == len(GRID) - 3 and verdict.agree == verdict.cells and not verdict.exceptions
    assert {(m, n) for m, n, _ in verdict.uncertain} == wrong
    assert sorted(map(tuple, verdict.to_json()["uncertain"])) == sorted(wrong)
    assert "Left out as uncertain" in verdict.sentence()


def test_a_claim_whose_cells_are_all_uncertain_states_no_rule() -> None:
    verdict = verdict_for(_table(GRID, [True] * len(GRID)), "fully_vectorized", "Full", 300.0, uncertain=set(GRID))
    assert verdict.cells == 0 and verdict.rule is None and verdict.headline() == "not measured"
    assert f"Every one of the {len(GRID)} measured cells is uncertain" in verdict.sentence()
