"""What the course note claims, and the setting it is judged in: shared by the runner and the analysis.

The runner needs the thresholds too (it re-measures cells whose interval straddles one), so
they live here, below both, and are read off the implementations that carry a claim.
"""

from __future__ import annotations

from implementations import BASELINE, REGISTRY

# The headline comparison is the course's own setting: float64, (n_x, m) in C order, one thread.
HEADLINE = {"dtype": "float64", "layout": "C", "threads": 1}
# The kernels' goals (Goal) are judged in float64; other dtypes are shown beside them, unjudged.
JUDGED_DTYPE = "float64"
# The note's speed table: approach -> (implementation, claimed speedup over two loops), in registry order.
CLAIMS: dict[str, tuple[str, float]] = {
    impl.claim[0]: (name, impl.claim[1]) for name, impl in REGISTRY.items() if impl.claim is not None
}
# A claim of ~K x counts as holding in a cell when the measured speedup is at least K / 2.
HOLDS_FACTOR = 0.5


def thresholds() -> dict[str, float]:
    """implementation -> the speedup over BASELINE at which its claim counts as holding."""
    return {name: HOLDS_FACTOR * claimed for name, claimed in CLAIMS.values() if name != BASELINE}
