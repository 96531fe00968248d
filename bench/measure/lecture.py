"""The lecture's demo behind the "~300x": the dot product of two 1,000,000-element vectors.

The lecture timed a Python for-loop against np.dot: about 481 ms against about 1.5 ms,
"about 300 times". Here the same, with the suite's timing, plus the loop over Python lists,
which shows how much the 1x baseline itself depends on how the data is held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.base.errors import GateError
from bench.measure.timing import measure, thread_limits

N = 1_000_000
# Quoted from the lecture, not measured here; the report labels them so.
LECTURE_SECONDS = {"loop_numpy": 0.481, "np_dot": 0.0015}


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    fn: Callable[[], float]


def _variants(seed: int) -> list[Variant]:
    rng = np.random.default_rng(seed)
    a, b = rng.random(N), rng.random(N)
    a_list, b_list = a.tolist(), b.tolist()

    def loop_numpy() -> float:
        c = 0.0
        for i in range(N):
            c += a[i] * b[i]
        return float(c)

    def loop_list() -> float:
        c = 0.0
        for i in range(N):
            c += a_list[i] * b_list[i]
        return c

    def np_dot() -> float:
        return float(np.dot(a, b))

    return [
        Variant("loop_numpy", "for loop over NumPy arrays (the lecture's loop)", loop_numpy),
        Variant("loop_list", "for loop over Python lists", loop_list),
        Variant("np_dot", "np.dot (the lecture's vectorised version)", np_dot),
    ]


def run_lecture_demo(seed: int, repeats: int, threads: int = 1) -> list[dict[str, object]]:
    """Time the three variants; rows of variant, label, n, median_s, iqr_s, min_s, rounds, loops."""
    rows: list[dict[str, object]] = []
    variants = _variants(seed)
    expected = variants[-1].fn()
    with thread_limits(threads):
        for variant in variants:
            timing = measure(variant.fn, budget_s=3600.0, round_s=0.05, max_rounds=repeats)
            if not np.isclose(timing.result, expected, rtol=1e-9):
                raise GateError(f"lecture demo {variant.name} computed {timing.result}, not {expected}")
            rows.append(
                {
                    "variant": variant.name,
                    "label": variant.label,
                    "n": N,
                    "threads": threads,
                    "median_s": timing.median_s,
                    "iqr_s": timing.iqr_s,
                    "min_s": timing.min_s,
                    "rounds": timing.rounds,
                    "loops": timing.loops,
                }
            )
    return rows
