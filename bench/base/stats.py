"""Estimates with intervals from repeated rounds: the median, the speedup of paired rounds, their spread.

Shared by the runner (which re-measures cells whose interval is too wide to decide) and the
analysis (which reports the intervals), so both read the same numbers.

Why the median and order statistics: a timing's noise is one-sided and heavy-tailed (a
neighbour, an interrupt, a page fault only ever add time), so the mean and normal-theory
intervals are pulled by single rounds. The interval of the median from order statistics
(the binomial, or sign-test, interval) is exact for any continuous distribution of
independent rounds, needs no resampling, and says honestly how little 3 rounds can tell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
EXACT_RANKS = 8  # samples up to which p_larger's rank test is exact, as scipy's own choice
SIGNIFICANCE = 0.05  # a one-sided p below this: a difference beyond the samples' own variation


@dataclass(frozen=True)
class Interval:
    """A median and a distribution-free interval around it; `level` is the coverage it actually has."""

    estimate: float
    low: float
    high: float
    level: float  # below CONFIDENCE when too few samples exist for it (e.g. 3 rounds: 0.75)
    n: int

    def straddles(self, value: float) -> bool:
        """The interval contains `value`: the data cannot tell on which side of it the truth lies."""
        return self.low < value <= self.high


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0.0, 0)


def median_interval(samples: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The median with the order-statistic interval of at least `confidence` coverage, or the widest there is.

    For n samples, [x_(k), x_(n+1-k)] covers the true median with probability
    1 - 2 P(Binomial(n, 1/2) <= k - 1); k is the largest index that keeps that >= confidence.
    With too few samples (n <= 5 at 95%) the interval is [min, max] and `level` says its coverage.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return NAN_INTERVAL
    median = float(np.median(x))
    if n == 1:
        return Interval(median, median, median, 0.0, 1)
    # Coverage of [x_(k), x_(n+1-k)] for k = 1 .. n//2; it falls as k grows.
    ks = np.arange(1, n // 2 + 1)
    coverage = 1.0 - 2.0 * stats.binom.cdf(ks - 1, n, 0.5)
    ok = ks[coverage >= confidence]
    k = int(ok.max()) if ok.size else 1
    level = float(coverage[k - 1])
    return Interval(median, float(x[k - 1]), float(x[n - k]), level, n)


def paired_ratios(baseline: Mapping[int, float], contender: Mapping[int, float]) -> np.ndarray:
    """baseline / contender seconds for every round both were timed in (their keys are round numbers)."""
    common = sorted(set(baseline) & set(contender))
    return np.array([baseline[r] / contender[r] for r in common], dtype=float)


def paired_speedup(baseline: Mapping[int, float], contender: Mapping[int, float]) -> Interval:
    """The speedup of contender over baseline: the median of the ratios of rounds timed side by side.

    Each ratio compares two calls made within one round, seconds apart, so a slow stretch of
    the machine that lasts longer than a round scales both and cancels in the ratio.
    """
    return median_interval(paired_ratios(baseline, contender))


def unpaired_speedup(
    baseline: Sequence[float] | np.ndarray, contender: Sequence[float] | np.ndarray, seed: int = 0
) -> Interval:
    """Ratio of medians of two samples that were not timed side by side, with a bootstrap interval.

    For rows timed one after the other (rows on several threads); the interval is the
    percentile bootstrap of the ratio of medians, which cannot remove a drift between the two.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(contender, dtype=float)
    if a.size == 0 or b.size == 0:
        return NAN_INTERVAL
    estimate = float(np.median(a) / np.median(b))
    if a.size < 2 or b.size < 2:
        return Interval(estimate, estimate, estimate, 0.0, int(min(a.size, b.size)))
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.median(x, axis=axis) / np.median(y, axis=axis),
        n_resamples=999,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(estimate, min(low, estimate), max(high, estimate), CONFIDENCE, int(min(a.size, b.size)))


def relative_spread(samples: Sequence[float] | np.ndarray) -> float:
    """IQR / median of the samples (0 for fewer than two)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        return 0.0
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else math.nan


def p_larger(these: Sequence[float] | np.ndarray, those: Sequence[float] | np.ndarray) -> float:
    """One-sided p-value that `these` tend to be larger than `those` (Mann-Whitney U); NaN for fewer than two of either.

    For comparing spreads, which are ratios of order statistics with no convenient distribution:
    a rank test needs none, and says when a difference of medians is within what the blocks'
    own variation makes of it (a low p: larger beyond that; a high one: cannot tell).
    """
    a = np.asarray(these, dtype=float)
    b = np.asarray(those, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return math.nan
    # Exact for small samples even with ties (scipy would fall back to the normal approximation,
    # which at 3 against 3 claims p = 0.02 where no ordering can give below 1/20).
    method = "exact" if max(a.size, b.size) <= EXACT_RANKS else "asymptotic"
    return float(stats.mannwhitneyu(a, b, alternative="greater", method=method).pvalue)
