"""Property tests: random shapes, labels and scales, every implementation against the reference."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from implementations import REGISTRY
from tests.helpers import assert_matches_reference
from tests.reference import reference_gradients


@st.composite
def problems(draw: st.DrawFn) -> tuple[Any, float, Any, Any, str]:
    m = draw(st.integers(1, 24))
    n_x = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    labels = draw(st.sampled_from(["zeros", "ones", "mixed"]))
    # Up to |z| ~ 1e3: the scale of w times the sum of n_x unit-sized terms.
    z_scale = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0, 1000.0]))
    layout: Literal["C", "F"] = draw(st.sampled_from(["C", "F"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_x, m))
    w = rng.uniform(-1.0, 1.0, (n_x, 1)) * (z_scale / n_x)
    Y = {"zeros": np.zeros((1, m)), "ones": np.ones((1, m))}.get(labels, (rng.random((1, m)) < 0.5).astype(np.float64))
    b = float(rng.uniform(-1.0, 1.0))
    X = np.asarray(X, dtype=np.dtype(dtype), order=layout)
    return w.astype(dtype), b, X, Y.astype(dtype), dtype


@pytest.mark.parametrize("name", list(REGISTRY))
@given(problem=problems())
def test_propagate_matches_reference_on_random_problems(name: str, problem: tuple[Any, float, Any, Any, str]) -> None:
    w, b, X, Y, dtype = problem
    ref = reference_gradients(w, b, X, Y)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grads = REGISTRY[name].propagate(w, b, X, Y)
    assert_matches_reference(grads, ref, dtype, where=f"{name} X{X.shape} {dtype}")
