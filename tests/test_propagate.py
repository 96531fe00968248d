"""Every registered implementation's propagate against the independent reference."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from bench.measure.data import make_problem
from implementations import REGISTRY
from tests.helpers import assert_matches_reference, at_offset
from tests.reference import Reference, finite_difference_gradients, reference_gradients

NAMES = list(REGISTRY)
SHAPES = [(1, 1), (1, 5), (5, 1), (13, 7), (64, 3), (3, 40)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("m", "n_x"), SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_propagate_matches_closed_form(name: str, m: int, n_x: int, dtype: str) -> None:
    p = make_problem(m, n_x, seed=7, dtype=dtype)
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    grads = REGISTRY[name].propagate(p.w, p.b, p.X, p.Y)
    assert_matches_reference(grads, ref, dtype, where=f"{name} m={m} n_x={n_x} {dtype}")


@pytest.mark.parametrize("name", NAMES)
def test_propagate_matches_finite_differences(name: str) -> None:
    p = make_problem(9, 3, seed=3)
    dw_fd, db_fd = finite_difference_gradients(p.w, p.b, p.X, p.Y)
    grads = REGISTRY[name].propagate(p.w, p.b, p.X, p.Y)
    np.testing.assert_allclose(grads.dw, dw_fd, rtol=1e-9, atol=1e-12)
    assert abs(grads.db - db_fd) <= 1e-9 * max(1.0, abs(db_fd))


def _views(X: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    return {
        "C": np.ascontiguousarray(X),
        "F": np.asfortranarray(X),
        "strided": wide[:, ::2],
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_memory_layout(name: str, layout: str, dtype: str) -> None:
    p = make_problem(37, 11, seed=5, dtype=dtype)
    X = _views(p.X)[layout]
    assert np.array_equal(X, p.X)
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    grads = REGISTRY[name].propagate(p.w, p.b, X, p.Y)
    assert_matches_reference(grads, ref, dtype, where=f"{name} {layout} {dtype}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("z_scale", [30.0, 100.0, 1000.0])
def test_large_z_is_stable(name: str, dtype: str, z_scale: float) -> None:
    # Half the examples at z = +z_scale, half at -z_scale, both labels on both sides, so
    # confident right and confident wrong predictions both occur.
    m = 8
    X = np.tile(np.array([[1.0, -1.0]]), (1, m // 2)).astype(dtype)
    Y = np.array([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    w = np.array([[z_scale]], dtype=dtype)
    ref = reference_gradients(w, 0.0, X, Y)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grads = REGISTRY[name].propagate(w, 0.0, X, Y)
    assert np.isfinite(grads.cost) and np.isfinite(grads.db) and np.isfinite(grads.dw).all()
    assert_matches_reference(grads, ref, dtype, where=f"{name} |z|={z_scale} {dtype}")


@pytest.mark.parametrize("name", NAMES)
def test_propagate_leaves_inputs_untouched(name: str) -> None:
    p = make_problem(10, 4, seed=2)
    before = [a.copy() for a in (p.w, p.X, p.Y)]
    REGISTRY[name].propagate(p.w, p.b, p.X, p.Y)
    for a, b in zip(before, (p.w, p.X, p.Y), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["numba_fused", "numba_parallel"])
@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("shape", ["blocks", "long rows", "short rows", "spans"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernels_across_their_blocks(name: str, layout: str, shape: str, dtype: str) -> None:
    # blocks: more examples than one features-major block holds (MAX_BLOCK) and than one
    # examples-major batch (MAX_BATCH), with a ragged end: the block loop, its last short block
    # and the sums carried across blocks. long rows and short rows: one block of whole rows, too
    # long for the short-row loops or within their SHORT_ROW_BYTES, with a ragged number of rows.
    # spans: rows of several SPANs and a ragged one, eight rows at a time and a few more (float32
    # sums each span in float32). The small shapes above reach none of them.
    from implementations import numba_fused

    m, n_x = {
        "blocks": (2 * numba_fused.MAX_BLOCK + 37, 5),
        "long rows": (300, 11),
        "short rows": (200, 7),
        "spans": (3 * numba_fused.SPAN + 37, 19),
    }[shape]
    low, high = numba_fused.SHORT_ROW_BYTES
    assert shape in ("blocks", "spans") or (low <= m * 8 < high) == (shape == "short rows")
    p = make_problem(m, n_x, seed=11, dtype=dtype)
    X = _views(p.X)[layout]
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    grads = REGISTRY[name].propagate(p.w, p.b, X, p.Y)
    assert_matches_reference(grads, ref, dtype, where=f"{name} m={m} {layout} {dtype}")


@functools.cache
def _plan_reference(m: int, n_x: int, dtype: str) -> Reference:
    p = make_problem(m, n_x, seed=11, dtype=dtype)  # one exact reference for both plans (mpmath takes seconds)
    return reference_gradients(p.w, p.b, p.X, p.Y)


@pytest.mark.parametrize("plan", ["blocks", "rows"])
@pytest.mark.parametrize("shape", [(2 * 8192 + 37, 5), (3 * 1024 + 37, 19), (300, 11), (200, 7)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_each_plan_a_set_up_may_keep_matches_the_reference(plan: str, shape: tuple[int, int], dtype: str) -> None:
    # numba_fused's set-up times its plans for features-major X out of cache and keeps the faster
    # (numba_parallel's too, on one thread): each must be right wherever it is asked for, over
    # several blocks with a ragged end, over spans, and over long and short rows.
    from implementations import numba_fused

    m, n_x = shape
    p = make_problem(m, n_x, seed=11, dtype=dtype)
    ref = _plan_reference(m, n_x, dtype)
    grads = numba_fused.step_with(p.w, p.b, p.X, p.Y, plan)  # type: ignore[arg-type]
    assert_matches_reference(grads, ref, dtype, where=f"numba_fused {plan} m={m} n_x={n_x} {dtype}")


def test_only_features_major_x_larger_than_a_block_gets_its_plan_timed() -> None:
    from implementations import numba_fused

    m = numba_fused.BLOCK_BYTES // 8 // 1_000 + 8  # just over one block at n_x = 1,000
    assert numba_fused.chooses_plan(np.empty((1_000, m)))
    assert not numba_fused.chooses_plan(np.empty((1_000, m - 16)))  # one block: whole rows anyway
    assert not numba_fused.chooses_plan(np.empty((1_000, m), order="F"))  # examples-major: columns
    assert not numba_fused.chooses_plan(np.empty((1_000, 2 * m))[:, ::2])  # strided: blocks
    # The forced blocks ignore the whole-row rule; the rule's own choice is unchanged.
    assert (
        numba_fused.block_size(10_000, 10_000, 8, min_segment=0) < 10_000 == numba_fused.block_size(10_000, 10_000, 8)
    )


def test_one_thread_takes_whole_rows_when_segments_would_be_short() -> None:
    from implementations import numba_fused

    # 10,000 features: a 32 MiB block holds 419 examples, 3.3 KB segments.
    n_x = 10_000
    assert numba_fused.block_size(n_x, 10_000, 8) == 10_000
    assert numba_fused.block_size(n_x, 10_000, 8, parts=2, block_bytes=8 << 20) < 200
    # 1,000 features: 4,194 examples per block, 33 KB segments.
    assert numba_fused.block_size(1_000, 100_000, 8) < 5_000
    # One block already: nothing to give way to.
    assert numba_fused.block_size(n_x, 100, 8) == 104


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "shape",
    [
        (8192 + 64, 2),  # two blocks, rows aligned alike (a stride of whole 64-byte lines)
        (8192 + 37, 2),  # two blocks, rows aligned differently
        (208, 9),  # one block of short rows
        (1024, 64),  # numba_parallel's threads (64K elements), rows aligned alike
    ],
)
def test_kernels_wherever_x_starts_within_a_cache_line(dtype: str, shape: tuple[int, int]) -> None:
    # The features-major kernels start their blocks on a cache line where every row allows it,
    # and take the examples before it as a block of their own. NumPy puts large arrays 16 bytes
    # past a line, small ones anywhere: each start within a line must give the same gradients.
    m, n_x = shape
    p = make_problem(m, n_x, seed=13, dtype=dtype)
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    for name in ("numba_fused", "numba_parallel"):
        for offset in range(0, 64, p.X.itemsize):
            grads = REGISTRY[name].propagate(p.w, p.b, at_offset(p.X, offset), p.Y)
            assert_matches_reference(grads, ref, dtype, where=f"{name} m={m} n_x={n_x} {dtype} at +{offset} B")


def test_aligned_lead_counts_the_examples_before_the_rows_first_cache_line() -> None:
    from implementations import numba_fused

    X = np.zeros((4, 64))
    for offset in range(0, 64, 8):
        lead = numba_fused.aligned_lead(at_offset(X, offset))
        assert lead == (64 - offset) % 64 // 8
        assert lead == 0 or at_offset(X, offset)[:, lead:].ctypes.data % 64 == 0
    # Rows of 100 float64 (800 bytes) start at different places in a line: nothing to gain.
    assert numba_fused.aligned_lead(at_offset(np.zeros((4, 100)), 16)) == 0
    # float32: up to 15 examples.
    assert numba_fused.aligned_lead(at_offset(np.zeros((4, 64), dtype=np.float32), 4)) == 15
    # A line boundary past the last example (two examples of rows 64 bytes apart): none.
    assert numba_fused.aligned_lead(at_offset(np.zeros((4, 8)), 16)[:, :2]) == 0
    assert numba_fused.aligned_lead(at_offset(np.zeros((4, 8)), 16)) == 6


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "threads"), [("numba_fused", 1), ("numba_parallel", 2)])
def test_kernels_that_prefetch_short_columns(name: str, threads: int, dtype: str) -> None:
    # Examples-major X larger than the cache, with short columns, takes the prefetching loop,
    # which asks for lines past the end of X on its last groups. A small problem repeated along
    # the examples has the small problem's exact gradients (every sum and m grow alike), so the
    # independent reference stays cheap; 37 examples leave a ragged last batch.
    from bench.measure.timing import available_cores, thread_limits
    from implementations import numba_fused, numba_parallel

    if threads > available_cores():
        pytest.skip(f"needs {threads} cores")
    p = make_problem(37, 40, seed=17, dtype=dtype)
    repeats = -(-(numba_fused.BLOCK_BYTES + 1) // p.X.nbytes)
    X = np.asfortranarray(np.tile(p.X, (1, repeats)))
    Y = np.tile(p.Y, (1, repeats))
    assert numba_fused.prefetches(X, threads), "the shape no longer takes the prefetching loop"
    if name == "numba_parallel":  # and numba_parallel hands it out in runs, the last one ragged
        runs, width = numba_parallel.handout(X, threads)
        assert runs > threads and X.shape[1] % width
    ref = reference_gradients(p.w, p.b, p.X, p.Y)
    with thread_limits(threads):
        grads = REGISTRY[name].propagate(p.w, p.b, X, Y)
    assert_matches_reference(grads, ref, dtype, where=f"{name} {dtype} {X.shape} prefetching")


def test_prefetching_is_for_short_columns_out_of_cache() -> None:
    from implementations import numba_fused

    def big(n_x: int, dtype: type = np.float64) -> np.ndarray[Any, Any]:
        # Untouched, so never paged in: only the shape and item size matter here.
        m = numba_fused.BLOCK_BYTES // (n_x * np.dtype(dtype).itemsize) + 1
        return np.empty((n_x, m), dtype=dtype, order="F")

    assert numba_fused.prefetches(big(100), 1) and not numba_fused.prefetches(big(100), 2)
    assert numba_fused.prefetches(big(64), 1) and numba_fused.prefetches(big(64), 2)
    assert numba_fused.prefetches(big(200, np.float32), 1)  # 800-byte columns
    assert not numba_fused.prefetches(big(16), 1)  # 128 bytes: too little to ask for
    assert not numba_fused.prefetches(big(1000), 1)  # the hardware's prefetchers keep up
    in_cache = np.empty((100, numba_fused.BLOCK_BYTES // 800), order="F")
    assert not numba_fused.prefetches(in_cache, 1)
