"""The set-up step: conversion outside the timed step, unavailable implementations, older tables."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import bench.measure.runner
import bench.measure.user
from bench.base.results import Row, load_results
from bench.cli import main
from bench.measure.data import make_problem
from implementations import REGISTRY, Gradients, Implementation
from tests.helpers import assert_matches_reference
from tests.reference import reference_gradients


def test_lists_baseline_steps_on_lists_made_in_setup() -> None:
    p = make_problem(7, 3, seed=2)
    prepared = REGISTRY["two_loop_lists"].setup(p.w, p.b, p.X, p.Y)
    cells = prepared.step.__closure__ or ()
    held = [c.cell_contents for c in cells]
    assert any(isinstance(h, list) and isinstance(h[0], list) for h in held), "X is not held as lists"
    assert not any(type(h).__module__ == "numpy" for h in held), "the timed step still holds NumPy data"
    grads = prepared.gradients(prepared.step())
    assert_matches_reference(grads, reference_gradients(p.w, p.b, p.X, p.Y), "float64", where="lists")


def test_default_setup_defers_every_call_to_the_timed_step() -> None:
    """A set-up that computed the answer, cached it, or copied the inputs would make the timing meaningless."""
    p = make_problem(5, 2, seed=1)
    calls: list[tuple[object, ...]] = []

    def probe(w: Any, b: float, X: Any, Y: Any) -> Gradients:
        calls.append((w, b, X, Y))
        return REGISTRY["fully_vectorized"].propagate(w, b, X, Y)

    prepared = Implementation(name="probe", propagate=probe, summary="a probe").setup(p.w, p.b, p.X, p.Y)
    assert calls == [], "set-up ran the step"
    grads = prepared.gradients(prepared.step())
    prepared.step()
    assert len(calls) == 2, "the step did not run again on every call"
    assert all(got is given for got, given in zip(calls[0], (p.w, p.b, p.X, p.Y), strict=True)), "inputs copied"
    assert_matches_reference(grads, reference_gradients(p.w, p.b, p.X, p.Y), "float64", where="probe")
    with pytest.raises(TypeError, match="not Gradients"):
        prepared.gradients((1, 2, 3))


def test_missing_requirement_gives_skipped_unavailable_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ghost: Implementation = replace(REGISTRY["fully_vectorized"], name="ghost", requirements=("no_such_module_x",))
    assert ghost.unavailable is not None and "no_such_module_x" in ghost.unavailable
    registry = dict(REGISTRY, ghost=ghost)
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    args = ["run", "--profile", "quick", "--m", "2", "--n-x", "3", "--no-lecture", "--threads", "1"]
    code = main([*args, "--implementations", "fully_vectorized,ghost", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    frame = load_results(tmp_path)
    ghost_rows = frame[frame["implementation"] == "ghost"]
    assert set(ghost_rows["status"]) == {"skipped_unavailable"}
    assert ghost_rows["reason"].str.contains("no_such_module_x").all()
    assert set(frame[frame["implementation"] == "fully_vectorized"]["status"]) == {"ok"}


def test_tables_written_before_the_reason_column_still_load(tmp_path: Path) -> None:
    row = Row("two_loop", 2, 3, "float64", "C", 1, 7, "ok", median_s=1e-5, iqr_s=0.0, min_s=1e-5, rounds=5, loops=9)
    frame = pd.DataFrame([asdict(row)])
    frame.drop(columns=["reason", "seed"]).to_csv(tmp_path / "results.csv", index=False)
    loaded = load_results(tmp_path)
    assert "reason" in loaded.columns and loaded["reason"].isna().all()
    assert "seed" in loaded.columns and loaded["seed"].isna().all()
