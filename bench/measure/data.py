"""Synthetic logistic-regression problems, made from an explicit seed outside any timed region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from implementations import validate_inputs

Layout = Literal["C", "F"]
DTYPES: tuple[str, ...] = ("float64", "float32")
# C: features-major, the course's (n_x, m) array with each feature's row contiguous.
# F: examples-major, the same (n_x, m) array with each example's column contiguous.
LAYOUTS: tuple[Layout, ...] = ("C", "F")
LAYOUT_NAMES = {"C": "features-major (C order)", "F": "examples-major (Fortran order)"}
LINE_BYTES = 64  # a cache line on the x86 and Arm cores this runs on
# Where every timed X starts: 16 bytes into a cache line, as a large array glibc maps for NumPy
# does. Left to the allocator, X started 16 bytes in at some cells and on a line at others (the
# course shape's, made after larger arrays were freed, came from the heap), and a re-made X can
# land elsewhere; fully_vectorized ran up to 1.2x faster with X on a line (the robustness study's
# alignment effect), so the offset is fixed, not left to the allocator's history.
GRID_X_OFFSET = 16


def line_offset(X: NDArray[Any]) -> int:
    """Bytes from the start of the cache line X's first element lies in to that element.

    NumPy gives an array whatever malloc returns: 16 bytes into a line where glibc maps a large
    block for it (its header), any multiple of 16 where the block comes from the heap.
    """
    return int(X.ctypes.data % LINE_BYTES)


@dataclass(frozen=True)
class Problem:
    """One gradient-step input in the course's shapes."""

    w: NDArray[np.floating[Any]]
    b: float
    X: NDArray[np.floating[Any]]
    Y: NDArray[np.floating[Any]]

    @property
    def n_x(self) -> int:
        return int(self.X.shape[0])

    @property
    def m(self) -> int:
        return int(self.X.shape[1])

    @property
    def nbytes_x(self) -> int:
        return int(self.X.nbytes)

    def as_layout(self, dtype: str, layout: Layout, offset: int | None = None) -> Problem:
        """The same numbers in another dtype and memory layout: a copy where needed, and always one that
        starts `offset` bytes into a cache line where an offset is given (placed)."""
        if offset is None:
            X = np.asarray(self.X, dtype=np.dtype(dtype), order=layout)
        else:
            X = _empty_at(self.X.shape, np.dtype(dtype), layout, offset)
            X[...] = self.X
        return Problem(w=self.w.astype(dtype), b=self.b, X=X, Y=np.ascontiguousarray(self.Y, dtype=dtype))

    def placed(self, offset: int) -> Problem:
        """The same problem with X copied, in its layout, to start `offset` bytes into a cache line (placed)."""
        return Problem(w=self.w, b=self.b, X=placed(self.X, offset), Y=self.Y)


def _empty_at(shape: tuple[int, ...], dtype: np.dtype[Any], order: Layout, offset: int) -> NDArray[Any]:
    """An uninitialised array whose first element lies `offset` bytes into a cache line."""
    if not (0 <= offset < LINE_BYTES and offset % dtype.itemsize == 0):
        raise ValueError(f"offset must be a multiple of {dtype.itemsize} below {LINE_BYTES}, got {offset}")
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buffer = np.empty(nbytes + 2 * LINE_BYTES, dtype=np.uint8)
    start = (offset - buffer.ctypes.data) % LINE_BYTES
    return buffer[start : start + nbytes].view(dtype).reshape(shape, order=order)


def placed(X: NDArray[Any], offset: int) -> NDArray[Any]:
    """A copy of contiguous X, in its layout, whose first element lies `offset` bytes into a cache line."""
    if not (X.flags.c_contiguous or X.flags.f_contiguous):
        raise ValueError("placed needs a contiguous X")
    moved = _empty_at(X.shape, X.dtype, "C" if X.flags.c_contiguous else "F", offset)
    moved[...] = X
    return moved


def make_problem(m: int, n_x: int, *, seed: int, dtype: str = "float64", layout: Layout = "C") -> Problem:
    """A reproducible problem: X ~ N(0, 1), w ~ N(0, 1/n_x) so that z ~ N(0, 1), Y ~ Bernoulli(a).

    The generator is seeded from (seed, m, n_x), so each cell's data is the same in every
    run, in every dtype and layout, and whichever cells were measured before it.
    """
    if m < 1 or n_x < 1:
        raise ValueError(f"m and n_x must be positive, got m={m}, n_x={n_x}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rng = np.random.default_rng([seed, m, n_x])
    X = rng.standard_normal((n_x, m), dtype=np.float64)
    if dtype != "float64":
        X = X.astype(dtype)
    if layout == "F":
        X = np.asfortranarray(X)
    w = (rng.standard_normal((n_x, 1)) / np.sqrt(n_x)).astype(dtype)
    b = float(rng.standard_normal() * 0.1)
    z = (w.astype(np.float64).T @ X.astype(np.float64, copy=False)) + b
    Y = (rng.random((1, m)) < 1.0 / (1.0 + np.exp(-z))).astype(dtype)
    problem = Problem(w=w, b=b, X=X, Y=Y)
    validate_inputs(problem.w, problem.b, problem.X, problem.Y)
    return problem
