"""The memory hierarchy as this machine delivers it: read bandwidth against working-set size.

A gradient step over X is bound by reading X, and how fast that goes depends on where X
lives: a cache level or main memory. The OS is a poor witness here (a VM's /sys can report
the host's whole L3), so the suite measures instead, in the manner of lmbench and STREAM:
sum an array of each size many times, on 1 thread and on all threads, and find the sizes
at which the bandwidth falls. Those are the effective cache capacities of this machine.
"""

from __future__ import annotations

import glob
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numba
import numpy as np
import psutil
from numpy.typing import NDArray

from bench.base.hierarchy import FALLBACK_LLC_BYTES, Hierarchy, Level
from bench.measure.timing import thread_limits
from implementations.numba_fused import add_sum, z_eight_rows
from implementations.numba_parallel import block_plan, take

_SIZE_SUFFIXES = {"K": 1024, "M": 1024**2, "G": 1024**3}
MIN_SWEEP_BYTES = 4 * 1024
MAX_SWEEP_BYTES = 2 * 1024**3
# Sweep at least this far, whatever /sys says: far enough for the plateau of main memory on several
# threads, which bring more cache. On an AMD EPYC VM, 2 threads: 25 MiB of cache on 1 thread, 40 on 2,
# and the 2-thread read still fell from 91 GB/s at 51 MiB to 50 at 102 and 44 at 256; swept to 256 MiB
# only, the knee finder once took the fade for one level and missed memory's.
MIN_TOP_BYTES = 512 * 1024**2
POINTS_PER_DOUBLING = 3
CALL_S = 0.002  # each timed read lasts about this long: far above thread start-up and timer costs
STEP = 1.2  # a fall of 20% or more between plateaus is a level of the hierarchy
# A plateau spans at least a doubling of size; shorter runs of points are the ramps between
# levels (a cache's bandwidth fades over a factor of two or so as its share of X shrinks).
MIN_PLATEAU_POINTS = POINTS_PER_DOUBLING + 1


def _sum_reps(part: NDArray[np.float64], reps: int) -> float:
    s = 0.0
    for _ in range(reps):
        s = add_sum(s, part)  # float32 in spans, as the kernels sum it (numba_fused.SPAN)
    return s


# reassoc lets LLVM split the sum over several vector accumulators; without it the additions
# form one serial chain and the probe would measure FP latency, not the memory. The running
# sum carries over between repetitions, so no repetition can be hoisted out of the loop.
_sum_reps_jit: Any = numba.njit(fastmath={"reassoc"}, nogil=True)(_sum_reps)


def _read(pool: ThreadPoolExecutor, parts: list[NDArray[np.float64]], reps: int) -> float:
    # One plain thread per part, each in compiled code that releases the GIL. Not Numba's
    # parallel pool: under its OpenMP layer on a shared 2-core VM, a two-thread read was once
    # seen stuck at 5.6 GB/s for a whole process (against 29 GB/s on one thread), and the sweep
    # keeps each size's best, which a slow wake of these threads does not touch. The roof's read
    # (OnePassRead) is timed as the kernels are, on their pool, and reported as a median.
    start = time.perf_counter()
    for future in [pool.submit(_sum_reps_jit, part, reps) for part in parts]:
        future.result()
    return time.perf_counter() - start


def read_gbps(buffer: NDArray[np.float64], nbytes: int, threads: int, repeats: int = 5) -> float:
    """Best GB/s (1e9 bytes/s) of `repeats` timed reads of the first nbytes of buffer, split over threads.

    The best, not the median, as STREAM reports it: the figure is a ceiling for the kernels, and
    on a shared machine a read that loses a core for a moment says nothing about the memory.
    """
    if threads < 1 or nbytes < 8 * threads or repeats < 1:
        raise ValueError(
            f"threads, repeats must be >= 1 and nbytes >= 8 per thread, got {threads}, {repeats}, {nbytes}"
        )
    parts = np.array_split(buffer[: nbytes // 8], threads)  # contiguous views: one stream per thread
    with ThreadPoolExecutor(max_workers=threads) as pool:
        _read(pool, [p[:8] for p in parts], 1)  # compile and start the threads, untimed
        # Grow the repetitions until one timed read lasts CALL_S, as timeit's autorange does: for
        # small sizes, handing the work to the threads costs more than reading the array once.
        reps, elapsed = 1, _read(pool, parts, 1)  # the first read also brings the working set in
        while elapsed < CALL_S:
            reps *= max(2, min(10, math.ceil(CALL_S / max(elapsed, 1e-7))))
            elapsed = _read(pool, parts, reps)
        best = min(_read(pool, parts, reps) for _ in range(repeats))
    return nbytes * reps / best / 1e9


def sweep_sizes(top: int) -> list[int]:
    """Working-set sizes from MIN_SWEEP_BYTES to top, POINTS_PER_DOUBLING per doubling, multiples of 4 KiB."""
    count = int(math.log2(top / MIN_SWEEP_BYTES) * POINTS_PER_DOUBLING) + 1
    sizes = np.geomspace(MIN_SWEEP_BYTES, top, count)
    return sorted({int(s // 4096 * 4096) for s in sizes})


def sweep_top_bytes() -> int:
    """How far the sweep reads: 4x what /sys reports and at least 256 MiB, within 2 GiB and a quarter of free memory."""
    wanted = max(4 * last_level_cache_bytes(), MIN_TOP_BYTES)
    return int(min(wanted, MAX_SWEEP_BYTES, psutil.virtual_memory().available // 4))


def _segments(y: NDArray[np.float64], penalty: float) -> list[tuple[int, int]]:
    """Optimal piecewise-constant fit of y (dynamic programming), each new segment costing `penalty`."""
    n = len(y)
    csum = np.concatenate([[0.0], np.cumsum(y)])
    csq = np.concatenate([[0.0], np.cumsum(y * y)])

    def sse(i: int, j: int) -> float:  # y[i:j]
        s = csum[j] - csum[i]
        return float(csq[j] - csq[i] - s * s / (j - i))

    best = [0.0] + [math.inf] * n
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + sse(i, j) + penalty
            if cost < best[j]:
                best[j], start[j] = cost, i
    out = []
    j = n
    while j > 0:
        out.append((start[j], j))
        j = start[j]
    return out[::-1]


def _without_ramps(x: NDArray[Any], y: NDArray[Any], plateaus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop middle segments that fall steadily from one neighbour towards the next: a slow fade, not a level."""
    kept = list(plateaus)
    k = 1
    while k < len(kept) - 1:
        (pa, pb), (a, b), (na, nb) = kept[k - 1], kept[k], kept[k + 1]
        slope = float(np.polyfit(x[a:b], y[a:b], 1)[0])
        fall = -slope * float(x[b - 1] - x[a])
        gaps = (float(np.median(y[pa:pb]) - np.median(y[a:b])), float(np.median(y[a:b]) - np.median(y[na:nb])))
        if min(gaps) > 0 and fall > 0.5 * min(gaps):
            del kept[k]
        else:
            k += 1
    return kept


def find_levels(sizes: list[int] | NDArray[Any], gbps: list[float] | NDArray[Any]) -> Hierarchy:
    """Plateaus of bandwidth against size, and where each falls to the next (its capacity).

    Work in log2(GB/s). A piecewise-constant fit, with a penalty per segment set from the
    point-to-point noise, finds the plateaus; runs shorter than MIN_PLATEAU_POINTS are the ramps
    between them, and so is a middle segment that keeps falling from one neighbour towards the
    next. Adjacent plateaus less than STEP apart are one level. Capacities about 8x apart or more
    are told apart; closer ones may read as one level. A level's capacity is the
    size at which the measured curve crosses half-way (in log) between it and the next level down.
    """
    x = np.log2(np.asarray(sizes, dtype=float))
    y = np.log2(np.asarray(gbps, dtype=float))
    if len(y) < 3:
        return Hierarchy((Level(float(2 ** np.median(y)), None),), float(2 ** x[0]))
    noise = 1.4826 * float(np.median(np.abs(np.diff(y)))) / math.sqrt(2)
    penalty = max(8 * noise**2 * math.log(len(y)), 0.02)
    plateaus = [(a, b) for a, b in _segments(y, penalty) if b - a >= MIN_PLATEAU_POINTS]
    if not plateaus:
        plateaus = [(0, len(y))]
    plateaus = _without_ramps(x, y, plateaus)
    merged: list[tuple[int, int]] = [plateaus[0]]
    for a, b in plateaus[1:]:
        pa, pb = merged[-1]
        if float(np.median(y[pa:pb]) - np.median(y[a:b])) < math.log2(STEP):
            merged[-1] = (pa, b)  # not a real fall (or a rise): the same level
        else:
            merged.append((a, b))
    levels = []
    for k, (a, b) in enumerate(merged):
        level = float(np.median(y[a:b]))
        if k + 1 == len(merged):
            levels.append(Level(float(2**level), None))
            break
        na, nb = merged[k + 1]
        half = (level + float(np.median(y[na:nb]))) / 2
        # The first point past this plateau's start that is below half-way, interpolated in log-log.
        # (the next plateau's start if no point in between is below half-way: a sharp step)
        i = next((i for i in range(a + 1, na + 1) if y[i] < half), na)
        frac = (y[i - 1] - half) / (y[i - 1] - y[i]) if y[i - 1] != y[i] else 0.0
        levels.append(Level(float(2**level), float(2 ** (x[i - 1] + frac * (x[i] - x[i - 1])))))
    memory = merged[-1][0]
    return Hierarchy(tuple(levels), float(2 ** x[memory]))


def sweep(threads: int, top: int, buffer: NDArray[np.float64] | None = None) -> list[tuple[int, float]]:
    """(bytes, GB/s) for every swept size, reading a prefix of one buffer filled beforehand.

    Two passes, smallest size first and then largest first, keeping each size's best: another
    process that loads the memory for a few seconds then spoils one pass's sizes, not both.
    """
    if buffer is None:
        buffer = np.ones(top // 8)  # filled, not np.empty: every page is faulted in before timing
    sizes = sweep_sizes(top)
    best = dict.fromkeys(sizes, 0.0)
    for order in (sizes, sizes[::-1]):
        for size in order:
            best[size] = max(best[size], read_gbps(buffer, size, threads, repeats=2 if size > 2**26 else 4))
    return [(size, best[size]) for size in sizes]


def measure_hierarchy(thread_counts: list[int], top: int | None = None) -> dict[str, Any]:
    """The sweep and the levels found in it, per thread count, and the roof of a one-pass read of X."""
    top = top or sweep_top_bytes()
    buffer = np.ones(top // 8)
    out: dict[str, Any] = {"top_bytes": top, "reported_llc_bytes": last_level_cache_bytes(), "threads": {}}
    for threads in thread_counts:
        points = sweep(threads, top, buffer)
        hierarchy = find_levels([p[0] for p in points], [p[1] for p in points])
        out["threads"][str(threads)] = {"sweep": [[s, g] for s, g in points], **hierarchy.to_json()}
    out["roof"] = measure_roof(buffer, thread_counts)
    return out


# The roof's X: this many features, as many examples as the sweep's largest read holds.
ROOF_N_X = 4096


def _row_segments(X: NDArray[np.float64], block: int, lead: int = 0) -> float:
    """Read examples 0..lead-1, then the blocks of `block` examples from lead on, of C-ordered X.

    As the fused kernels' first pass reads them: eight rows' segments at a time, each example's
    eight values summed in X's dtype onto a float64 total (numba_fused.z_eight_rows, with every
    weight 1). One row segment at a time is one stream that starts over every segment: on an AMD
    EPYC (Zen 4) VM that read 4,096 x 16,384 at 9.5 GB/s on 1 thread, below the kernel's own rate.
    """
    n_x, m = X.shape
    ones = np.ones(n_x, X.dtype)
    z = np.empty(max(block, lead))
    s = 0.0
    if lead > 0:
        s = _add_block(s, ones, X, 0, lead, z)
    for start in range(lead, m, block):
        s = _add_block(s, ones, X, start, min(start + block, m), z)
    return s


def _block_sum(s: float, ones: NDArray[Any], X: NDArray[Any], start: int, stop: int, z: NDArray[np.float64]) -> float:
    zb = z[: stop - start]
    zb[:] = 0.0
    z_eight_rows(ones, X, start, stop, zb)
    for i in range(zb.size):
        s += zb[i]
    return s


_add_block: Any = numba.njit(inline="always", fastmath={"reassoc"})(_block_sum)
_segments_jit: Any = numba.njit(fastmath={"reassoc"}, nogil=True)(_row_segments)


def _streams_in_pool(flat: NDArray[Any], threads: int) -> float:
    """Examples-major pattern: each of `threads` parts of X's memory streamed whole, one part per iteration."""
    n = flat.size
    sums = np.zeros(threads)
    for t in numba.prange(threads):
        sums[t] = _sum_reps_jit(flat[t * n // threads : (t + 1) * n // threads], 1)
    return float(sums.sum())


def _taken_segments(X: NDArray[Any], block: int, lead: int, first: bool, counter: NDArray[np.int64]) -> float:
    """Examples 0..lead-1 where `first`, then the blocks of `block` examples from lead on that this
    thread takes from counter (numba_parallel.take) until none is left, read as _row_segments does."""
    n_x, m = X.shape
    ones = np.ones(n_x, X.dtype)
    z = np.empty(max(block, lead))
    s = 0.0
    if first and lead > 0:
        s = _add_block(s, ones, X, 0, lead, z)
    count = -(-(m - lead) // block)
    k = take(counter)
    while k < count:
        start = lead + k * block
        s = _add_block(s, ones, X, start, min(start + block, m), z)
        k = take(counter)
    return s


_taken_segments_jit: Any = numba.njit(inline="always", fastmath={"reassoc"})(_taken_segments)


def _blocks_in_pool(X: NDArray[Any], block: int, lead: int, threads: int) -> float:
    """Features-major pattern: the fused kernels' blocks, taken as threads free up, eight rows' segments at a time.

    As in the kernels (numba_parallel.taken_blocks), the blocks start on a cache line where the
    rows allow it, and part 0 also reads the examples before it.
    """
    sums = np.zeros(threads)
    counter = np.zeros(8, np.int64)  # counter[0]: the next block to take
    for t in numba.prange(threads):
        sums[t] = _taken_segments_jit(X, block, lead, t == 0, counter)
    return float(sums.sum())


# The parts run on Numba's thread pool, the one numba_parallel runs on; numba.get_num_threads()
# of its threads take them. Not a pool of Python threads, as the sweep's read uses (it keeps the best
# of several reads, so a slow wake-up costs it nothing): between two consecutive calls those threads
# sleep, and waking them cost a 2-core VM up to a millisecond, while the roof is a median of rounds.
# Measured on an AMD EPYC (2 threads, interleaved, medians of 7 calls after 20 ms of warm-up, 12-25
# rounds), Python threads against Numba's pool: at 76 MiB (calls of 1-2 ms) examples-major 47 against
# 85 GB/s at 1,000 x 10,000 and 38 against 80 at 100 x 100,000, features-major blocks 49 against 70 at
# 1,000 x 10,000, with OpenBLAS's w.T @ X at 72, 63 and 74; at 763 MiB (calls of about 17 ms) within
# 1-5%: examples-major 43.8 against 44.3 at 1,000 x 100,000, features-major 43.8 against 46.2 at
# 10,000 x 10,000.
_streams_in_pool_jit: Any = numba.njit(parallel=True)(_streams_in_pool)
_blocks_in_pool_jit: Any = numba.njit(parallel=True)(_blocks_in_pool)


class OnePassRead:
    """A compiled read of every element of X once, in its layout's access pattern, in `threads` parts.

    The roof a kernel that reads X once is measured against: the runner times it beside the
    kernels, in the same rounds, in every cell with X out of cache at its thread count. Examples-major X (and any
    other contiguous X in that order) is streamed in contiguous parts; features-major X is
    read in the fused kernels' blocks (numba_parallel.block_plan). With more than one part the
    parts run on Numba's thread pool, as numba_parallel does: set its threads (numba.set_num_threads,
    timing.thread_limits) to the part count before timing.
    """

    def __init__(self, X: NDArray[Any], threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if X.ndim == 2 and X.flags.f_contiguous and X.shape[0] > 1:
            flat = X.T.reshape(-1)  # a view: X's memory in order
            self._read: Callable[[], float] = (
                partial(_sum_reps_jit, flat, 1) if threads == 1 else partial(_streams_in_pool_jit, flat, threads)
            )
        elif X.ndim == 2 and X.flags.c_contiguous:
            lead, block = block_plan(X, threads)
            self._read = (
                partial(_segments_jit, X, block, lead)
                if threads == 1
                else partial(_blocks_in_pool_jit, X, block, lead, threads)
            )
        else:
            raise ValueError("OnePassRead needs a contiguous 2-d X")
        self.nbytes = int(X.nbytes)

    def __call__(self) -> float:
        """The sum of X's elements (each read once)."""
        return float(self._read())


def _best_of(read: Callable[[], float], repeats: int = 5) -> float:
    """Seconds of the fastest of `repeats` calls, after an untimed one (which also compiles)."""
    read()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_roof(buffer: NDArray[np.float64], thread_counts: list[int]) -> dict[str, dict[str, float]]:
    """GB/s of a compiled one-pass read of an X out of cache, in each layout's access pattern, per thread count.

    Examples-major (F): each thread streams its contiguous part. Features-major (C): the
    fused kernels' access, blocks of examples read eight rows' segments at a time, blocks taken
    by the threads as they free up (numba_parallel.block_plan, take). Both OnePassRead, on Numba's pool.
    The best streaming rate code reaches here, against which the report measures the kernels
    where no cell timed it beside them.
    """
    m = buffer.size // ROOF_N_X
    X = buffer[: ROOF_N_X * m].reshape(ROOF_N_X, m)  # C-ordered; its transpose is the F-ordered X
    nbytes = X.size * 8
    out: dict[str, dict[str, float]] = {"F": {}, "C": {}}
    for threads in thread_counts:
        with thread_limits(threads):
            flat = _best_of(OnePassRead(X.T, threads))
            blocks = _best_of(OnePassRead(X, threads))
        out["F"][str(threads)] = nbytes / flat / 1e9
        out["C"][str(threads)] = nbytes / blocks / 1e9
    return out


def last_level_cache_bytes() -> int:
    """The size in bytes of cpu0's highest cache level as the OS reports it; 32 MiB where unreadable."""
    found: list[tuple[int, int]] = []  # (level, bytes)
    for index in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(f"{index}/level", encoding="ascii") as f:
                level = int(f.read().strip())
            with open(f"{index}/size", encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        # sysfs writes sizes as e.g. "32K" or "32768K".
        scale = _SIZE_SUFFIXES.get(text[-1:].upper(), 1)
        digits = text[:-1] if scale != 1 else text
        if digits.isdigit():
            found.append((level, int(digits) * scale))
    return max(found)[1] if found else FALLBACK_LLC_BYTES
