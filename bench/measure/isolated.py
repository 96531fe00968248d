"""Rows timed in a worker process pinned to as many cores as the row's threads.

For implementations marked `isolate`: XLA's CPU thread pool sizes itself from the affinity
mask when the process starts and no call resizes it, so "1 thread" can only mean a process
that may run on one core. The worker makes the cell's data from the same seed, gates and
times it with the grid runner's own code, and reports the cores it actually ran on.
"""

from __future__ import annotations

import os

from bench.base.records import Cell
from bench.measure.profiles import Profile
from bench.measure.timing import available_cores
from bench.measure.worker import WorkerPool, WorkerRequest, WorkerResult


def cores_for(threads: int) -> tuple[int, ...]:
    """The first `threads` cores of this process's affinity mask (all of them if fewer)."""
    # Not on Linux there is no mask to narrow: the first cores by number.
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(available_cores()))
    return tuple(allowed[:threads])


def time_isolated(cell: Cell, profile: Profile, pool: WorkerPool) -> tuple[WorkerResult, str | None]:
    """Time one task in the pool's worker pinned to its cores; the note says when there were fewer cores."""
    threads = cell.threads
    request = WorkerRequest(
        cell,
        budget_s=profile.cell_budget_s,
        round_s=profile.round_s,
        max_rounds=profile.max_rounds,
        cores=cores_for(threads),
    )
    result = pool.time(request)
    note = None
    if len(result.cores) != threads:
        cores = ",".join(map(str, result.cores))
        note = f"ran on {len(result.cores)} core(s) ({cores}): fewer available than the {threads} threads asked"
    return result, note
