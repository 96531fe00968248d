"""A STREAM-style probe of how fast this machine reads memory, with a given number of threads.

A gradient step over a large X is bound by reading X, so the benchmark records the machine's
read bandwidth next to its timings: bytes of X divided by a step's time, over this figure,
says how close an implementation comes to the hardware's limit.
"""

from __future__ import annotations

import glob
import statistics
import time
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

_FALLBACK_LLC_BYTES = 32 * 1024 * 1024
_SIZE_SUFFIXES = {"K": 1024, "M": 1024**2, "G": 1024**3}


def _chunked_sum(a: NDArray[np.float64], chunks: int) -> float:
    # One contiguous slice per thread, so each thread streams its own part of the array and
    # the hardware prefetchers see one sequential stream per core. The loop runs over a
    # slice from 0, not over range(lo, hi) of the whole array: with a signed start Numba
    # keeps its negative-index check in the loop and LLVM no longer vectorises it (10x slower).
    n = a.size
    partial = np.zeros(chunks)
    for c in numba.prange(chunks):
        part = a[c * n // chunks : (c + 1) * n // chunks]
        s = 0.0
        for i in range(part.size):
            s += part[i]
        partial[c] = s
    return float(partial.sum())


# reassoc lets LLVM split the sum over several vector accumulators; without it the
# additions form one serial chain and the probe would measure FP latency, not memory.
_sum_kernel: Any = numba.njit(parallel=True, fastmath={"reassoc"}, nogil=True)(_chunked_sum)


def measure_read_bandwidth(threads: int, nbytes: int, repeats: int = 5) -> float:
    """Median GB/s (1e9 bytes/s) of reading a float64 array of nbytes, with `threads` Numba threads."""
    if threads < 1 or nbytes < 8 or repeats < 1:
        raise ValueError(f"threads, repeats must be >= 1 and nbytes >= 8, got {threads}, {repeats}, {nbytes}")
    # Filled (not np.empty) so every page is faulted in before the clock starts.
    a = np.ones(nbytes // 8)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(threads)
        _sum_kernel(a[:threads], threads)  # compile, and wake the thread pool, untimed
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            _sum_kernel(a, threads)
            seconds.append(time.perf_counter() - start)
    finally:
        numba.set_num_threads(previous)
    return a.nbytes / statistics.median(seconds) / 1e9


def last_level_cache_bytes() -> int:
    """The size in bytes of cpu0's highest cache level, from sysfs; 32 MiB where unreadable."""
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
    return max(found)[1] if found else _FALLBACK_LLC_BYTES
