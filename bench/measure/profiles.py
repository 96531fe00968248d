"""Grid profiles, as data: which sizes, dtypes, layouts and thread counts a run measures.

In the manner of asv's params/param_names: a profile is a named set of axes plus the
budgets that keep its run inside a stated time on a 2-core machine.

No size is a power of two: a row stride of 4 KiB (n_x or m = 512 float64) maps one example's
features to the same cache sets, which made numba_loop 4x slower at 512 x 512 than at
500 x 500 (the robustness study measures it). The verdicts must not rest on such a size.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.base.constants import COURSE_SHAPE

OFF_GRID = (
    (3, 3), (3, 30), (30, 3), (3, 300), (30, 30), (300, 3), (3, 3_000), (30, 300), (300, 30), (3_000, 3),
    (30, 3_000), (300, 300), (3_000, 30), (30_000, 3), (300, 3_000), (3_000, 300), (30_000, 30),
    (3_000, 3_000), (30_000, 300), (30_000, 3_000),
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """One named grid: implementation x m x n_x x dtype x layout x threads, and its budgets."""

    name: str
    description: str
    m: tuple[int, ...]
    n_x: tuple[int, ...]
    extra_cells: tuple[tuple[int, int], ...] = (COURSE_SHAPE,)  # (m, n_x) beyond the product
    dtypes: tuple[str, ...] = ("float64", "float32")
    layouts: tuple[str, ...] = ("C", "F")
    threads: tuple[str, ...] = ("1", "all")
    max_elements: int = 2**27  # cells of the m x n_x product above this are not in the grid
    call_budget_s: float = 1.5  # the cut-off: a cell predicted slower per call is skipped
    cell_budget_s: float = 2.0  # timing time for one cell of one implementation; >= 5 rounds
    round_s: float = 0.01  # each round lasts at least this long (far above the timer's ~100 ns)
    max_rounds: int = 10
    remeasure_s: float = 90.0  # time for more rounds of groups whose answer is in doubt, after the sweep
    # Time for more passes over the groups a spread goal is judged on (runner._spread_groups), after those.
    spread_s: float = 45.0
    lecture_repeats: int = 5  # rounds of the lecture's 1e6-element dot-product demo
    sweep_top_bytes: int | None = None  # the memory sweep's largest read; None: far enough to find memory
    # Cells between the grid's sizes, timed in the headline setting only and left out of every fit and
    # rule: the model and the verdicts are tested on them (model_errors.csv, verdicts.json's off_grid).
    off_grid: tuple[tuple[int, int], ...] = ()
    # Rounds of cells timed after the sweep to bring each verdict's threshold within 1.5x of a measured cell.
    locate_rounds: int = 0

    def cells(self, m: tuple[int, ...] | None = None, n_x: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
        """The (m, n_x) cells, smallest first; m or n_x given replace the profile's axes."""
        ms, ns = m or self.m, n_x or self.n_x
        grid = {(a, b) for a in ms for b in ns if a * b <= self.max_elements}
        if m is None and n_x is None:
            grid |= set(self.extra_cells)
        return sorted(grid, key=lambda c: (c[0] * c[1], c[0]))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="quick",
            description="smoke test: small sizes and the course shape, float64, under two minutes",
            m=(1, 20, 300, 5000),
            n_x=(1, 20, 300),
            dtypes=("float64",),
            layouts=("C", "F"),
            call_budget_s=0.3,
            cell_budget_s=0.15,
            round_s=0.002,
            max_rounds=7,
            remeasure_s=8.0,
            spread_s=0.0,
            lecture_repeats=3,
            off_grid=((3, 30), (30, 3_000)),
            locate_rounds=1,
            sweep_top_bytes=256 * 2**20,  # far enough past most laptops' and VMs' last cache
        ),
        Profile(
            name="default",
            description="m and n_x in powers of ten, from 1 to beyond 4x the measured last cache, both layouts, "
            "float64 and float32, 1 and all threads; about 11 minutes on 2 cores without the peers",
            m=(1, 10, 100, 1_000, 10_000, 100_000),
            n_x=(1, 10, 100, 1_000, 10_000),
            # Sizes of 3 x a power of ten on anti-diagonals of m x n_x = 9 x 10^k, from both sides.
            off_grid=OFF_GRID,
            locate_rounds=3,
        ),
        Profile(
            name="full",
            description="a denser grid, larger sizes and a larger cut-off; as long as it needs",
            m=(1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000),
            n_x=(1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000),
            max_elements=2**28,
            call_budget_s=20.0,
            cell_budget_s=10.0,
            round_s=0.02,
            max_rounds=20,
            remeasure_s=600.0,
            spread_s=300.0,
            locate_rounds=4,
        ),
    )
}
