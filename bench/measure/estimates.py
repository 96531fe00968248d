"""From the rounds of a run to its rows and speedups: which rounds count, how stable the machine was.

The runner times each cell's implementations in interleaved rounds with a canary workload in
every round, and keeps every round (rounds.csv, canary.csv). This module turns them into:
- each row's median, IQR and min over the rounds that count, and whether it is `unstable`;
- each speedup as the median of paired round ratios with its interval (speedups.csv), and
  whether the cell is `uncertain`: its interval straddles the claim's threshold, or a row
  behind it was measured while the machine was unstable;
- the cells worth re-measuring, most important first.

A pass (one visit of the runner to a group of rows) is disturbed when the canary, timed in the
same rounds, ran slower than the machine's quiet level or varied within the pass: then the
machine changed under the measurement, whatever the rows themselves show. Rows use the
undisturbed passes when there are any; a row with none is unstable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.base.claims import HEADLINE, thresholds
from bench.base.stats import Interval, paired_speedup, relative_spread, unpaired_speedup
from bench.measure.timing import summarise
from implementations import BASELINE, REFERENCE

# A group's columns: the rows timed together (one cell, dtype, layout and thread count).
GROUP = ("m", "n_x", "dtype", "layout", "threads")
ROUND_COLUMNS = ("implementation", *GROUP, "pass", "round", "seconds", "stamp_s")
CANARY_COLUMNS = (*GROUP, "pass", "round", "seconds", "stamp_s")
ROOF_COLUMNS = CANARY_COLUMNS  # the roof's rounds (roofs.csv), kept as the canary's
SPEEDUP_COLUMNS = (
    "implementation",
    "baseline",
    *GROUP,
    "speedup",
    "ci_low",
    "ci_high",
    "ci_level",
    "pairs",
    "paired",
    "threshold",
    "unstable",
    "uncertain",
)
# The canary's quiet level: this quantile of all its rounds in the run (the machine at its usual best).
QUIET_QUANTILE = 0.1
# A pass is disturbed when its canary's median is this much slower than the quiet level ...
CANARY_SLOW = 1.25
# ... or its rounds spread this much (IQR / median): the machine changed speed during the pass.
CANARY_SPREAD = 0.15
# A time this many times slower than a larger cell of the same series (or faster than a smaller one)
# is suspect: the cost of a step never falls as X grows, so one of the two was disturbed.
SUSPECT_FACTOR = 2.0
# A run is noisy when this share of its passes was disturbed, or the canary's slow rounds
# (90th percentile) ran CANARY_SLOW times its quiet level.
NOISY_SHARE = 0.1
# A row that contradicts this many cells is an outlier: marked unstable if re-measuring did not mend it.
OUTLIER_CONTRADICTIONS = 2
# A speedup whose interval spans more than this factor (high / low) cannot be told apart from one
# this much larger or smaller: uncertain, as two runs of a quiet machine agree within 1.5x at worst.
WIDE_INTERVAL = 1.5
# A speedup from fewer pairs of rounds than this is uncertain, however narrow its interval looks.
MIN_PAIRS = 3


@dataclass(frozen=True)
class Estimates:
    """A run's rows with their statistics over the rounds that count, its speedups, and its stability."""

    rows: pd.DataFrame  # one row per measured key: median_s, iqr_s, min_s, rounds, passes, canary_ratio, unstable
    speedups: pd.DataFrame  # SPEEDUP_COLUMNS
    quiet_s: float  # the canary's quiet level, seconds per call
    passes: pd.DataFrame  # pass_stability: per (group, pass), the canary's ratio and spread, and `disturbed`
    noisy: bool  # is_noisy
    contradictions: dict[tuple[Any, ...], int]  # row key -> cells of its series it contradicts (see contradictions)

    @property
    def disturbed(self) -> frozenset[tuple[Any, ...]]:
        """(*GROUP, pass) of every disturbed pass."""
        return _disturbed(self.passes)


def _disturbed(passes: pd.DataFrame) -> frozenset[tuple[Any, ...]]:
    return frozenset(tuple(r[c] for c in (*GROUP, "pass")) for r in passes.to_dict("records") if r["disturbed"])


def quiet_level(canary: pd.DataFrame) -> float:
    """The canary's seconds per call when the machine is at its usual best (NaN without a canary)."""
    if canary.empty:
        return math.nan
    return float(np.quantile(canary["seconds"].to_numpy(dtype=float), QUIET_QUANTILE))


def pass_stability(canary: pd.DataFrame, quiet_s: float) -> pd.DataFrame:
    """Per (group, pass): the canary's median over the quiet level, its spread, and whether it was disturbed."""
    if canary.empty:
        return pd.DataFrame(columns=[*GROUP, "pass", "canary_ratio", "canary_spread", "disturbed"])
    grouped = canary.groupby([*GROUP, "pass"], sort=False)["seconds"]
    out = grouped.agg(median="median", spread=relative_spread).reset_index()
    out["canary_ratio"] = out["median"] / quiet_s
    out["canary_spread"] = out["spread"]
    out["disturbed"] = (out["canary_ratio"] > CANARY_SLOW) | (out["canary_spread"] > CANARY_SPREAD)
    return out.drop(columns=["median", "spread"])


def _counted(rounds: pd.DataFrame, disturbed: frozenset[tuple[Any, ...]]) -> pd.DataFrame:
    """The rounds each row's statistics use: its undisturbed passes, or all of them if every pass was disturbed."""
    if rounds.empty:
        return rounds.assign(quiet=pd.Series(dtype=bool))
    keys = list(zip(*(rounds[c] for c in (*GROUP, "pass")), strict=True))
    quiet = np.array([k not in disturbed for k in keys], dtype=bool)
    rounds = rounds.assign(quiet=quiet)
    any_quiet = rounds.groupby(["implementation", *GROUP])["quiet"].transform("any")
    return rounds[rounds["quiet"] | ~any_quiet]


def row_statistics(
    rounds: pd.DataFrame, stability: pd.DataFrame, disturbed: frozenset[tuple[Any, ...]]
) -> pd.DataFrame:
    """Median, IQR, min, rounds and passes of each row over its counted rounds; `unstable` where they are shaky."""
    columns = ["implementation", *GROUP, "median_s", "iqr_s", "min_s", "rounds", "passes", "canary_ratio", "unstable"]
    # estimate() adds `outlier`: far off its neighbours (see outliers)
    if rounds.empty:
        return pd.DataFrame(columns=columns)
    used = _counted(rounds, disturbed)
    records = []
    ratio = {tuple(r[c] for c in (*GROUP, "pass")): r["canary_ratio"] for r in stability.to_dict("records")}
    visits = rounds.groupby(["implementation", *GROUP], sort=False)["pass"].nunique().to_dict()
    for key, frame in used.groupby(["implementation", *GROUP], sort=False):
        seconds = frame["seconds"].to_numpy(dtype=float)
        median, iqr, low = summarise(seconds)
        group = key[1:]
        ratios = [ratio.get((*group, p), math.nan) for p in sorted(set(frame["pass"]))]
        # Unstable: the machine moved under every pass of this row. A row whose own rounds spread widely
        # on a steady machine (a cell at the edge of a cache, say) is not: its interval says how much.
        unstable = not bool(frame["quiet"].any())
        records.append(
            {
                **dict(zip(("implementation", *GROUP), key, strict=True)),
                "median_s": median,
                "iqr_s": iqr,
                "min_s": low,
                "rounds": int(seconds.size),
                "passes": int(visits[key]),
                "canary_ratio": float(np.nanmedian(ratios)) if not all(map(math.isnan, ratios)) else math.nan,
                "unstable": bool(unstable),
            }
        )
    return pd.DataFrame(records, columns=columns)


def _by_round(frame: pd.DataFrame) -> dict[int, float]:
    return dict(zip(frame["round"].astype(int), frame["seconds"].astype(float), strict=True))


def group_speedups(
    group: tuple[Any, ...], used: pd.DataFrame, unstable: Mapping[str, bool], paired: bool, noisy: bool = False
) -> list[dict[str, Any]]:
    """Speedups of every row of one group over each baseline timed in it (two loops, and the reference).

    On a noisy machine a speedup from rounds not timed side by side (paired False) is uncertain:
    nothing cancels a slow stretch that fell on one of the two blocks.
    """
    limits = thresholds()
    by_name = {str(name): frame for name, frame in used.groupby("implementation", sort=False)}
    out = []
    for baseline in (BASELINE, REFERENCE):
        if baseline not in by_name:
            continue
        for name, frame in by_name.items():
            if name == baseline:
                continue
            interval: Interval
            if paired:
                interval = paired_speedup(_by_round(by_name[baseline]), _by_round(frame))
            else:
                interval = unpaired_speedup(
                    by_name[baseline]["seconds"].to_numpy(dtype=float), frame["seconds"].to_numpy(dtype=float)
                )
            threshold = limits.get(name, math.nan) if baseline == BASELINE else math.nan
            shaky = bool(unstable.get(name, False) or unstable.get(baseline, False))
            straddles = not math.isnan(threshold) and (math.isnan(interval.low) or interval.straddles(threshold))
            wide = interval.low > 0 and interval.high / interval.low > WIDE_INTERVAL
            few = interval.n < MIN_PAIRS  # one or two pairs say nothing about their spread
            out.append(
                {
                    "implementation": name,
                    "baseline": baseline,
                    **dict(zip(GROUP, group, strict=True)),
                    "speedup": interval.estimate,
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                    "ci_level": interval.level,
                    "pairs": interval.n,
                    "paired": paired,
                    "threshold": threshold,
                    "unstable": shaky,
                    "uncertain": bool(shaky or straddles or wide or few or (noisy and not paired)),
                }
            )
    return out


def is_noisy(stability: pd.DataFrame, canary: pd.DataFrame, quiet_s: float) -> bool:
    """A noisy run: NOISY_SHARE of its first passes disturbed, or the canary's slow rounds CANARY_SLOW past quiet."""
    first = stability[stability["pass"] == 0] if not stability.empty else stability
    share = float(first["disturbed"].mean()) if not first.empty else 0.0
    if canary.empty or not np.isfinite(quiet_s):
        return share >= NOISY_SHARE
    slow = float(np.quantile(canary["seconds"].to_numpy(dtype=float) / quiet_s, 0.9))
    return share >= NOISY_SHARE or slow >= CANARY_SLOW


def interleaved(threads: int) -> bool:
    """Whether rows on this many threads are timed in interleaved rounds (paired) or one after the other.

    On one thread they alternate every round. Rows on several threads are timed one block
    after the other with a pause between, since one pool's spinning workers slow the next pool.
    """
    return threads == 1


def estimate(rounds: pd.DataFrame, canary: pd.DataFrame) -> Estimates:
    """Rows and speedups of a run from its rounds and the canary's."""
    quiet_s = quiet_level(canary)
    stability = pass_stability(canary, quiet_s)
    disturbed = _disturbed(stability)
    rows = row_statistics(rounds, stability, disturbed)
    counts = contradictions(rows) if not rows.empty else {}
    if not rows.empty:
        keys = zip(*(rows[c] for c in ("implementation", *GROUP)), strict=True)
        rows["outlier"] = [counts.get(tuple(k), 0) >= OUTLIER_CONTRADICTIONS for k in keys]
        rows["unstable"] = rows["unstable"].astype(bool) | rows["outlier"]
    used = _counted(rounds, disturbed)
    unstable = {tuple(r[c] for c in ("implementation", *GROUP)): bool(r["unstable"]) for r in rows.to_dict("records")}
    noisy = is_noisy(stability, canary, quiet_s)
    speedup_records: list[dict[str, Any]] = []
    for key, frame in used.groupby(list(GROUP), sort=False):
        group = cast(tuple[Any, ...], key)
        names = {str(n): unstable.get((n, *group), False) for n in frame["implementation"].unique()}
        speedup_records += group_speedups(group, frame, names, paired=interleaved(int(group[4])), noisy=noisy)
    speedups = pd.DataFrame(speedup_records, columns=list(SPEEDUP_COLUMNS))
    return Estimates(rows, speedups, quiet_s, stability, noisy, counts)


def contradictions(rows: pd.DataFrame) -> dict[tuple[Any, ...], int]:
    """Per row key: how many cells of the same series its time contradicts by SUSPECT_FACTOR.

    A larger X (m and n_x both at least as large) never makes a step faster, so a row that is
    SUSPECT_FACTOR slower than a larger cell, or faster than a smaller one, contradicts it. A
    row disturbed for its whole pass contradicts several cells; its sound neighbours one each.
    """
    out: dict[tuple[Any, ...], int] = {}
    series = ["implementation", "dtype", "layout", "threads"]
    for _, frame in rows.groupby(series, sort=False):
        m = frame["m"].to_numpy(dtype=float)
        n = frame["n_x"].to_numpy(dtype=float)
        t = frame["median_s"].to_numpy(dtype=float)
        larger = (
            (m[None, :] >= m[:, None]) & (n[None, :] >= n[:, None]) & ((m[None, :] * n[None, :]) > (m * n)[:, None])
        )
        contradicts = larger & (t[:, None] > SUSPECT_FACTOR * t[None, :])  # i slower than a larger j
        counts = contradicts.sum(axis=0) + contradicts.sum(axis=1)
        for k in np.nonzero(counts)[0]:
            record = frame.iloc[int(k)]
            key = (str(record["implementation"]), int(record["m"]), int(record["n_x"]), str(record["dtype"]),
                   str(record["layout"]), int(record["threads"]))  # fmt: skip
            out[key] = int(counts[k])
    return out


def suspects(rows: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Keys of rows that contradict another cell of their series: one of each pair was disturbed."""
    return set(contradictions(rows))


def outliers(rows: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Keys of rows far off their neighbours: they contradict OUTLIER_CONTRADICTIONS cells or more."""
    return {key for key, count in contradictions(rows).items() if count >= OUTLIER_CONTRADICTIONS}


def remeasure_order(estimates: Estimates) -> list[tuple[Any, ...]]:
    """Groups worth more rounds, most important first, the headline setting first at each level:
    speedups whose interval straddles a claim's threshold; rows far off their neighbours (suspect);
    then other uncertain speedups (unstable rows, wide intervals) and unstable rows."""
    priority: dict[tuple[Any, ...], int] = {}

    def headline(group: tuple[Any, ...]) -> bool:
        values = dict(zip(GROUP, group, strict=True))
        return all(values[k] == v for k, v in HEADLINE.items())

    def add(group: tuple[Any, ...], level: int) -> None:
        rank = level * 2 + (0 if headline(group) else 1)
        priority[group] = min(priority.get(group, rank), rank)

    speed = estimates.speedups
    for record in speed[speed["uncertain"].astype(bool)].to_dict("records"):
        group = tuple(record[c] for c in GROUP)
        threshold = float(record["threshold"])
        straddles = not math.isnan(threshold) and float(record["ci_low"]) < threshold <= float(record["ci_high"])
        add(group, 0 if straddles else 2)
    for key in estimates.contradictions:  # every row at odds with a cell of its series: one of the two was disturbed
        add(tuple(key[1:]), 1)
    for record in estimates.rows[estimates.rows["unstable"].astype(bool)].to_dict("records"):
        add(tuple(record[c] for c in GROUP), 2)
    return sorted(priority, key=lambda g: (priority[g], g[0] * g[1]))


# The drift plot and metadata summarise the canary over windows of this many seconds.
DRIFT_WINDOW_S = 10.0


def drift(canary: pd.DataFrame, quiet_s: float, window_s: float = DRIFT_WINDOW_S) -> list[list[float]]:
    """[window start s, median, 90th percentile, rounds] of the canary over its quiet level, window by window."""
    if canary.empty or not np.isfinite(quiet_s):
        return []
    ratio = canary["seconds"].to_numpy(dtype=float) / quiet_s
    window = np.floor(canary["stamp_s"].to_numpy(dtype=float) / window_s).astype(int)
    out = []
    for w in np.unique(window):
        values = ratio[window == w]
        out.append([float(w * window_s), float(np.median(values)), float(np.quantile(values, 0.9)), int(values.size)])
    return out


def stability_summary(estimates: Estimates, canary: pd.DataFrame, remeasured: int) -> dict[str, Any]:
    """How stable the machine was over the run, for metadata.json, the report and the run's last line."""
    passes = estimates.passes
    first = passes[passes["pass"] == 0] if not passes.empty else passes
    ratio = canary["seconds"].to_numpy(dtype=float) / estimates.quiet_s if not canary.empty else np.array([])
    slow = float(np.quantile(ratio, 0.9)) if ratio.size else math.nan
    share = float(first["disturbed"].mean()) if not first.empty else 0.0
    speed = estimates.speedups
    claim_cells = speed[speed["threshold"].notna()] if not speed.empty else speed
    uncertain = claim_cells[claim_cells["uncertain"].astype(bool)] if not claim_cells.empty else claim_cells
    rows = estimates.rows
    return {
        "canary_quiet_s": estimates.quiet_s,
        "canary_rounds": int(ratio.size),
        "canary_p90_ratio": slow,
        "canary_max_ratio": float(ratio.max()) if ratio.size else math.nan,
        "passes": len(passes),
        "first_passes": len(first),
        "disturbed_first_passes": int(first["disturbed"].sum()) if not first.empty else 0,
        "disturbed_share": share,
        "remeasured_passes": int(remeasured),
        "rows_timed": len(rows),
        "unstable_rows": int(rows["unstable"].astype(bool).sum()) if not rows.empty else 0,
        "claim_cells": len(claim_cells),
        "uncertain_claim_cells": len(uncertain),
        "noisy": estimates.noisy,
        "drift": drift(canary, estimates.quiet_s),
        "thresholds": {
            "canary_slow": CANARY_SLOW,
            "canary_spread": CANARY_SPREAD,
            "wide_interval": WIDE_INTERVAL,
            "suspect_factor": SUSPECT_FACTOR,
            "noisy_share": NOISY_SHARE,
        },
    }


def noisy_line(stability: Mapping[str, Any]) -> str | None:
    """The run's one line on stderr when the machine was noisy, None when it was not."""
    if not stability.get("noisy"):
        return None
    return (
        f"warning: the machine was noisy during this run: {stability['disturbed_first_passes']} of "
        f"{stability['first_passes']} groups of rows disturbed on their first pass, the canary's slow rounds at "
        f"{stability['canary_p90_ratio']:.2f}x its quiet level; after {stability['remeasured_passes']} re-measurements "
        f"{stability['unstable_rows']} row(s) stay unstable and {stability['uncertain_claim_cells']} claim cell(s) "
        "uncertain (REPORT.md, 'How stable was the machine')"
    )
