"""numba_fused's single pass over X, split over Numba's threads by chunks of examples.

Each thread runs numba_fused's kernel on its own examples into its own partial dw, db and
cost, and the partials are added up at the end:

- examples-major X: runs of whole columns (HANDOUT_BYTES of X each) handed out one at a time
  as threads free up, so that a thread the OS holds back leaves its share to the others instead
  of holding up the step. Which thread adds which run changes from call to call, so the last
  bits of dw, db and the cost may too;
- features-major X and other strides: numba_fused's blocks, smaller (SHARED_BLOCK_BYTES over
  the thread count each: the threads share the last-level cache), handed out one at a time in
  order as threads free up, as the columns' runs are: the threads read neighbouring segments of
  the same rows at the same time rather than two distant parts of X, and a thread held back
  leaves its blocks to the others (taken_blocks). As there, the blocks start on a cache line
  where the rows allow it, and the first thread also takes the examples before it. Which thread
  adds which block changes from call to call, so the last bits of dw, db and the cost may too;
- features-major X that stays in cache with at least as many features as examples (the
  course's shape): one chunk of whole rows per thread instead (splits_rows). Each thread adds
  its rows' share of every z, the shares are added up, and each thread then makes its own rows
  of dw: two parallel loops, X read twice, from cache.
- features-major C-ordered X out of cache: the blocks or the row split, whichever ran faster
  on that X when the step was set up (setup, numba_fused.PLANS); propagate itself keeps the blocks.

There are numba.get_num_threads() chunks, read at each call, so numba.set_num_threads(n)
before a call decides how many threads it uses. Steps too small to repay waking the thread
pool run on the calling thread alone (numba_fused).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, register_jitable
from numpy.typing import NDArray

from implementations import numba_fused
from implementations.interface import (
    FloatArray,
    Goal,
    Gradients,
    Implementation,
    Prepared,
    as_gradients,
    fastest,
    summary_of,
)

# Below this many elements of X (512 KiB of float64) waking the thread pool and collecting
# the partials costs what the second thread saves: measured at 2 threads, one thread and two
# both take ~20 us at 64K elements, and two are faster from 128K on.
MIN_PARALLEL_ELEMENTS = 1 << 16

# Bytes of X in flight in the features-major kernel, all threads' blocks together: each thread's
# block is this over the thread count. numba_fused's 32 MiB alone spills the last-level cache a
# little, which one thread repays with longer row segments; two threads' blocks compete for it.
# Measured on an AMD EPYC (32 MiB L3, 2 threads; interleaved rounds, 0.4 s apart so that no BLAS
# pool is still spinning), against fully_vectorized at 2 threads, 8 MiB per thread against 32:
# 4,096 x 16,384 1.33x against 1.15x, 10,000 x 10,000 1.22x against 1.05x, 1,000 x 100,000
# 1.60x against 1.28x, 1,000 x 10,000 1.34x against 0.98x; 16 MiB per thread lay between.
SHARED_BLOCK_BYTES = 16 * 1024 * 1024


# Examples-major X goes to the threads in runs of about this many bytes of whole columns.
# Measured on an AMD EPYC (2 threads, interleaved in a random order, blocks of 15 calls): with one
# chunk per thread, 6 of the 7 slow calls at 10,000 x 10,000 were ones where the second thread
# finished 4-18 ms after the first (clock stamps in each thread). Handed out in 6 MiB runs, the
# median slowest / fastest of a block of 15 calls went from 1.13 to 1.07-1.09 there and at
# 1,000 x 100,000, medians within 3%; in 4 MiB runs, at six smaller shapes (100 x 1,000 to
# 100 x 100,000), medians from 14% faster to 5% slower than one chunk per thread. Numba's own
# dynamic schedule (parallel_chunksize) was 4-40% slower.
HANDOUT_BYTES = 4 * 1024 * 1024


def handout(X: FloatArray, chunks: int) -> tuple[int, int]:
    """(runs, columns per run) for examples-major X: about HANDOUT_BYTES each, a multiple of 8
    columns, at least one run per thread."""
    n_x, m = X.shape
    runs = max(chunks, n_x * m * X.itemsize // HANDOUT_BYTES)
    width = max(8, (-(-m // runs) + 7) // 8 * 8)
    return -(-m // width), width


def _take(typingctx: Any, counter: Any) -> Any:
    """counter[0] += 1, atomically; returns the value before (LLVM atomicrmw): the next run to take."""
    if not (isinstance(counter, types.Array) and counter.ndim == 1 and counter.dtype == types.int64):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        first = numba_fused.element_pointer(
            context, builder, signature.args[0], args[0], context.get_constant(types.intp, 0)
        )
        # monotonic: the counter orders nothing else; the loop's end joins the threads
        return builder.atomic_rmw("add", first, context.get_constant(types.int64, 1), "monotonic")

    return types.int64(counter), codegen


take: Any = intrinsic(_take)


def thread_block(n_x: int, m: int, itemsize: int, threads: int) -> int:
    """Examples per block when `threads` threads share the features-major kernel's blocks of m examples.

    An X no larger than one thread's block (numba_fused.BLOCK_BYTES) stays in cache whatever
    the blocks: one block per thread then keeps the row segments longest (the course's shape,
    20 MB, on 2 threads, interleaved by hand on an AMD EPYC: 1.26x fully_vectorized in two
    blocks of 105 examples against 1.11x in four of 56; that shape now goes by rows, splits_rows).
    A row stride of 2^k x an odd number of lines puts every row's segment in the same 1/2^k of
    the cache sets, so a block no longer stays in cache for its dw pass: at 4,096 x 16,384
    (a 128 KiB stride) on 2 threads, by hand, 18.5 ms against 15.6 ms at m = 16,392 (an odd
    number of lines), while fully_vectorized's two streaming passes took 17.4 ms at both.
    """
    if threads < 2:
        return numba_fused.block_size(n_x, m, itemsize)
    fits = n_x * m * itemsize <= numba_fused.BLOCK_BYTES
    total = numba_fused.BLOCK_BYTES if fits else SHARED_BLOCK_BYTES
    return numba_fused.block_size(n_x, m, itemsize, threads, total // threads)


def block_plan(X: FloatArray, threads: int) -> tuple[int, int]:
    """(lead, block) for `threads` threads sharing features-major X: the examples before the rows'
    first cache line (numba_fused.aligned_lead), which the first thread takes, and the examples
    per block after them (thread_block). The roof's one-pass read reads X in the same plan."""
    lead = numba_fused.aligned_lead(X)
    return lead, thread_block(X.shape[0], X.shape[1] - lead, X.itemsize, threads)


# Callable from the compiled kernel as well as from Python (the roof's read).
register_jitable(thread_block)


def splits_rows(X: FloatArray) -> bool:
    """Whether features-major X goes to the threads by rows (see the module): a C-ordered X no
    larger than one block (numba_fused.BLOCK_BYTES) with at least as many features as examples
    (other strides keep the blocks: one compiled kernel fewer).

    Examples split into one block per thread leave such rows in short segments. Measured on an
    AMD EPYC (2 threads, interleaved in a random order, median of 7 blocks, against one block
    per thread): 12,288 x 209 (the course's shape) 1.30-1.46x, 16,384 x 128 1.60x, 100,000 x 30
    2.21x, 6,000 x 500 1.53x, 8,192 x 400 1.13x, 3,000 x 1,000 1.11x, 2,000 x 209 1.16x,
    1,000 x 100 1.18x, 4,096 x 1,000 (32 MiB, past this cache) 0.95-1.04x; with fewer features
    than examples it lost: 256 x 1,000 0.96x, 64 x 2,000 0.85x, 32 x 4,000 0.73x.
    """
    n_x, m = X.shape
    return bool(n_x >= m and n_x * m * X.itemsize <= numba_fused.BLOCK_BYTES and X.flags.c_contiguous)


def _partials(chunks: int, n_x: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    # Rows padded to whole 64-byte lines, so no two threads write to the same cache line.
    stride = (n_x + 7) // 8 * 8
    return np.zeros((chunks, stride)), np.zeros(chunks), np.zeros(chunks)


def _reduce(
    dw_parts: FloatArray, db_parts: FloatArray, cost_parts: FloatArray, m: int, X: FloatArray
) -> numba_fused.StepResult:
    n_x = X.shape[0]
    dw = np.zeros(n_x)
    db = 0.0
    cost = 0.0
    for c in range(dw_parts.shape[0]):
        for j in range(n_x):
            dw[j] += dw_parts[c, j]
        db += db_parts[c]
        cost += cost_parts[c]
    return numba_fused.finish(dw, db, cost, m, X)


_partials_jit: Any = numba.njit(inline="always")(_partials)
_handout_jit: Any = numba.njit(inline="always")(handout)
_block_plan_jit: Any = numba.njit(inline="always")(block_plan)
_reduce_jit: Callable[..., numba_fused.StepResult] = numba.njit(inline="always")(_reduce)


def _propagate_columns(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, chunks: int) -> numba_fused.StepResult:
    n_x, m = X.shape
    w64 = numba_fused.weights_float64(w)
    prefetching = numba_fused.prefetches_jit(X, chunks)
    dw_parts, db_parts, cost_parts = _partials_jit(chunks, n_x)
    runs, width = _handout_jit(X, chunks)
    counter = np.zeros(8, np.int64)  # counter[0]: the next run to take (and 64 bytes of room, as measured)
    for c in numba.prange(chunks):
        db = 0.0
        cost = 0.0
        run = take(counter)
        while run < runs:
            lo = run * width
            run_db, run_cost = numba_fused.columns(w64, b, X, Y, lo, min(lo + width, m), dw_parts[c], prefetching)
            db += run_db
            cost += run_cost
            run = take(counter)
        db_parts[c] = db
        cost_parts[c] = cost
    return _reduce_jit(dw_parts, db_parts, cost_parts, m, X)


# Features-major blocks: taken one at a time as threads free up (take), not dealt out in turn
# (thread t taking blocks t, t + T, ...). Measured on an AMD EPYC (Zen 5) VM, 2 threads, by hand
# (interleaved in a random order, 0.25 s apart, median of 7-9 blocks of 15 calls; the spread is
# a block's slowest / fastest call), dealt against taken: 4,096 x 16,384 15.1 against 14.1 ms
# (spread 1.15 against 1.13), 16.8 against 16.4 (1.23 against 1.16) and 14.6 against 13.9 (1.07
# against 1.12); 10,000 x 10,000 30.0 against 27.7 (1.23 against 1.10); 1,000 x 100,000 22.3
# against 22.3 (1.12 against 1.12). Blocks twice as large, taken alike: from 4% faster to 11% slower.
# In cache, within the noise of the blocks dealt out (1,000 x 3,000 0.31 against 0.30 ms, 256 x 10,000
# 0.24 against 0.26, 100 x 20,000 0.21 against 0.22; 2,000 x 1,000, forced to the blocks, 0.20 both).
def _taken_blocks(
    wx: FloatArray,
    b: float,
    X: FloatArray,
    Y: FloatArray,
    lead: int,
    first: bool,
    block: int,
    hi: int,
    dw: FloatArray,
    counter: NDArray[np.int64],
) -> tuple[float, float]:
    """The blocks of `block` examples from lead on, below hi, that this thread takes from counter
    (take) until none is left, after examples 0..lead-1 as a block of their own where `first`:
    adds their X dz to dw. Returns (sum dz, sum loss) over those examples."""
    z = numba_fused.aligned_empty(max(block, lead))  # z of a block's examples, then their dz in place
    dz_buffer = numba_fused.narrow_buffer(max(block, lead), X)
    db = 0.0
    cost = 0.0
    if first and lead > 0:
        db, cost = numba_fused.one_block(wx, b, X, Y, 0, lead, z, dw, dz_buffer)
    count = -(-(hi - lead) // block)
    k = take(counter)
    while k < count:
        start = lead + k * block
        block_db, block_cost = numba_fused.one_block(wx, b, X, Y, start, min(start + block, hi), z, dw, dz_buffer)
        db += block_db
        cost += block_cost
        k = take(counter)
    return db, cost


taken_blocks: Any = numba.njit(inline="always", fastmath=numba_fused.FASTMATH)(_taken_blocks)


def _propagate_blocks(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, chunks: int) -> numba_fused.StepResult:
    n_x, m = X.shape
    lead, block = _block_plan_jit(X, chunks)
    wx = numba_fused.weights_like(w, X)
    dw_parts, db_parts, cost_parts = _partials_jit(chunks, n_x)
    counter = np.zeros(8, np.int64)  # counter[0]: the next block to take
    for c in numba.prange(chunks):
        # the examples before the first line go to the first thread
        db_parts[c], cost_parts[c] = taken_blocks(wx, b, X, Y, lead, c == 0, block, m, dw_parts[c], counter)
    return _reduce_jit(dw_parts, db_parts, cost_parts, m, X)


def _row_range(c: int, chunks: int, n_x: int) -> tuple[int, int]:
    # Bounds on multiples of 8 rows: the eight-row loops stay whole, and no two threads write
    # dw on the same cache line.
    return c * n_x // chunks // 8 * 8, (n_x if c + 1 == chunks else (c + 1) * n_x // chunks // 8 * 8)


_row_range_jit: Any = numba.njit(inline="always")(_row_range)


# The row split keeps one fixed range of rows per thread. Groups of rows taken as threads free up
# (about HANDOUT_BYTES each out of cache, one per thread in cache; in the dw pass each thread first
# taking the groups it read) were measured on the AMD EPYC (Zen 5) VM, 2 threads, by hand as above,
# against the fixed ranges: out of cache within 1% (10,000 x 10,000 21.7 against 22.0 ms, 5,000 x
# 20,000 31.9 against 31.7, 4,096 x 16,384 16.2 against 16.0, float32 15.4 against 15.5), spreads
# 1.09-1.11 against 1.08-1.11; in cache slower (3,000 x 1,000 0.38 against 0.32 ms, 12,288 x 209
# 0.31 against 0.30): in a short step a thread that takes both groups before the other wakes runs
# the pass alone. Not kept.
def _propagate_rows(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, chunks: int) -> numba_fused.StepResult:
    n_x, m = X.shape
    wx = numba_fused.weights_like(w, X)
    short = numba_fused.short_rows(X)
    stride = (m + 7) // 8 * 8  # each thread's share of z on lines of its own
    z_parts = np.zeros((chunks, stride))
    for c in numba.prange(chunks):
        lo, hi = _row_range_jit(c, chunks, n_x)
        numba_fused.z_rows(wx[lo:hi], X[lo:hi], z_parts[c, :m], short)
    z = numba_fused.aligned_empty(m)  # z, then dz in place
    for i in range(m):
        total = b
        for c in range(chunks):
            total += z_parts[c, i]
        z[i] = total
    db, cost = numba_fused.block_sigmoid_and_loss(z, Y[0])
    dzx = numba_fused.narrow(z, numba_fused.narrow_buffer(m, X))
    dw = np.zeros(n_x)
    for c in numba.prange(chunks):
        lo, hi = _row_range_jit(c, chunks, n_x)
        numba_fused.dw_rows(X[lo:hi], dzx, dw[lo:hi], short)
    return numba_fused.finish(dw, db, cost, m, X)


_kernel_columns: Any = numba.njit(parallel=True, nogil=True, fastmath=numba_fused.FASTMATH)(_propagate_columns)
_kernel_rows: Any = numba.njit(parallel=True, nogil=True, fastmath=numba_fused.FASTMATH)(_propagate_rows)
_kernel_blocks: Any = numba.njit(parallel=True, nogil=True, fastmath=numba_fused.FASTMATH)(_propagate_blocks)


# Features-major X out of cache: the blocks (X read once, in row segments of a block's examples) or
# the row split (X read twice, in whole rows). Which is faster depends on the machine, so the set-up
# times both on the X it is given (setup) and the step keeps the faster. Measured by hand on an AMD
# EPYC (Zen 4) VM, 2 threads, interleaved in a random order, median of 5 blocks of 9 calls, against
# fully_vectorized: rows 1.41x and blocks 0.61x at 10,000 x 10,000, 1.48x and 0.84x at 5,000 x 20,000,
# 1.42x and 1.15x at 2,000 x 50,000, 1.22x and 0.95x at 4,096 x 16,384, but 1.16x and 1.36x at
# 3,000 x 30,000, 1.21x and 1.40x at 1,400 x 60,000, 1.50x and 1.61x at 500 x 200,000; neither the
# segments' length nor the row count separated them. On the AMD EPYC (Zen 5) the blocks were
# 1.22-1.60x at four such shapes (SHARED_BLOCK_BYTES). The plans are numba_fused's (PLANS).


def chooses_plan(X: FloatArray, chunks: int) -> bool:
    """Whether a set-up times the PLANS for X on `chunks` threads: C-ordered features-major X larger
    than one thread's block (numba_fused.BLOCK_BYTES), which the static rule (splits_rows) gives to
    the blocks."""
    n_x, m = X.shape
    return bool(min(chunks, m) >= 2 and n_x * m >= MIN_PARALLEL_ELEMENTS and numba_fused.chooses_plan(X))


def _propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, plan: numba_fused.Plan | None) -> Gradients:
    n_x, m = X.shape
    if n_x * m < MIN_PARALLEL_ELEMENTS:  # checked first: get_num_threads() costs ~0.7 us
        return numba_fused.step_with(w, b, X, Y, plan)
    chunks = min(numba.get_num_threads(), m)
    if chunks < 2:
        return numba_fused.step_with(w, b, X, Y, plan)
    if numba_fused.examples_major(X):
        dw, db, cost = _kernel_columns(w, float(b), X, Y, chunks)
    elif plan == "rows" or (plan is None and splits_rows(X)):
        dw, db, cost = _kernel_rows(w, float(b), X, Y, chunks)
    else:
        dw, db, cost = _kernel_blocks(w, float(b), X, Y, chunks)
    return Gradients(dw=dw.reshape(-1, 1), db=float(db), cost=float(cost))


def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
    """One forward and backward pass, each thread reading its share of X from memory once."""
    return _propagate(w, b, X, Y, None)


def choose_plan(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> numba_fused.Plan | None:
    """The faster of the PLANS for X at the thread count set now (fastest; on one thread numba_fused's
    choice), or None where there is no choice."""
    chunks = min(numba.get_num_threads(), X.shape[1])
    if chunks < 2:
        return numba_fused.choose_plan(w, b, X, Y)
    if not chooses_plan(X, chunks):
        return None
    plans: dict[str, Callable[[], object]] = {p: partial(_propagate, w, b, X, Y, p) for p in numba_fused.PLANS}
    return cast(numba_fused.Plan, fastest(plans))


def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
    """Chooses the plan by timing (choose_plan; untimed set-up, at the thread count it will run), then steps with it."""
    plan = choose_plan(w, b, X, Y)
    return Prepared(step=partial(_propagate, w, b, X, Y, plan), gradients=as_gradients, plan=plan)


IMPLEMENTATION = Implementation(
    name="numba_parallel",
    propagate=propagate,
    summary=summary_of(__doc__),
    setup_fn=setup,
    threading="numba",
    jit=True,
    reads_of_x=1,
    strided_walk=True,  # in C order each block of examples walks all n_x rows
    layout_note="as the one-thread fused kernel, split over threads",
    # A step split over threads waits for the slowest: on a shared host that can make it less
    # steady than the BLAS pool's, which the report checks (steady).
    goal=Goal(speedup=(("F", 1.75), ("C", 1.15)), all_threads=True, roof_share=(("F", 0.9),), steady=True),
)
