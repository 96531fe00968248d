"""numba_parallel's threaded kernels, which the small problems of the other tests never reach.

Problems under MIN_PARALLEL_ELEMENTS run on one thread (numba_fused); here the threshold is
lowered to 0 so that the chunked kernels, their partial sums and the reduction are checked
against the exact reference in every layout and dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import pytest

from bench.measure.data import make_problem
from bench.measure.timing import available_cores, thread_limits
from implementations import REGISTRY, numba_fused, numba_parallel
from tests.helpers import assert_matches_reference, at_offset
from tests.reference import Reference, reference_gradients

pytestmark = pytest.mark.skipif(available_cores() < 2, reason="needs at least 2 cores to take the threaded path")


@pytest.fixture(autouse=True)
def _threaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(numba_parallel, "MIN_PARALLEL_ELEMENTS", 0)
    with thread_limits(2):
        yield


@functools.cache
def _reference(m: int, n_x: int, dtype: str) -> Reference:
    # One exact reference per problem, for its three layouts (mpmath takes seconds at 26K elements).
    p = make_problem(m, n_x, seed=13, dtype=dtype)
    return reference_gradients(p.w, p.b, p.X, p.Y)


@pytest.mark.parametrize(
    ("m", "n_x"),
    [(2, 1), (2, 7), (37, 11), (64, 3), (5, 40), (129, 17), (20, 45), (160, 165)],  # the last two: by rows
)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_threaded_kernels_match_the_reference(m: int, n_x: int, layout: str, dtype: str) -> None:
    p = make_problem(m, n_x, seed=13, dtype=dtype)
    if layout == "F":
        X = np.asfortranarray(p.X)
    elif layout == "strided":
        wide = np.zeros((n_x, 2 * m), dtype=p.X.dtype)
        wide[:, ::2] = p.X
        X = wide[:, ::2]
    else:
        X = p.X
    ref = _reference(m, n_x, dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grads = numba_parallel.propagate(p.w, p.b, X, p.Y)
    assert_matches_reference(grads, ref, dtype, where=f"numba_parallel threaded m={m} n_x={n_x} {layout} {dtype}")


def test_threaded_kernels_are_stable_at_large_z() -> None:
    X = np.tile(np.array([[1.0, -1.0]]), (1, 8))
    Y = np.tile(np.array([[1.0, 0.0, 0.0, 1.0]]), (1, 4))
    w = np.array([[1000.0]])
    ref = reference_gradients(w, 0.0, X, Y)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grads = numba_parallel.propagate(w, 0.0, X, Y)
    assert_matches_reference(grads, ref, "float64", where="numba_parallel threaded |z|=1e3")


def test_features_major_x_in_cache_with_more_features_than_examples_goes_by_rows() -> None:
    # The row split (two parallel loops: z's shares, then each thread's rows of dw) for the course's
    # shape and its like; the example split for the rest. The last two shapes above take it in C
    # order: short rows (160 float64 examples, 1,280 bytes), and eight-row groups with a ragged end.
    assert numba_parallel.splits_rows(np.empty((165, 160))) and numba_parallel.splits_rows(np.empty((45, 20)))
    assert numba_parallel.splits_rows(np.empty((12_288, 209)))  # the course's shape
    assert not numba_parallel.splits_rows(np.empty((129, 17)).T)  # fewer features than examples
    assert not numba_parallel.splits_rows(np.empty((12_288, 2_000)))  # 196 MB: out of cache, blocks
    assert not numba_parallel.splits_rows(np.empty((12_288, 418))[:, ::2])  # strided: blocks


@pytest.mark.parametrize(
    ("n_x", "m", "itemsize"), [(40, 20_000, 8), (40, 19_999, 4), (1_000, 100_000, 8), (3, 300_001, 8), (5_000, 9, 8)]
)
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_examples_major_x_is_handed_out_in_runs_that_cover_it_once(
    n_x: int, m: int, itemsize: int, threads: int
) -> None:
    X = np.empty((n_x, m), dtype=np.float64 if itemsize == 8 else np.float32, order="F")
    runs, width = numba_parallel.handout(X, threads)
    # Runs of whole 8-column groups (the kernel's loops), end to end: the last one holds the rest.
    assert width % 8 == 0 and (runs - 1) * width < m <= runs * width
    # At least one run per thread where there are the columns for it, and about HANDOUT_BYTES each.
    assert runs >= min(threads, -(-m // 8))
    if X.nbytes >= 4 * numba_parallel.HANDOUT_BYTES:
        assert 0.5 <= width * n_x * itemsize / numba_parallel.HANDOUT_BYTES < 2


@pytest.mark.parametrize(("m", "n_x"), [(37, 11), (129, 17), (300, 45)])
@pytest.mark.parametrize("plan", numba_fused.PLANS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_both_plans_for_features_major_x_match_the_reference(m: int, n_x: int, plan: str, dtype: str) -> None:
    # The set-up picks one of these by timing them, so each must be right at any shape, in or out of cache.
    p = make_problem(m, n_x, seed=13, dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grads = numba_parallel._propagate(p.w, p.b, p.X, p.Y, plan)  # type: ignore[arg-type]
    assert_matches_reference(grads, _reference(m, n_x, dtype), dtype, where=f"numba_parallel {plan} m={m} n_x={n_x}")


@pytest.mark.parametrize("offset", [0, 24])
def test_blocks_taken_as_threads_free_up_cover_every_example_once(offset: int) -> None:
    # Past one block (numba_fused.BLOCK_BYTES), so the threads share smaller blocks, ten of them here,
    # taken one at a time; at offset 24 the rows' first 5 examples lie before a cache line and are the
    # first thread's block of its own. A block read twice or left out moves dw by far more than rounding.
    p = make_problem(70_000, 64, seed=5)
    X = at_offset(p.X, offset)
    lead, block = numba_parallel.block_plan(X, 2)
    assert lead == (5 if offset else 0) and -(-(X.shape[1] - lead) // block) >= 8
    a = 1.0 / (1.0 + np.exp(-(p.w.T @ X + p.b)))
    dz = a - p.Y
    grads = numba_parallel._propagate(p.w, p.b, X, p.Y, "blocks")
    np.testing.assert_allclose(grads.dw, X @ dz.T / X.shape[1], rtol=1e-9, atol=1e-15)
    assert grads.db == pytest.approx(dz.mean(), rel=1e-9, abs=1e-15)
    cost = -np.mean(p.Y * np.log(a) + (1 - p.Y) * np.log1p(-a))
    assert grads.cost == pytest.approx(cost, rel=1e-9)


def test_only_features_major_x_out_of_cache_gets_its_plan_timed() -> None:
    big = numba_fused.BLOCK_BYTES // 8 // 1_000 + 8  # examples: just over one block at n_x = 1,000
    assert numba_parallel.chooses_plan(np.empty((1_000, big)), 2)
    assert not numba_parallel.chooses_plan(np.empty((1_000, big)), 1)  # one thread: numba_fused
    assert not numba_parallel.chooses_plan(np.empty((1_000, big), order="F"), 2)  # examples-major: columns
    assert not numba_parallel.chooses_plan(np.empty((1_000, 2 * big))[:, ::2], 2)  # strided: blocks
    assert not numba_parallel.chooses_plan(np.empty((1_000, big - 16)), 2)  # in one block: the static rule


def test_the_set_up_keeps_the_plan_that_ran_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    from implementations import interface

    slow = {"blocks": 0.0, "rows": 0.0}
    seen: list[str] = []

    def fake(w: object, b: object, X: object, Y: object, plan: str) -> str:
        seen.append(plan)
        return plan

    now = [0.0]

    def clock() -> float:  # each call of a plan advances the clock by that plan's cost
        now[0] += slow[seen[-1]] if seen else 0.0
        return now[0]

    monkeypatch.setattr(numba_parallel, "chooses_plan", lambda X, chunks: True)
    monkeypatch.setattr(numba_parallel, "_propagate", fake)
    p = make_problem(20, 5, seed=1)
    for slower, faster in (("blocks", "rows"), ("rows", "blocks")):
        slow.update({slower: 2.0, faster: 1.0})
        monkeypatch.setattr(
            numba_parallel, "fastest", lambda c, clock=clock: interface.fastest(c, calls=3, clock=clock)
        )
        assert numba_parallel.choose_plan(p.w, p.b, p.X, p.Y) == faster
        assert numba_parallel.setup(p.w, p.b, p.X, p.Y).step() == faster


def test_fastest_takes_the_shortest_median_and_calls_each_candidate_untimed_first() -> None:
    from implementations.interface import fastest

    calls: list[str] = []
    costs = {"a": [9.0, 1.0, 1.0, 1.0], "b": [1.0, 2.0, 2.0, 0.5]}  # a's untimed first call is slow
    now = [0.0]

    def candidate(name: str) -> object:
        now[0] += costs[name][sum(c == name for c in calls)]
        calls.append(name)
        return None

    assert fastest({k: functools.partial(candidate, k) for k in costs}, calls=3, clock=lambda: now[0]) == "a"
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]


@pytest.mark.parametrize("name", ["numba_fused", "numba_parallel"])
def test_a_set_up_out_of_cache_names_the_plan_it_kept_and_steps_right(name: str) -> None:
    # Just over one block of features-major X: the set-up times both plans (at the threads set now)
    # and says which it kept; its step must give the same gradients as propagate's rule.
    p = make_problem(numba_fused.BLOCK_BYTES // 8 // 500 + 64, 500, seed=3)
    prepared = REGISTRY[name].setup(p.w, p.b, p.X, p.Y)
    assert prepared.plan in numba_fused.PLANS
    got, want = prepared.gradients(prepared.step()), REGISTRY[name].propagate(p.w, p.b, p.X, p.Y)
    np.testing.assert_allclose(got.dw, want.dw, rtol=1e-9, atol=1e-15)
    assert got.cost == pytest.approx(want.cost, rel=1e-12) and got.db == pytest.approx(want.db, rel=1e-9, abs=1e-15)
    small = make_problem(300, 40, seed=3)
    assert REGISTRY[name].setup(small.w, small.b, small.X, small.Y).plan is None  # in cache: no choice
