"""The memory hierarchy as the sweep measured it: plateaus, their capacities, and a bandwidth curve.

Shared types: the sweep (measure) produces them, the cut-off, the cost model and the report read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# The last-level cache assumed for a run made before the sweep, where the OS said nothing either.
FALLBACK_LLC_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Level:
    """One plateau of the sweep: its bandwidth, and the largest working set it serves (None: main memory)."""

    gbps: float
    capacity_bytes: float | None


@dataclass(frozen=True)
class Hierarchy:
    """The levels found in one sweep, fastest first; the last is main memory."""

    levels: tuple[Level, ...]
    memory_from_bytes: float  # the smallest swept size already at main memory's bandwidth

    @property
    def memory_gbps(self) -> float:
        return self.levels[-1].gbps

    @property
    def last_capacity_bytes(self) -> float | None:
        caps = [lv.capacity_bytes for lv in self.levels if lv.capacity_bytes is not None]
        return caps[-1] if caps else None

    def to_json(self) -> dict[str, Any]:
        return {"levels": [asdict(lv) for lv in self.levels], "memory_from_bytes": self.memory_from_bytes}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Hierarchy:
        return Hierarchy(
            levels=tuple(Level(float(lv["gbps"]), lv["capacity_bytes"]) for lv in data["levels"]),
            memory_from_bytes=float(data["memory_from_bytes"]),
        )


@dataclass(frozen=True)
class Bandwidth:
    """Read bandwidth against working-set size, from the sweep: log-log interpolation, flat beyond its ends.

    `levels_gbps` and `level_bytes` are the plateaus the knee finder found, fastest first, and
    the largest working set each serves (inf for main memory); empty for a bare curve.
    """

    sizes: tuple[float, ...]
    gbps: tuple[float, ...]
    levels_gbps: tuple[float, ...] = ()
    level_bytes: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.gbps) or not self.sizes:
            raise ValueError("a bandwidth curve needs matching, non-empty sizes and GB/s")
        if len(self.levels_gbps) != len(self.level_bytes):
            raise ValueError("each level needs its bandwidth and its size")

    def seconds_per_byte(self, nbytes: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.log(np.asarray(self.sizes, dtype=float))
        # A running median of three smooths single disturbed reads without moving the steps.
        y = np.log(np.asarray(self.gbps, dtype=float))
        if len(y) >= 3:
            y = np.concatenate([[y[0]], np.median(np.lib.stride_tricks.sliding_window_view(y, 3), axis=1), [y[-1]]])
        # A smaller working set is never read slower than a larger one: the dips at the smallest
        # sizes are call overhead, not the memory, and would make tiny cells look memory-bound.
        y = np.maximum.accumulate(y[::-1])[::-1]
        gbps = np.exp(np.interp(np.log(np.maximum(nbytes, 1.0)), x, y))
        return np.asarray(1.0 / (gbps * 1e9), dtype=np.float64)

    def beyond_levels(self, nbytes: NDArray[np.float64]) -> NDArray[np.float64]:
        """How far each working set has gone past each level boundary: 0 inside, 1 at the next plateau.

        Measured along the curve itself (its seconds per byte between the two plateaus), so the
        step follows the same ramp the reads do.
        """
        spb = np.maximum.accumulate(1.0 / (np.asarray(self.levels_gbps, dtype=float) * 1e9))
        if spb.size < 2:
            return np.zeros((np.size(nbytes), 0))
        x = self.seconds_per_byte(np.atleast_1d(np.asarray(nbytes, dtype=float)))[:, None]
        width = np.maximum(np.diff(spb), 1e-30)[None, :]
        return np.asarray(np.clip((x - spb[None, :-1]) / width, 0.0, 1.0), dtype=float)


def hierarchy_of(meta: dict[str, Any], threads: int = 1) -> Hierarchy | None:
    """The measured hierarchy stored in a run's metadata (None for runs made before the sweep)."""
    entry = (meta.get("memory") or {}).get("threads", {}).get(str(threads))
    return Hierarchy.from_json(entry) if entry else None


# X this many times the last cache the sweep measured cannot stay in it from one pass to the next.
OUT_OF_CACHE_CAPACITIES = 2.0


def out_of_cache_bytes(meta: dict[str, Any], threads: int = 1) -> float:
    """X at least this large lives in main memory for `threads` threads here: measured where there is a sweep.

    OUT_OF_CACHE_CAPACITIES times the last cache's capacity as the sweep measured it on that many
    threads, never below 1 thread's (1 thread's where the sweep has no such count): threads on
    other cores bring more cache (on an AMD EPYC VM, 23-25 MiB on 1 thread and 38-40 MiB on 2 in
    two sweeps; a 2-thread read of a 76 MiB X ran at 49-70 GB/s and of a 763 MiB one at 40-50).
    Where the sweep found no cache, where its read bandwidth reached main memory's plateau. Not
    that plateau's start where there is a cache: past the cache the bandwidth can keep falling
    slowly (on an AMD EPYC, 1 thread: 59 GB/s at 32 MiB, 53 at 51 MiB, 44 at 256 MiB), and where
    the plateau starts then moves with the noise: two sweeps of the same machine put it at 51 and
    81 MiB, for a cache measured at 24.1 and 24.8 MiB.
    """
    one = _limit(hierarchy_of(meta), meta)
    mine = hierarchy_of(meta, threads) if threads != 1 else None
    # Never below one thread's: more threads do not bring less cache, while a sweep on several
    # threads that misses a level (a slow fade taken for one plateau) would put the limit at the
    # level before it.
    return one if mine is None else max(one, _limit(mine, meta))


def _limit(found: Hierarchy | None, meta: dict[str, Any]) -> float:
    if found is not None:
        capacity = found.last_capacity_bytes
        return found.memory_from_bytes if capacity is None else OUT_OF_CACHE_CAPACITIES * capacity
    # An older run: the OS-reported last-level cache, four times over.
    return 4.0 * float(meta.get("last_level_cache_bytes") or FALLBACK_LLC_BYTES)


def curve_of(meta: dict[str, Any], threads: int = 1) -> Bandwidth | None:
    """The sweep as a bandwidth curve for the cost model (None for runs made before the sweep)."""
    entry = (meta.get("memory") or {}).get("threads", {}).get(str(threads))
    if not entry or not entry.get("sweep"):
        return None
    sizes, gbps = zip(*entry["sweep"], strict=True)
    levels = Hierarchy.from_json(entry).levels if entry.get("levels") else ()
    return Bandwidth(
        tuple(float(s) for s in sizes),
        tuple(float(g) for g in gbps),
        levels_gbps=tuple(lv.gbps for lv in levels),
        level_bytes=tuple(float("inf") if lv.capacity_bytes is None else float(lv.capacity_bytes) for lv in levels),
    )


def roof_setters() -> dict[str, int]:
    """The implementations whose streaming rate can raise a cell's roof, with how many times each
    reads X per step: every one with a known count and no roof goal of its own.

    The roof is the best streaming rate code reaches on X: the one-pass read, or one of these
    reading X faster (reads x bytes / time), whichever is higher.
    """
    from implementations import REGISTRY

    return {
        name: impl.reads_of_x
        for name, impl in REGISTRY.items()
        if impl.reads_of_x is not None and not (impl.goal and impl.goal.roof_share)
    }


def roof_of(meta: dict[str, Any], layout: str, threads: int) -> float | None:
    """GB/s of the sweep's one-pass read of X in this layout's access pattern (None for runs without it)."""
    value = ((meta.get("memory") or {}).get("roof") or {}).get(layout, {}).get(str(threads))
    return float(value) if value else None
