"""How stable the machine was while a run measured it: the figures the report states, as tables.

The runner records the canary's drift and each row's stability in metadata.json and
results.csv (bench.measure.estimates); this reads them back as small tables, so the report
only formats them and tools can read the same numbers from stability.csv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.analyse.views import headline
from bench.base.claims import thresholds
from bench.base.records import KEY
from bench.base.results import STATUS_OK

STABILITY_CSV = "stability.csv"
UNSTABLE_CSV = "unstable.csv"


@dataclass(frozen=True)
class Stability:
    """A run's stability: its summary figures, the rows measured while it was unstable, the uncertain claim cells."""

    measured: bool  # False for a run made before the canary: nothing to say
    noisy: bool
    summary: pd.DataFrame  # figure, value, meaning
    unstable: pd.DataFrame  # KEY, median_s, canary_ratio, passes
    uncertain: pd.DataFrame  # implementation, m, n_x, speedup, speedup_low, speedup_high, threshold


FIGURES = (
    ("canary_quiet_s", "the canary's seconds per call when the machine was at its usual best (10th percentile)"),
    ("canary_p90_ratio", "the canary's slow rounds (90th percentile) over its quiet level"),
    ("canary_max_ratio", "the canary's slowest round over its quiet level"),
    ("first_passes", "groups of rows timed together (a cell's dtype, layout and threads)"),
    ("disturbed_first_passes", "of those, disturbed on their first pass (canary slow or varying)"),
    ("remeasured_passes", "extra passes after the sweep: groups in doubt, then the spread goals' groups"),
    ("rows_timed", "rows with interleaved rounds"),
    ("unstable_rows", "rows still unstable after re-measurement"),
    ("claim_cells", "speedups over two loops judged against a claim (every setting)"),
    ("uncertain_claim_cells", "of those, uncertain after re-measurement"),
)


def stability(frame: pd.DataFrame, meta: dict[str, Any]) -> Stability:
    """The run's stability figures from metadata.json's `stability` and the table's `unstable`/`uncertain` columns."""
    info = meta.get("stability") or {}
    summary = pd.DataFrame(
        [{"figure": k, "value": info.get(k, math.nan), "meaning": text} for k, text in FIGURES],
        columns=["figure", "value", "meaning"],
    )
    ok = frame[frame["status"] == STATUS_OK]
    # A table from pytest-benchmark's JSON or an older run has no stability columns: nothing is flagged there.
    for column, empty in (("unstable", False), ("uncertain", False), ("canary_ratio", math.nan), ("passes", math.nan)):
        if column not in ok.columns:
            ok = ok.assign(**{column: empty})
    for column in ("speedup", "speedup_low", "speedup_high"):
        if column not in ok.columns:
            ok = ok.assign(**{column: math.nan})
    unstable = ok[ok["unstable"].astype(bool)][[*KEY, "median_s", "canary_ratio", "passes"]].reset_index(drop=True)
    data = headline(ok)
    names = thresholds()
    doubtful = data[data["implementation"].isin(list(names)) & data["uncertain"].astype(bool)]
    uncertain = doubtful[["implementation", "m", "n_x", "speedup", "speedup_low", "speedup_high"]].assign(
        threshold=doubtful["implementation"].map(names)
    )
    return Stability(
        measured=bool(info),
        noisy=bool(info.get("noisy", False)),
        summary=summary,
        unstable=unstable,
        uncertain=uncertain.reset_index(drop=True),
    )
