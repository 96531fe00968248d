"""A STREAM-style probe of how fast this machine reads memory, with a given number of threads.

A gradient step over a large X is bound by reading X, so the benchmark records the machine's
read bandwidth next to its timings: bytes of X divided by a step's time, over this figure,
says how close an implementation comes to the hardware's limit.
"""

from __future__ import annotations

import glob
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

_FALLBACK_LLC_BYTES = 32 * 1024 * 1024
_SIZE_SUFFIXES = {"K": 1024, "M": 1024**2, "G": 1024**3}


def _serial_sum(part: NDArray[np.float64]) -> float:
    s = 0.0
    for i in range(part.size):
        s += part[i]
    return s


# reassoc lets LLVM split the sum over several vector accumulators; without it the
# additions form one serial chain and the probe would measure FP latency, not memory.
_serial_sum_jit: Any = numba.njit(fastmath={"reassoc"}, nogil=True)(_serial_sum)


def _threaded_sum(pool: ThreadPoolExecutor, parts: list[NDArray[np.float64]]) -> float:
    # One plain thread per part, each in compiled code that releases the GIL. Not Numba's
    # parallel pool: under its OpenMP layer on a shared 2-core VM, a two-thread read was seen
    # stuck at 5.6 GB/s for a whole process (against 29 GB/s on one thread) and at 50 GB/s in
    # the next, so the probe would measure the scheduler, not the memory.
    return float(sum(f.result() for f in [pool.submit(_serial_sum_jit, part) for part in parts]))


def measure_read_bandwidth(threads: int, nbytes: int, repeats: int = 10) -> float:
    """Best GB/s (1e9 bytes/s) of `repeats` reads of a float64 array of nbytes, split over `threads` threads.

    The best, not the median, as STREAM reports it: the figure is a ceiling for the kernels, and
    on a shared machine a read that loses a core for a moment says nothing about the memory.
    """
    if threads < 1 or nbytes < 8 or repeats < 1:
        raise ValueError(f"threads, repeats must be >= 1 and nbytes >= 8, got {threads}, {repeats}, {nbytes}")
    # Filled (not np.empty) so every page is faulted in before the clock starts.
    a = np.ones(nbytes // 8)
    parts = np.array_split(a, threads)  # contiguous views: one sequential stream per thread
    with ThreadPoolExecutor(max_workers=threads) as pool:
        _threaded_sum(pool, [p[:8] for p in parts])  # compile and start the threads, untimed
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            _threaded_sum(pool, parts)
            seconds.append(time.perf_counter() - start)
    return a.nbytes / min(seconds) / 1e9


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
