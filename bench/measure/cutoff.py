"""The cut-off's prediction of one call, made before a cell is timed, from the cells already timed.

perfplot stops a series once a size exceeds its budget; the grid is two-dimensional, so a cell
is predicted from the largest measured cell it contains (a <= m, b <= n_x): that cell's time
less the series' fixed cost (its smallest cell's time), scaled by the ratio of elements, plus
the fixed cost again (with a single cell, all of its time scales). A step's time grows at least
that fast once its per-element cost dominates; when X leaves a cache level it grows faster, so
the prediction errs low: a cell is timed rather than dropped, and the per-cell budget bounds what that costs.
"""

from __future__ import annotations

from collections.abc import Sequence


def predict_call_s(measured: Sequence[tuple[int, int, float]], m: int, n_x: int) -> float | None:
    """Seconds for one call at (m, n_x) from the series' measured (m, n_x, seconds); None if nothing below it."""
    below = [(a, b, t) for a, b, t in measured if a <= m and b <= n_x]
    if not below:
        return None
    a, b, t = max(below, key=lambda c: (c[0] * c[1], c[2]))
    small_m, small_n, small_t = min(measured, key=lambda c: (c[0] * c[1], c[2]))
    # The fixed cost is what the smallest cell took, when it is smaller than the one scaled; alone, nothing is fixed.
    fixed = min(small_t, t) if small_m * small_n < a * b else 0.0
    return fixed + (t - fixed) * (m * n_x) / (a * b)
