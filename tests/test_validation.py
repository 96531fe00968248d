"""Bad inputs raise ValueError naming the problem, from validate_inputs and from optimize."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bench.measure.data import line_offset, make_problem
from implementations import REGISTRY, validate_hyperparameters, validate_inputs

Case = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Case:
    def change(args: dict[str, Any]) -> None:
        args[key] = value(args) if callable(value) else value

    return change


def _poke(key: str, value: float) -> Case:
    def change(args: dict[str, Any]) -> None:
        arr = args[key].copy()
        arr.flat[0] = value
        args[key] = arr

    return change


BAD_INPUTS: dict[str, tuple[Case, str]] = {
    "X 1-d": (_set("X", lambda a: a["X"].ravel()), r"X must be 2-dimensional"),
    "Y 1-d": (_set("Y", lambda a: a["Y"].ravel()), r"Y must be 2-dimensional"),
    "w 3-d": (_set("w", lambda a: a["w"][None]), r"w must be 2-dimensional"),
    "Y wrong m": (_set("Y", lambda a: a["Y"][:, :-1]), r"Y must have shape \(1, m\)"),
    "Y transposed": (_set("Y", lambda a: a["Y"].T), r"Y must have shape \(1, m\)"),
    "w wrong n_x": (_set("w", lambda a: a["w"][:-1]), r"w must have shape \(n_x, 1\)"),
    "w row": (_set("w", lambda a: a["w"].T), r"w must have shape \(n_x, 1\)"),
    "m = 0": (_set("X", lambda a: a["X"][:, :0]), r"at least one feature and one example"),
    "n_x = 0": (_set("X", lambda a: a["X"][:0]), r"at least one feature and one example"),
    "label 2": (_poke("Y", 2.0), r"labels 0 and 1 only, found \[2\.0\]"),
    "label 0.5": (_poke("Y", 0.5), r"labels 0 and 1 only"),
    "NaN in X": (_poke("X", np.nan), r"X contains NaN"),
    "inf in X": (_poke("X", np.inf), r"X contains infinite"),
    "NaN in w": (_poke("w", np.nan), r"w contains NaN"),
    "NaN in Y": (_poke("Y", np.nan), r"Y contains NaN"),
    "NaN b": (_set("b", float("nan")), r"b must be finite"),
    "inf b": (_set("b", float("inf")), r"b must be finite"),
    "string b": (_set("b", "0.1"), r"b must be a real number"),
    "int X": (_set("X", lambda a: a["X"].astype(np.int64)), r"X holds integers \(int64\); scale it to floats"),
    "uint8 X": (_set("X", lambda a: a["X"].astype(np.uint8)), r"e\.g\. X / 255"),
    "int label 2": (_set("Y", lambda a: np.array([[0, 1, 2, 0, 1, 1]])), r"labels 0 and 1 only, found \[2\.0\]"),
    "string Y": (_set("Y", lambda a: a["Y"].astype(str)), r"Y must be a float array"),
    "float16 X": (_set("X", lambda a: a["X"].astype(np.float16)), r"float32 or float64"),
    "list X": (_set("X", lambda a: a["X"].tolist()), r"X must be a NumPy array"),
    "mixed dtypes": (_set("w", lambda a: a["w"].astype(np.float32)), r"share one dtype"),
}


def _good() -> dict[str, Any]:
    p = make_problem(6, 3, seed=0)
    return {"w": p.w, "b": p.b, "X": p.X, "Y": p.Y}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_validate_inputs_names_the_problem(case: str) -> None:
    change, message = BAD_INPUTS[case]
    args = _good()
    change(args)
    with pytest.raises(ValueError, match=message):
        validate_inputs(**args)


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("case", ["Y wrong m", "NaN in X", "label 2", "int X"])
def test_optimize_validates(name: str, case: str) -> None:
    change, message = BAD_INPUTS[case]
    args = _good()
    change(args)
    with pytest.raises(ValueError, match=message):
        REGISTRY[name].optimize(args["w"], args["b"], args["X"], args["Y"], 3, 0.1)


def test_good_inputs_pass_including_integer_b() -> None:
    args = _good()
    validate_inputs(**args)
    validate_inputs(args["w"], 0, args["X"], args["Y"])


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_integer_and_boolean_labels_become_x_dtype(label_dtype: Any, dtype: str) -> None:
    p = make_problem(6, 3, seed=0, dtype=dtype)
    Y = p.Y.astype(label_dtype)
    w, b, X, Y_float = validate_inputs(p.w.astype(np.int64), 1, p.X, Y)
    assert Y_float.dtype == np.dtype(dtype) and np.array_equal(Y_float, p.Y)
    assert w.dtype == np.dtype(dtype) and isinstance(b, float) and X is p.X
    assert Y.dtype == np.dtype(label_dtype), "the caller's labels are left as they were"


@pytest.mark.parametrize(
    ("num_iterations", "learning_rate", "message"),
    [
        (-1, 0.1, r"num_iterations must be >= 0"),
        (2.5, 0.1, r"num_iterations must be an integer"),
        (True, 0.1, r"num_iterations must be an integer"),
        (3, 0.0, r"learning_rate must be positive"),
        (3, float("nan"), r"learning_rate must be positive and finite"),
        (3, "fast", r"learning_rate must be a real number"),
    ],
)
def test_bad_hyperparameters(num_iterations: Any, learning_rate: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_hyperparameters(num_iterations, learning_rate)


def test_registry_names_and_order() -> None:
    assert list(REGISTRY)[:5] == [
        "two_loop",
        "two_loop_lists",
        "feature_vectorized",
        "fully_vectorized",
        "numba_loop",
    ]
    for name, impl in REGISTRY.items():
        assert impl.name == name
        assert impl.summary and not impl.summary.startswith(" ")


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize(("dtype", "offset"), [("float64", 0), ("float64", 16), ("float64", 56), ("float32", 4)])
def test_a_placed_problem_is_the_same_x_starting_where_asked(layout: str, dtype: str, offset: int) -> None:
    p = make_problem(30, 7, seed=4).as_layout(dtype, layout)  # type: ignore[arg-type]
    q = p.placed(offset)
    assert q.X.ctypes.data % 64 == offset and line_offset(q.X) == offset
    assert np.array_equal(q.X, p.X) and q.X.shape == p.X.shape and q.X.dtype == p.X.dtype
    assert q.X.flags.f_contiguous if layout == "F" else q.X.flags.c_contiguous
    assert q.X.ctypes.data != p.X.ctypes.data and q.w is p.w and q.Y is p.Y


def test_placing_x_refuses_offsets_between_elements_or_past_the_line() -> None:
    p = make_problem(30, 7, seed=4)
    for offset in (4, 64, -8):
        with pytest.raises(ValueError, match="offset must be a multiple of 8 below 64"):
            p.placed(offset)


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_problem_made_in_a_layout_at_an_offset_is_one_copy_starting_there(layout: str, dtype: str) -> None:
    p = make_problem(30, 7, seed=4)
    q = p.as_layout(dtype, layout, 16)  # type: ignore[arg-type]
    assert line_offset(q.X) == 16 and q.X.dtype == np.dtype(dtype)
    assert q.X.flags.f_contiguous if layout == "F" else q.X.flags.c_contiguous
    assert np.array_equal(q.X, p.X.astype(dtype)) and not np.shares_memory(q.X, p.X)
