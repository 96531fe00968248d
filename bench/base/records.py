"""The records a measurement shares from runner to worker to row: what was measured (Cell), and its summary.

Nothing heavy is imported here: a worker reads these before it pins itself to its cores.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# What makes two rows the same measurement (for --resume and for joins in the report); a run has one seed.
KEY = ("implementation", "m", "n_x", "dtype", "layout", "threads")
CellKey = tuple[str, int, int, str, str, int]


@dataclass(frozen=True)
class Cell:
    """An implementation on one (m, n_x), in one dtype, layout and thread count, on data made from `seed`."""

    implementation: str
    m: int
    n_x: int
    dtype: str
    layout: str
    threads: int
    seed: int

    @property
    def key(self) -> CellKey:
        return (self.implementation, self.m, self.n_x, self.dtype, self.layout, self.threads)

    @property
    def series(self) -> tuple[str, str, str, int]:
        """Cells of one series differ only in size: same code, dtype, layout and threads."""
        return (self.implementation, self.dtype, self.layout, self.threads)

    def cell_only(self) -> Cell:
        """The record itself, without what a subclass adds (a task's code, a row's figures)."""
        return Cell(**{f.name: getattr(self, f.name) for f in fields(Cell)})


@dataclass(frozen=True)
class Summary:
    """Seconds per call over `rounds` rounds of `loops` calls; compile_s is a JIT's first call, timed apart."""

    median_s: float
    iqr_s: float
    min_s: float
    rounds: int
    loops: int
    compile_s: float | None


SUMMARY_FIELDS = tuple(f.name for f in fields(Summary))
