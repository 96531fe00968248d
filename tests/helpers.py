"""Assertions shared by the correctness tests."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from bench.measure.data import placed
from implementations import Gradients
from tests.conftest import RTOL
from tests.reference import Reference


def assert_matches_reference(grads: Gradients, ref: Reference, dtype: Any, where: str = "") -> None:
    """|got - exact| <= rtol * (|exact| + scale of the summed terms) + floor, per component.

    The floor is for the course's dZ = A - Y: where a is within rounding of y, the
    subtraction cancels and dz keeps an absolute error of a few ulps of 1 whatever
    the implementation, so dw_j may be off by that much times mean_i |x_ji|.
    """
    rtol = RTOL[np.dtype(dtype)]
    ulp = 4 * float(np.finfo(dtype).eps)
    n_x = ref.dw.shape[0]
    assert grads.dw.shape == (n_x, 1), f"{where}: dw shape {grads.dw.shape}, expected ({n_x}, 1)"
    assert grads.dw.dtype == np.dtype(dtype), f"{where}: dw dtype {grads.dw.dtype}, expected {dtype}"
    assert isinstance(grads.db, float), f"{where}: db is {type(grads.db).__name__}, not float"
    assert isinstance(grads.cost, float), f"{where}: cost is {type(grads.cost).__name__}, not float"
    dw = grads.dw.astype(np.float64)
    dw_err = np.abs(dw - ref.dw) / (np.abs(ref.dw) + ref.dw_scale + ulp / rtol * ref.x_scale)
    assert dw_err.max() <= rtol, f"{where}: dw off by {dw_err.max():.3g} (rtol {rtol})"
    db_err = abs(grads.db - ref.db) / (abs(ref.db) + ref.db_scale + ulp / rtol)
    assert db_err <= rtol, f"{where}: db off by {db_err:.3g} (rtol {rtol})"
    # A cost below the dtype's smallest normal number cannot be told from 0 in that dtype: a float32
    # loss of 6e-56 (z = -127) underflows to 0 in any implementation that sums it in float32.
    cost_err = abs(grads.cost - ref.cost) / (abs(ref.cost) + float(np.finfo(dtype).tiny) / rtol)
    assert cost_err <= rtol, f"{where}: cost {grads.cost!r} vs exact {ref.cost!r} ({cost_err:.3g})"


def flat_memory(*_: object) -> dict[str, Any]:
    """A stand-in for the memory sweep: 10 GB/s at every size, for tests that do not look at it."""
    flat = {"sweep": [[4096, 10.0], [8192, 10.0]], "levels": [{"gbps": 10.0, "capacity_bytes": None}]}
    return {"threads": {str(t): {**flat, "memory_from_bytes": 4096.0} for t in range(1, 65)}}


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table row in `markdown`, stripped; header rows included, rules left out."""
    rows = []
    for raw in markdown.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line[1:-1])]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def has_row(markdown: str, *cells: str) -> bool:
    """Whether a table row of `markdown` holds these cells next to each other, in this order."""
    n = len(cells)
    return any(list(cells) == row[i : i + n] for row in table_rows(markdown) for i in range(len(row) - n + 1))


def at_offset(X: np.ndarray[Any, Any], offset: int) -> np.ndarray[Any, Any]:
    """A copy of X, in its layout, whose first element lies `offset` bytes past a 64-byte boundary."""
    out = placed(X, offset)
    assert out.ctypes.data % 64 == offset and np.array_equal(out, X)
    return out
