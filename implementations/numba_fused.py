"""One compiled pass over X: z, dz and dw for each group of examples while it is still in cache.

fully_vectorized reads X from memory twice, once for Z = w.T X and once for dw = X dZ.T.
Here each group of examples is read from memory once: its z needs all of its features, and
while those are still in cache the same values give the group's share of dw. How the groups
are shaped depends on X's layout, checked once per call (examples_major):

- examples-major (each example's column contiguous): batches of up to 64 columns; the dot
  products four columns at a time (one loop over their features, four columns sharing each
  load of w), then the batch's activations and losses in one vectorised loop, then dw eight
  columns at a time (sharing each load and store of dw), last columns first, while the batch
  sits in L2.
- features-major (each feature's row contiguous) and any other strides: blocks of B
  examples (block_size: up to BLOCK_BYTES of X). z for the block with the loop over its
  examples innermost, eight rows at a time; then a, dz and the loss of the block in the
  same vectorised loop (logistic.sigmoid_and_loss_block); then dw, a dot product of each
  row's segment with dz, eight rows at a time and last rows first (those are the ones
  still in L2). Where every row's segment can start on a cache line, the blocks do (the
  few examples before the first line go first, as a block of their own: aligned_lead).
  Two exceptions, one block of whole rows each:
  - on one thread, when a block's row segments would be short (n_x above about 5,500 in
    float64), X is read twice, the second time in reverse so that it starts with the rows
    still in cache, which is faster there than short segments (from the first line, as
    above, where the rows allow it);
  - rows of 1.25-2 KiB, of an X that fits one block, go one row (z) and four rows (dw) at
    a time, from example 0.
  Where X is larger than one block, the set-up times the blocks and the whole rows on that X and
  keeps the faster (setup, PLANS); propagate keeps the rule above.

Sums run in float64 whatever X's dtype, and dw is rounded to X's dtype at the end. For float32
X the products are first summed in float32 over short spans, eight rows or columns at a time
or SPAN examples of a row (see SPAN); examples-major z stays a float64 sum.
The per-group functions take a range of examples so that numba_parallel can run them on
one chunk per thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, cast

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload, register_jitable
from numpy.typing import NDArray

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
from implementations.logistic import sigmoid_and_loss, sigmoid_and_loss_block

_sigmoid_and_loss = numba.njit(inline="always")(sigmoid_and_loss)

StepResult = tuple[FloatArray, float, float]  # dw (n_x,) in X's dtype, db, cost

# reassoc lets LLVM split a dot product over several vector accumulators (another summation
# order, as accurate); contract allows fused multiply-adds. No nnan, ninf or afn:
# sigmoid_and_loss needs exact exp, log1p and comparisons for |z| up to 1e3.
FASTMATH = {"reassoc", "contract"}

# A block's activations and losses in one vectorised loop (about 1.6 ns an example against 12
# for libm's exp and log1p one at a time). error_model="numpy": a division is not checked for
# zero (1 + e and 2 + e never are), and an unchecked loop is one LLVM can vectorise.
block_sigmoid_and_loss: Any = numba.njit(fastmath=FASTMATH, error_model="numpy")(sigmoid_and_loss_block)

# Bytes of X in one block of the features-major kernel, per thread. A block holds a segment
# of B examples from each of the n_x rows, and short segments read slowly: the prefetchers
# start over on each one. Measured on an AMD EPYC (1 MiB L2 per core, 23 MiB measured L3),
# 1 thread, against 16 MiB blocks: 32 MiB took the course's shape (12,288 x 209, 20 MB, one
# block) from 1.02x to 1.26x fully_vectorized and 4,096 x 16,384 from 1.09x to 1.16x, and lost
# 2% at 1,000 x 100,000; on 2 threads it was as fast or faster. Smaller blocks, down to an
# L2-sized one, were slower everywhere (0.4x at 256 KiB). So the block lives in L3 or spills
# a little, and its segments are as long as n_x allows.
BLOCK_BYTES = 32 * 1024 * 1024
MIN_BLOCK = 16  # examples: two 512-bit vectors of float64 per row segment
# Examples-major X: columns per batch, up to about BATCH_BYTES of X so that the batch is still
# in L2 for dw, and at most MAX_BATCH so that the vectorised sigmoid has enough to work on.
# Measured on an AMD EPYC (1 MiB L2), 1 thread, against four columns with their sigmoid one at
# a time: 10 x 100,000 3.7x, 100 x 100,000 1.4x, 784 x 60,000 1.13x, 4,096 x 16,384 1.07x;
# 128 and 256 KiB were as fast or a little slower. Its dw eight columns at a time and last first,
# against four in order: 1,000 x 100,000 27.9 against 29.1 ms, 1,000 x 10,000 2.55 against
# 2.68, 4,096 x 16,384 18.1 against 18.6, 10 x 100,000 0.57 against 0.62. Prefetching the next
# batch during dw (llvm.prefetch, 64 or 256 features of 8 columns at a time) was 20-40% slower;
# prefetching during z pays for short columns (PREFETCH_AHEAD_BYTES). On an AMD EPYC (Zen 5) VM,
# 2 threads, 4,096 x 16,384, 267 interleaved rounds: where the one-pass read ran at about 82 GB/s
# the step reached 74% of it and z alone 94% (dw from L2 took the rest), where it ran at 46 GB/s
# 97% and 107%; spreading 4-128 prefetches of the next batch's first lines over each 64-512
# features of dw (T0 or T2 hints) gave 68-73% and 96-98%, and prefetching every line of the next
# batch over dw (batches of 256 or 512 KiB, a line per 8 features of dw, 16 or 64 at a time) 66-70%
# against 75% where the read ran at 80 GB/s, and 84-92% against 92-99% at 42-48. So at 2 threads the
# step runs at the read's rate only while memory is the slower of the two.
BATCH_BYTES = 512 * 1024
MAX_BATCH = 64
# Examples per block at most: the block's z (reused for dz) stays at 64 KiB, below glibc's
# 128 KiB mmap threshold, so it is not mapped and page-faulted in again at every call, and
# row segments of 8,192 examples are long enough for the prefetchers.
MAX_BLOCK = 8192
# One thread reads short row segments from L3 slower than it streams whole rows from memory.
# Below this many bytes per segment, a single thread's step takes X as one block of whole
# rows (two passes, the second in reverse so that its first rows are the ones still in
# cache). Measured on an AMD EPYC (1 thread, interleaved, median of 15), whole rows against
# blocks: 10,000 x 1,000 (2.7 KB segments) 3.90 against 4.31 ms, 10,000 x 10,000 (3.4 KB)
# 41.6 against 45.2, 8,000 x 4,000 (4.0 KB) 12.6 against 13.6, 6,000 x 8,000 (5.4 KB) 18.5
# against 19.6, 6,000 x 20,000 (5.6 KB) 50.5 against 51.2; 5,000 x 20,000 (6.7 KB) 42.0
# against 40.3 and 4,096 x 16,384 (8 KB) 34.4 against 27.9. Threads sharing the cache keep
# their blocks: on 2 threads, one half of each row per thread was slower at every size tried
# (10,000 x 1,000 4.07 against 3.98 ms, 10,000 x 10,000 32.2 against 29.1, 8,000 x 4,000 21.6
# against 18.2, 4,096 x 16,384 22.7 against 18.8, 2,000 x 50,000 33.4 against 25.0).
MIN_SEGMENT_BYTES = 6 * 1024
# Rows of 1.25 to 2 KiB, of an X that stays in cache between calls (one block), go one row at a
# time for z and four rows at a time for dw, in memory order: fewer streams than eight rows at a
# time, which pay when X comes from memory. Measured on an AMD EPYC (1 thread, interleaved in a
# random order, each after an untimed call), against eight rows for both, at n_x = 12,288:
# m = 209 (the course's shape) 7-20% faster in each of five runs (0.641 against 0.563 ms, 0.615
# against 0.493), m = 216 15%, m = 250 6-7%, m = 160 3-6%. Not at 2 KiB (m = 256: 3% slower),
# not from memory (m = 200, n_x = 100,000: 4% slower), and not below: from one run to the next
# m = 128 went from 3% faster to 25% slower, m = 100 from 8% faster to 27% slower, and m = 16 to
# 24 (n_x = 100,000) were 5-28% slower.
SHORT_ROW_BYTES = (1280, 2048)
# Where a features-major block's row segments start. NumPy's large arrays start 16 bytes into a
# page (glibc's header for a memory-mapped chunk), so a segment that starts at example 0, or at a
# multiple of 8 after it, starts 16 bytes into a cache line, and each 64-byte vector load of it
# straddles two lines. Blocks that start on a line instead, with the examples before the first
# line as a block of their own: measured on an AMD EPYC (1 thread, interleaved in a random order,
# median of 5 blocks of 15 calls, X as NumPy allocates it), against blocks from example 0:
# 4,096 x 16,384 28.0 against 30.5 ms, 1,000 x 100,000 31.7 against 34.3, 10,000 x 10,000 40.4
# against 44.5, 1,000 x 10,000 3.58 against 3.87; one block of whole rows in cache, 2,048 x 2,048
# 1.18 against 1.35 ms; from memory, 10,000 x 1,000 4.19 against 4.15. fully_vectorized (OpenBLAS
# aligns its own loads) was the same at every offset. Short rows are the exception (_propagate).
# The block's z and dz buffer starts on a line too (another 0-5%).
ALIGN_BYTES = 64
# Examples-major X with short columns, larger than the cache: the four columns of each z group
# are prefetched PREFETCH_AHEAD_BYTES ahead. With a column of a few lines each group of four is
# too little work for the hardware prefetchers to run far enough ahead, and the step waits on
# memory. Measured on an AMD EPYC (interleaved in a random order, median of 7 blocks of 15-30
# calls, against the same kernel without it), 1 thread: 32 x 1,000,000 1.81x, 50 x 200,000
# 1.53x, 20 x 1,000,000 1.21x, 100 x 100,000 1.26-1.38x, 120 x 100,000 1.22x, 128 x 100,000
# 1.03x, 1,000 x 10,000 0.96-0.98x. 2 threads, which share the memory bus: 20 x 1,000,000 1.67x,
# 32 x 1,000,000 1.30x, 64 x 300,000 1.33x, 80 x 250,000 1.10x, 100 x 100,000 0.98-1.08x,
# 120 x 100,000 0.86x, 128 x 100,000 0.84-1.06x; so several threads stop at shorter columns. Not
# for columns of 10 features (10 x 2,000,000: 0.92-0.96x) nor in cache (20 x 100,000, 16 MB:
# 0.94-0.96x).
# 8 KiB ahead was as good, 2 and 16 KiB worse.
PREFETCH_COLUMN_BYTES = (128, 1024)  # above the first, up to the second
PREFETCH_SHARED_COLUMN_BYTES = 512  # the second when several threads read X
PREFETCH_AHEAD_BYTES = 4096


def item_bytes(X: FloatArray) -> int:
    """X.itemsize, a constant in compiled code (there X.itemsize is read from the array at run time)."""
    return int(X.itemsize)


@overload(item_bytes, inline="always")
def _item_bytes_compiled(X: Any) -> Any:
    size: int = X.dtype.bitwidth // 8

    def constant(X: Any) -> int:  # the same parameters as the typing function: Numba compares them
        return size

    return constant


def element_pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """In an intrinsic's code: the address of array[index], a 1-d array and an intp index."""
    view = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, view, [index])  # type: ignore[no-untyped-call]


def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """Asks for the cache line of array[index] (llvm.prefetch: read, keep in every level).

    No bounds check: a prefetch never faults, so an index past the end of the array is allowed.
    """
    if not isinstance(array, types.Array) or array.ndim != 1 or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type, index_type = signature.args
        at = context.cast(builder, args[1], index_type, types.intp)
        pointer = element_pointer(context, builder, array_type, args[0], at)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read (0), highest locality (3), data cache (1)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


prefetch: Any = intrinsic(_prefetch)


def _add_eight(
    out: FloatArray,
    c0: float,
    c1: float,
    c2: float,
    c3: float,
    c4: float,
    c5: float,
    c6: float,
    c7: float,
    v0: FloatArray,
    v1: FloatArray,
    v2: FloatArray,
    v3: FloatArray,
    v4: FloatArray,
    v5: FloatArray,
    v6: FloatArray,
    v7: FloatArray,
) -> None:
    """out += c0 v0 + ... + c7 v7: one load and store of out for eight vectors, eight streams in flight."""
    for i in range(out.shape[0]):
        out[i] += (c0 * v0[i] + c1 * v1[i] + c2 * v2[i] + c3 * v3[i]) + (
            c4 * v4[i] + c5 * v5[i] + c6 * v6[i] + c7 * v7[i]
        )


add_eight: Any = numba.njit(inline="always", fastmath=FASTMATH)(_add_eight)

# float32 X: products summed in float32 over spans of up to SPAN terms (or eight rows or columns at
# a time), the spans in float64. A float64 sum of float32 elements converts each element first,
# which takes more instructions per cache line, and out of cache fewer lines are then in flight.
# Measured on an AMD EPYC, by hand: a one-pass read of features-major float32 X in 32 KiB row
# segments summed 22 GB/s in float64 and 35-36 GB/s in float32 spans, where the same bytes of
# float64 X read at 35-36 (in cache float32 summed twice as many elements a second either way, so
# not the arithmetic). The kernels, features-major float32 (interleaved in a random order, median of
# 9 rounds, against float64 sums), 1 thread: 1,000 x 100,000 1.28x, 4,096 x 16,384 1.15x,
# 10,000 x 10,000 1.20x, 100 x 100,000 1.25x; 2 threads 1.11-1.18x; on 1 thread spans of 256
# 1.12-1.20x, of 64 0.94-1.07x, of 4,096 as 1,024. Examples-major, dw's eight columns summed in
# float32 were 0.98-1.07x (kept: one rule for dw in both layouts); z in float32 spans was 4-26%
# slower on 1 thread (0.74x at 100 x 100,000) and is not used. float64 X runs the same code as
# before (0.95-1.04x at 5-8 shapes, both layouts and thread counts: the noise).
# Every float32 kernel stays more accurate than fully_vectorized's float32 BLAS (tests/).
SPAN = 1024


def _add_sum_wide(s: float, values: FloatArray) -> float:
    for i in range(values.size):
        s += values[i]
    return s


def _add_sum_narrow(s: float, values: FloatArray) -> float:
    for lo in range(0, values.size, SPAN):
        part = values[lo : lo + SPAN]
        t = np.float32(0.0)
        for i in range(part.size):
            t += part[i]
        s += float(t)
    return s


_add_sum_wide_jit: Any = numba.njit(inline="always", fastmath=FASTMATH)(_add_sum_wide)
_add_sum_narrow_jit: Any = numba.njit(inline="always", fastmath=FASTMATH)(_add_sum_narrow)


def add_sum(s: float, values: FloatArray) -> float:
    """s plus the sum of a 1-d array, summed as the kernels sum X: float32 in spans of SPAN values.

    Element by element onto s otherwise, so that a sum repeated onto itself cannot be hoisted
    out of its loop (the memory sweep repeats reads of float64 this way).
    """
    return (_add_sum_narrow if values.dtype == np.float32 else _add_sum_wide)(s, values)


@overload(add_sum, jit_options={"fastmath": FASTMATH})
def _add_sum_compiled(s: Any, values: Any) -> Any:
    def narrow_(s: Any, values: Any) -> Any:
        return _add_sum_narrow_jit(s, values)

    def wide(s: Any, values: Any) -> Any:
        return _add_sum_wide_jit(s, values)

    return narrow_ if values.dtype == types.float32 else wide


_NO_BUFFER = np.empty(0)


def narrow_buffer(n: int, X: FloatArray) -> FloatArray:
    """A buffer for narrow(z, buffer) of n values for X: n of float32 for float32 X, none for float64 X."""
    return np.empty(n if X.dtype == np.float32 else 0, dtype=X.dtype)


@overload(narrow_buffer, inline="always")
def _narrow_buffer_compiled(n: Any, X: Any) -> Any:
    # The implementations take the typing function's parameters, annotations too: Numba compares them.
    def some(n: Any, X: Any) -> Any:
        return np.empty(n, np.float32)

    def none(n: Any, X: Any) -> Any:
        return _NO_BUFFER  # a constant: no allocation in float64's every call

    return some if X.dtype == types.float32 else none


def narrow(z: NDArray[np.float64], buffer: FloatArray) -> FloatArray:
    """z in buffer's dtype: z itself when that is float64, else rounded into buffer[:len(z)]."""
    if buffer.dtype == z.dtype:
        return z
    out = buffer[: z.shape[0]]
    out[:] = z
    return out


@overload(narrow, inline="always")
def _narrow_compiled(z: Any, buffer: Any) -> Any:
    def same(z: Any, buffer: Any) -> Any:
        return z

    if buffer.dtype == z.dtype:
        return same

    def rounded(z: Any, buffer: Any) -> Any:
        out = buffer[: z.shape[0]]
        for i in range(z.shape[0]):
            out[i] = z[i]
        return out

    return rounded


def _columns(
    w64: FloatArray, b: float, X: FloatArray, Y: FloatArray, lo: int, hi: int, dw: FloatArray, prefetching: bool
) -> tuple[float, float]:
    """Examples lo..hi-1 of examples-major X: adds sum_i x_i dz_i to dw; returns (sum dz, sum loss).

    A batch of up to MAX_BATCH columns (about BATCH_BYTES of X; a multiple of 8, at least 8) at a
    time: their z four columns at a time, then their activations and losses in one vectorised
    loop, then their share of dw eight columns at a time, last first, while the batch is still
    in L2. prefetching (prefetches): each group of four columns first asks for the same span
    of X PREFETCH_AHEAD_BYTES further on.
    """
    n_x = X.shape[0]
    line = ALIGN_BYTES // item_bytes(X)  # constants: a runtime step cost half the gain
    ahead = PREFETCH_AHEAD_BYTES // item_bytes(X)
    db = 0.0
    cost = 0.0
    batch = max(8, min(MAX_BATCH, BATCH_BYTES // (n_x * X.itemsize)) // 8 * 8)
    z = np.empty(batch)
    dz_buffer = narrow_buffer(batch, X)
    i = lo
    while i + 8 <= hi:
        nb = min(batch, (hi - i) // 8 * 8)
        for k in range(0, nb, 4):
            x0 = X[:, i + k]
            x1 = X[:, i + k + 1]
            x2 = X[:, i + k + 2]
            x3 = X[:, i + k + 3]
            if prefetching:
                for p in range(ahead, ahead + 4 * n_x, line):
                    prefetch(x0, p)
            z0 = 0.0
            z1 = 0.0
            z2 = 0.0
            z3 = 0.0
            for j in range(n_x):
                wj = w64[j]
                z0 += wj * x0[j]
                z1 += wj * x1[j]
                z2 += wj * x2[j]
                z3 += wj * x3[j]
            z[k] = z0 + b
            z[k + 1] = z1 + b
            z[k + 2] = z2 + b
            z[k + 3] = z3 + b
        dz = z[:nb]
        batch_db, batch_cost = block_sigmoid_and_loss(dz, Y[0, i : i + nb])
        db += batch_db
        cost += batch_cost
        dzx = narrow(dz, dz_buffer)  # in X's dtype: add_eight then sums eight columns in it (SPAN)
        # dw eight columns at a time (one load and store of dw per eight columns), last
        # columns first: they were read last, so they are the ones still in L1.
        k = nb
        while k >= 8:
            k -= 8
            c = i + k
            # dw += X[:, c:c + 8] dz[k:k + 8]
            add_eight(
                dw, dzx[k], dzx[k + 1], dzx[k + 2], dzx[k + 3], dzx[k + 4], dzx[k + 5], dzx[k + 6], dzx[k + 7],
                X[:, c], X[:, c + 1], X[:, c + 2], X[:, c + 3], X[:, c + 4], X[:, c + 5], X[:, c + 6], X[:, c + 7],
            )  # fmt: skip
        i += nb
    while i < hi:
        x0 = X[:, i]
        z0 = 0.0
        for j in range(n_x):
            z0 += w64[j] * x0[j]
        a0, loss0 = _sigmoid_and_loss(z0 + b, Y[0, i])
        d0 = a0 - Y[0, i]
        cost += loss0
        db += d0
        for j in range(n_x):
            dw[j] += d0 * x0[j]
        i += 1
    return db, cost


def _z_eight_rows(wx: FloatArray, X: FloatArray, start: int, stop: int, zb: FloatArray) -> None:
    """Adds X[:, start:stop]' w to zb, eight rows at a time: one load and store of zb per eight rows,
    and eight streams from memory in flight."""
    n_x = X.shape[0]
    nb = stop - start
    # Every inner loop runs over a slice from 0: over range(start, stop) Numba keeps a
    # negative-index check and the loop does not vectorise.
    j = 0
    while j + 8 <= n_x:
        # zb += w[j:j + 8] X[j:j + 8, start:stop]
        add_eight(
            zb, wx[j], wx[j + 1], wx[j + 2], wx[j + 3], wx[j + 4], wx[j + 5], wx[j + 6], wx[j + 7],
            X[j, start:stop], X[j + 1, start:stop], X[j + 2, start:stop], X[j + 3, start:stop],
            X[j + 4, start:stop], X[j + 5, start:stop], X[j + 6, start:stop], X[j + 7, start:stop],
        )  # fmt: skip
        j += 8
    while j < n_x:
        r0 = X[j, start:stop]
        w0 = wx[j]
        for i in range(nb):
            zb[i] += w0 * r0[i]
        j += 1


def _z_one_row(wx: FloatArray, X: FloatArray, zb: FloatArray) -> None:
    """Adds X' w to zb one whole row at a time, in memory order (for short rows already in cache)."""
    for j in range(X.shape[0]):
        r0 = X[j]
        w0 = wx[j]
        for i in range(r0.shape[0]):
            zb[i] += w0 * r0[i]


def _dw_eight_rows(
    X: FloatArray, start: int, stop: int, dz: FloatArray, dw: FloatArray, span: int, zero: float
) -> None:
    """Adds X[:, start:stop] dz to dw: eight row dot products per loop (one load of dz for eight
    rows, eight streams in flight), last rows first: they were read last, so they are the ones
    still in L2. Each `span` examples of a row are summed from `zero` (in its type), the spans in
    float64: one span for float64, SPAN for float32 (dw_eight_rows)."""
    nb = stop - start
    j = X.shape[0]
    while j >= 8:
        j -= 8
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        s4 = 0.0
        s5 = 0.0
        s6 = 0.0
        s7 = 0.0
        for lo in range(0, nb, span):
            n = min(span, nb - lo)
            a = start + lo
            r0 = X[j, a : a + n]
            r1 = X[j + 1, a : a + n]
            r2 = X[j + 2, a : a + n]
            r3 = X[j + 3, a : a + n]
            r4 = X[j + 4, a : a + n]
            r5 = X[j + 5, a : a + n]
            r6 = X[j + 6, a : a + n]
            r7 = X[j + 7, a : a + n]
            d0 = dz[lo : lo + n]
            t0 = zero
            t1 = zero
            t2 = zero
            t3 = zero
            t4 = zero
            t5 = zero
            t6 = zero
            t7 = zero
            for i in range(n):
                d = d0[i]
                t0 += r0[i] * d
                t1 += r1[i] * d
                t2 += r2[i] * d
                t3 += r3[i] * d
                t4 += r4[i] * d
                t5 += r5[i] * d
                t6 += r6[i] * d
                t7 += r7[i] * d
            s0 += float(t0)
            s1 += float(t1)
            s2 += float(t2)
            s3 += float(t3)
            s4 += float(t4)
            s5 += float(t5)
            s6 += float(t6)
            s7 += float(t7)
        dw[j] += s0
        dw[j + 1] += s1
        dw[j + 2] += s2
        dw[j + 3] += s3
        dw[j + 4] += s4
        dw[j + 5] += s5
        dw[j + 6] += s6
        dw[j + 7] += s7
    while j > 0:  # the first n_x mod 8 rows
        j -= 1
        r0 = X[j, start:stop]
        s0 = 0.0
        for i in range(nb):
            s0 += r0[i] * dz[i]
        dw[j] += s0


def _dw_four_rows(X: FloatArray, dz: FloatArray, dw: FloatArray) -> None:
    """Adds X dz to dw, four whole rows per loop, last rows first (for short rows already in cache)."""
    j = X.shape[0]
    while j >= 4:
        j -= 4
        r0 = X[j]
        r1 = X[j + 1]
        r2 = X[j + 2]
        r3 = X[j + 3]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for i in range(r0.shape[0]):
            d = dz[i]
            s0 += r0[i] * d
            s1 += r1[i] * d
            s2 += r2[i] * d
            s3 += r3[i] * d
        dw[j] += s0
        dw[j + 1] += s1
        dw[j + 2] += s2
        dw[j + 3] += s3
    while j > 0:
        j -= 1
        r0 = X[j]
        s0 = 0.0
        for i in range(r0.shape[0]):
            s0 += r0[i] * dz[i]
        dw[j] += s0


z_eight_rows: Any = numba.njit(inline="always", fastmath=FASTMATH)(_z_eight_rows)
z_one_row: Any = numba.njit(inline="always", fastmath=FASTMATH)(_z_one_row)
_dw_eight_rows_jit: Any = numba.njit(inline="always", fastmath=FASTMATH)(_dw_eight_rows)
dw_four_rows: Any = numba.njit(inline="always", fastmath=FASTMATH)(_dw_four_rows)


def dw_eight_rows(X: FloatArray, start: int, stop: int, dz: FloatArray, dw: FloatArray) -> None:
    """Adds X[:, start:stop] dz to dw eight rows at a time: in float32 spans for float32 X and dz (SPAN)."""
    if X.dtype == np.float32 and dz.dtype == np.float32:
        _dw_eight_rows(X, start, stop, dz, dw, SPAN, np.float32(0.0))  # type: ignore[arg-type]
    else:
        _dw_eight_rows(X, start, stop, dz, dw, max(stop - start, 1), 0.0)


@overload(dw_eight_rows, jit_options={"fastmath": FASTMATH})
def _dw_eight_rows_compiled(X: Any, start: Any, stop: Any, dz: Any, dw: Any) -> Any:
    def narrow_(X: Any, start: Any, stop: Any, dz: Any, dw: Any) -> Any:
        _dw_eight_rows_jit(X, start, stop, dz, dw, SPAN, np.float32(0.0))

    def wide(X: Any, start: Any, stop: Any, dz: Any, dw: Any) -> Any:
        _dw_eight_rows_jit(X, start, stop, dz, dw, max(stop - start, 1), 0.0)

    return narrow_ if X.dtype == types.float32 and dz.dtype == types.float32 else wide


def _block(
    wx: FloatArray,
    b: float,
    X: FloatArray,
    Y: FloatArray,
    start: int,
    stop: int,
    z: NDArray[np.float64],
    dw: FloatArray,
    dz_buffer: FloatArray,
) -> tuple[float, float]:
    """Examples start..stop-1 as one block, z a buffer for at least their count (and dz_buffer, from
    narrow_buffer): adds their X dz to dw.

    Returns (sum dz, sum loss) over those examples.
    """
    zb = z[: stop - start]  # z, then dz in place
    zb[:] = b
    z_eight_rows(wx, X, start, stop, zb)
    db, cost = block_sigmoid_and_loss(zb, Y[0, start:stop])
    dw_eight_rows(X, start, stop, narrow(zb, dz_buffer), dw)
    return db, cost


one_block: Any = numba.njit(inline="always", fastmath=FASTMATH)(_block)


def _blocks(
    wx: FloatArray, b: float, X: FloatArray, Y: FloatArray, lead: int, block: int, hi: int, dw: FloatArray
) -> tuple[float, float]:
    """Examples 0..lead-1 as a block of their own (none if lead is 0), then blocks of `block`
    examples from lead on, in order, below hi: adds their X dz to dw (numba_parallel.taken_blocks
    shares them out between threads instead).

    Returns (sum dz, sum loss) over those examples.
    """
    z = aligned_empty(max(block, lead))  # z of a block's examples, then their dz in place
    dz_buffer = narrow_buffer(max(block, lead), X)
    db = 0.0
    cost = 0.0
    if lead > 0:
        db, cost = one_block(wx, b, X, Y, 0, lead, z, dw, dz_buffer)
    for start in range(lead, hi, block):
        block_db, block_cost = one_block(wx, b, X, Y, start, min(start + block, hi), z, dw, dz_buffer)
        db += block_db
        cost += block_cost
    return db, cost


def _short_rows(X: FloatArray) -> bool:
    """Whether X is one block of rows of SHORT_ROW_BYTES, for the short-row loops."""
    row = X.shape[1] * X.itemsize
    return bool(SHORT_ROW_BYTES[0] <= row < SHORT_ROW_BYTES[1] and X.shape[0] * row <= BLOCK_BYTES)


short_rows: Any = numba.njit(inline="always")(_short_rows)


def _z_rows(wx: FloatArray, X: FloatArray, z: FloatArray, short: bool) -> None:
    """Adds X' w to z over whole rows: one row at a time if short (short_rows), else eight."""
    if short:
        z_one_row(wx, X, z)
    else:
        z_eight_rows(wx, X, 0, X.shape[1], z)


def _dw_rows(X: FloatArray, dz: FloatArray, dw: FloatArray, short: bool) -> None:
    """Adds X dz to dw over whole rows: four rows at a time if short (short_rows), else eight."""
    if short:
        dw_four_rows(X, dz, dw)
    else:
        dw_eight_rows(X, 0, X.shape[1], dz, dw)


z_rows: Any = numba.njit(inline="always", fastmath=FASTMATH)(_z_rows)
dw_rows: Any = numba.njit(inline="always", fastmath=FASTMATH)(_dw_rows)


def _whole_rows(
    wx: FloatArray, b: float, X: FloatArray, Y: FloatArray, dw: FloatArray, short: bool
) -> tuple[float, float]:
    """All of X as one block of whole rows: adds X dz to dw; returns (sum dz, sum loss).

    short (short_rows: rows of 1.25-2 KiB of an X that stays in cache between calls): one row at a
    time for z and four rows at a time for dw, in memory order; otherwise as a block (eight rows
    at a time).
    """
    z = aligned_empty(X.shape[1])
    z[:] = b
    z_rows(wx, X, z, short)
    db, cost = block_sigmoid_and_loss(z, Y[0])
    dw_rows(X, narrow(z, narrow_buffer(X.shape[1], X)), dw, short)
    return db, cost


def _aligned_empty(n: int) -> NDArray[np.float64]:
    """An uninitialised float64 vector of n whose first element starts an ALIGN_BYTES line."""
    spare = ALIGN_BYTES // 8
    buffer = np.empty(n + spare)
    skip = (-buffer.ctypes.data) % ALIGN_BYTES // 8
    return buffer[skip : skip + n]


def _weights_float64(w: FloatArray) -> FloatArray:
    """w as a float64 vector (examples-major z: see SPAN)."""
    w64 = np.empty(w.shape[0])
    for j in range(w.shape[0]):
        w64[j] = w[j, 0]
    return w64


def _weights_like(w: FloatArray, X: FloatArray) -> FloatArray:
    """w as a vector in X's dtype (features-major z: see SPAN)."""
    wx = np.empty(w.shape[0], X.dtype)
    for j in range(w.shape[0]):
        wx[j] = w[j, 0]
    return wx


def _finish(dw: FloatArray, db: float, cost: float, m: int, X: FloatArray) -> StepResult:
    out = np.empty(dw.shape[0], dtype=X.dtype)
    for j in range(dw.shape[0]):
        out[j] = dw[j] / m
    return out, db / m, cost / m


# Compiled building blocks, inlined into the kernels below and into numba_parallel's.
columns: Any = numba.njit(inline="always", fastmath=FASTMATH)(_columns)
blocks: Any = numba.njit(inline="always", fastmath=FASTMATH)(_blocks)
whole_rows: Any = numba.njit(inline="always", fastmath=FASTMATH)(_whole_rows)
weights_float64: Any = numba.njit(inline="always")(_weights_float64)
weights_like: Any = numba.njit(inline="always")(_weights_like)
aligned_empty: Any = numba.njit(inline="always")(_aligned_empty)
finish: Callable[..., StepResult] = numba.njit(inline="always")(_finish)


def block_size(
    n_x: int,
    m: int,
    itemsize: int,
    parts: int = 1,
    block_bytes: int = BLOCK_BYTES,
    min_segment: int = MIN_SEGMENT_BYTES,
) -> int:
    """Examples per block of the features-major kernel: up to about block_bytes of X and MAX_BLOCK examples.

    The m examples are cut into equal blocks, a multiple of `parts` of them (the threads sharing
    them), so that no short last block is left to run alone; B is rounded up to a multiple of 8.
    On one thread, blocks whose row segments would be shorter than min_segment bytes give way
    to one block of whole rows (0: never).
    """
    most = max(MIN_BLOCK, min(MAX_BLOCK, block_bytes // (n_x * itemsize)))
    if parts == 1 and most < m and most * itemsize < min_segment:
        return m
    count = -(-m // most)  # ceil
    count = -(-count // parts) * parts
    per_block = -(-m // count)
    return max(MIN_BLOCK, (per_block + 7) // 8 * 8)


def aligned_lead(X: FloatArray) -> int:
    """Examples of features-major X before the first ALIGN_BYTES boundary of every row; 0 where there is none.

    Rows share that boundary only when the row stride is a multiple of ALIGN_BYTES; otherwise,
    or when X already starts on one, or when the boundary lies past the last example, it is 0.
    """
    address = X.ctypes.data
    if X.strides[0] % ALIGN_BYTES != 0 or address % X.itemsize != 0:
        return 0
    lead = (-address) % ALIGN_BYTES // X.itemsize
    return lead if lead < X.shape[1] else 0


def examples_major(X: FloatArray) -> bool:
    """Whether each example's features are adjacent in memory (Fortran order, or a view of it)."""
    return X.strides[0] == X.itemsize and X.shape[0] > 1


def prefetches(X: FloatArray, threads: int = 1) -> bool:
    """Whether the examples-major kernel prefetches X's columns PREFETCH_AHEAD_BYTES ahead.

    Only for columns of PREFETCH_COLUMN_BYTES (up to PREFETCH_SHARED_COLUMN_BYTES when
    `threads` threads read X) in an X larger than BLOCK_BYTES (out of cache).
    """
    column = X.shape[0] * X.itemsize
    low, high = PREFETCH_COLUMN_BYTES
    if threads > 1:
        high = PREFETCH_SHARED_COLUMN_BYTES
    return bool(low < column <= high and X.size * X.itemsize > BLOCK_BYTES)


# Compiled too, so that a call chooses its kernel and block size without the interpreter
# (about 0.5 us a call, a third of the smallest steps).
block_size_jit: Callable[..., int] = numba.njit(inline="always")(block_size)
examples_major_jit: Callable[..., bool] = numba.njit(inline="always")(examples_major)
aligned_lead_jit: Callable[..., int] = numba.njit(inline="always")(aligned_lead)
prefetches_jit: Callable[..., bool] = numba.njit(inline="always")(prefetches)
# numba_parallel's block plan calls these from compiled code too.
register_jitable(block_size)
register_jitable(aligned_lead)


Plan = Literal["blocks", "rows"]
# Features-major X out of cache, one thread: the blocks (X read once, in row segments of a block's
# examples) or whole rows (X read twice, the second time in reverse). The static rule (block_size's
# MIN_SEGMENT_BYTES) was measured on the Zen 5; on an AMD EPYC (Zen 4) VM, 1 thread, by hand
# (interleaved, median of 5 blocks of 9 calls, against fully_vectorized), whole rows were 1.42x and
# the blocks 1.28x at 4,096 x 16,384, 1.46x and 1.29x at 3,000 x 30,000, 1.46x and 1.33x at 1,000 x
# 10,000, but 1.57x and 1.70x at 100 x 100,000 and 1.47x and 1.50x at 1,000 x 100,000: all of them
# above the rule's threshold. So the set-up times both on the X it is given (setup) and keeps the
# faster; propagate keeps the rule.
PLANS: tuple[Plan, ...] = ("blocks", "rows")
# The compiled kernel takes a plan as one of these (constants there).
_BY_RULE, _BLOCKS, _ROWS = 0, 1, 2
_PLAN_CODES: dict[Plan | None, int] = {None: _BY_RULE, "blocks": _BLOCKS, "rows": _ROWS}


def _propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, plan: int) -> StepResult:
    n_x, m = X.shape
    dw = np.zeros(n_x)
    if examples_major_jit(X):
        db, cost = columns(weights_float64(w), b, X, Y, 0, m, dw, prefetches_jit(X, 1))
    else:
        wx = weights_like(w, X)
        # Short rows keep their own loops, from example 0: aligned blocks of eight rows were
        # no faster there (12,288 x 208 0.88-0.98x, 8,000 x 240 0.93-1.05x, by hand as above).
        short = short_rows(X)
        lead = 0 if short else aligned_lead_jit(X)
        if plan == _ROWS:
            lead, block = 0, m
        elif plan == _BLOCKS:  # whatever their segments
            block = block_size_jit(n_x, m - lead, X.itemsize, 1, BLOCK_BYTES, 0)
        else:
            block = block_size_jit(n_x, m - lead, X.itemsize, 1)
        if lead == 0 and block >= m:
            # One block: the rows' own bounds let the compiler drop the slices' arithmetic
            # (5-10% on the smallest rows).
            db, cost = whole_rows(wx, b, X, Y, dw, short)
        else:
            db, cost = blocks(wx, b, X, Y, lead, block, m, dw)
    return finish(dw, db, cost, m, X)


_kernel: Any = numba.njit(nogil=True, fastmath=FASTMATH)(_propagate)


def step_with(w: FloatArray, b: float, X: FloatArray, Y: FloatArray, plan: Plan | None) -> Gradients:
    """One forward and backward pass in the given plan (None: the static rule)."""
    dw, db, cost = _kernel(w, float(b), X, Y, _PLAN_CODES[plan])
    return Gradients(dw=dw.reshape(-1, 1), db=float(db), cost=float(cost))


def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
    """One forward and backward pass, reading each element of X from memory once (wide rows: see the module)."""
    # The kernel itself, not step_with: a Python call and a lookup are 5% of the smallest steps.
    dw, db, cost = _kernel(w, float(b), X, Y, _BY_RULE)
    return Gradients(dw=dw.reshape(-1, 1), db=float(db), cost=float(cost))


def chooses_plan(X: FloatArray) -> bool:
    """Whether a set-up times the PLANS for X: C-ordered features-major X larger than one block (BLOCK_BYTES)."""
    return bool(X.flags.c_contiguous and not examples_major(X) and X.nbytes > BLOCK_BYTES)


def choose_plan(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Plan | None:
    """The faster of PLANS for X (fastest), or None where there is no choice."""
    if not chooses_plan(X):
        return None
    plans: dict[str, Callable[[], object]] = {p: partial(step_with, w, b, X, Y, p) for p in PLANS}
    return cast(Plan, fastest(plans))


def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
    """Chooses the plan by timing (choose_plan; untimed set-up), then steps with it."""
    plan = choose_plan(w, b, X, Y)
    return Prepared(step=partial(step_with, w, b, X, Y, plan), gradients=as_gradients, plan=plan)


IMPLEMENTATION = Implementation(
    name="numba_fused",
    propagate=propagate,
    summary=summary_of(__doc__),
    setup_fn=setup,
    jit=True,
    reads_of_x=1,
    strided_walk=True,  # in C order each block of examples walks all n_x rows
    layout_note="in F order each example is one contiguous stream; in C order it works in blocks of examples",
    # One read of X where the reference makes two: up to 2x once X is in memory; in C order the
    # blocks' second read comes from L3, not free.
    goal=Goal(speedup=(("F", 1.75), ("C", 1.15))),
)
