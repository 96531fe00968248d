"""A noisy machine: intervals that cover, rounds that alternate, slow stretches flagged, suspects found.

No wall-clock assertion here: the kernels are stubs that advance a fake clock, so a "slow
stretch" is injected exactly where the test wants it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bench.measure.runner
from bench.base.results import load_results, load_speedups
from bench.base.stats import median_interval, p_larger, paired_speedup, unpaired_speedup
from bench.cli import main
from bench.measure.estimates import (
    CANARY_COLUMNS,
    ROUND_COLUMNS,
    SPEEDUP_COLUMNS,
    estimate,
    group_speedups,
    noisy_line,
    outliers,
    remeasure_order,
    stability_summary,
    suspects,
)
from bench.measure.profiles import PROFILES
from bench.measure.timing import Contender, round_counts, run_blocked, run_interleaved, schedule
from implementations import REFERENCE, REGISTRY
from tests.helpers import flat_memory


class FakeClock:
    """A clock that only moves when a stub kernel says it ran; `factor` slows every kernel on cue."""

    def __init__(self) -> None:
        self.now = 0.0
        self.factor = 1.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def kernel(self, name: str, cost_s: float) -> Callable[[], None]:
        def run() -> None:
            self.calls.append(name)
            self.now += cost_s * self.factor

        return run


# -- intervals -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 5, 10, 25])
def test_median_interval_covers_the_true_median_as_often_as_it_says(n: int) -> None:
    # A skewed, heavy-tailed distribution like a timing's: lognormal, whose median is exp(mu).
    rng = np.random.default_rng(n)
    mu, trials = math.log(2e-3), 4000
    samples = rng.lognormal(mu, 0.5, size=(trials, n))
    hits, levels = 0, set()
    for row in samples:
        interval = median_interval(row)
        hits += interval.low <= math.exp(mu) <= interval.high
        levels.add(round(interval.level, 6))
    (level,) = levels  # the same n always gets the same order statistics
    assert interval.n == n
    # Three standard errors of a binomial proportion over 4000 trials.
    assert abs(hits / trials - level) < 3 * math.sqrt(level * (1 - level) / trials) + 1e-9
    if n >= 6:
        assert level >= 0.95
    else:
        assert level == pytest.approx(1 - 2 * 0.5**n)  # [min, max] is all a few rounds can give


def test_paired_speedup_cancels_a_drift_that_unpaired_rounds_cannot() -> None:
    # The machine slows down 2x halfway through; both contenders see it in the same rounds.
    slow = np.where(np.arange(20) < 10, 1.0, 2.0)
    baseline = {r: 10e-3 * s for r, s in enumerate(slow)}
    contender = {r: 1e-3 * s for r, s in enumerate(slow)}
    paired = paired_speedup(baseline, contender)
    assert paired.estimate == pytest.approx(10.0) and paired.low == pytest.approx(10.0)
    # Timed one after the other (baseline before the slow stretch, contender in it) the ratio is off by 2x.
    unpaired = unpaired_speedup(np.full(10, 10e-3), np.full(10, 2e-3))
    assert unpaired.estimate == pytest.approx(5.0)


def test_paired_speedup_uses_only_rounds_both_were_timed_in() -> None:
    baseline = {0: 1.0, 3: 1.0, 6: 1.0}
    contender = {r: 0.1 for r in range(10)}
    assert paired_speedup(baseline, contender).n == 3


# -- interleaving ----------------------------------------------------------------------------


def test_p_larger_is_the_exact_rank_test() -> None:
    # Three against three, all of the first larger: one ordering of C(6, 3) = 20 is at least as
    # extreme, so the exact one-sided p is 1/20.
    assert p_larger([1.3, 1.4, 1.5], [1.1, 1.15, 1.2]) == pytest.approx(1 / 20)
    # The other way round every ordering is at least as extreme.
    assert p_larger([1.1, 1.15, 1.2], [1.3, 1.4, 1.5]) == pytest.approx(1.0)
    # Six against six, interleaved (ranks 1..12 alternating): far from significant.
    assert p_larger([1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10, 12]) > 0.5
    # Too few to rank, or not finite.
    assert math.isnan(p_larger([1.2], [1.1, 1.0])) and math.isnan(p_larger([1.2, math.nan], [1.1, 1.0]))


def test_schedule_spreads_a_slow_contenders_rounds_evenly() -> None:
    plan = schedule([10, 3, 10])
    assert len(plan) == 10
    assert [r for r, members in enumerate(plan) if 1 in members] == [0, 3, 6]
    assert all({0, 2} <= set(members) for members in plan)


def test_round_counts_respect_budget_cap_and_minimum() -> None:
    fast = Contender(fn=lambda: None, loops=100, round_time=0.01)
    slow = Contender(fn=lambda: None, loops=1, round_time=1.3, min_rounds=3)  # the course shape's baseline
    assert round_counts([fast, slow], budget_s=2.0, max_rounds=10) == [10, 3]


def test_interleaved_rounds_alternate_in_a_fresh_random_order() -> None:
    clock = FakeClock()
    names = ["A", "B", "C"]
    contenders = [Contender(fn=clock.kernel(n, 1e-3), loops=2, round_time=2e-3) for n in names]
    orders = run_interleaved(contenders, schedule([12, 12, 12]), np.random.default_rng(0), clock=clock)
    # Every round times each contender once (its two loops back to back) before the next round starts.
    rounds = [clock.calls[i : i + 6] for i in range(0, len(clock.calls), 6)]
    assert len(rounds) == 12
    for order, calls in zip(orders, rounds, strict=True):
        assert calls == [names[i] for i in order for _ in range(2)]
    # The order changes from round to round: no contender always goes first.
    assert len({tuple(o) for o in orders}) > 3 and len({o[0] for o in orders}) == 3
    for contender in contenders:
        assert sorted(contender.samples) == list(range(12))
        assert all(s == pytest.approx(1e-3) for s in contender.samples.values())


def test_blocked_rounds_time_one_contender_after_the_other_with_a_pause() -> None:
    clock = FakeClock()
    pauses: list[float] = []
    contenders = [Contender(fn=clock.kernel(n, 1e-3), loops=1, round_time=1e-3) for n in "AB"]
    canary = Contender(fn=clock.kernel("canary", 1e-4), loops=1, round_time=1e-4)
    run_blocked(contenders, [3, 2], settle_s=0.25, warmup_s=0.0, canary=canary, clock=clock, sleep=pauses.append)
    # Each block starts with one untimed call at least (the pool's workers wake), then its timed rounds.
    assert clock.calls == ["A", "A", "A", "A", "canary", "B", "B", "B", "canary"]
    assert pauses == [0.25, 0.25] and sorted(canary.samples) == [0, 1]
    assert sorted(contenders[0].samples) == [0, 1, 2] and sorted(contenders[1].samples) == [0, 1]


def test_blocked_rounds_warm_up_for_a_given_time() -> None:
    clock = FakeClock()
    contenders = [Contender(fn=clock.kernel(n, 1e-3), loops=1, round_time=1e-3) for n in "AB"]
    # 3.5 ms of warm-up at 1 ms a call: four untimed calls, then the timed ones; none are timed.
    run_blocked(contenders, [2, 1], warmup_s=3.5e-3, clock=clock, sleep=lambda s: None)
    assert clock.calls == ["A"] * 6 + ["B"] * 5
    assert contenders[0].samples == {0: pytest.approx(1e-3), 1: pytest.approx(1e-3)}


# -- a slow stretch, flagged -----------------------------------------------------------------

GROUPS = [(m, 10, "float64", "C", 1) for m in (10, 20, 30, 40, 50, 60)]


def _simulate(
    slow_groups: dict[tuple[Any, ...], float], passes: dict[tuple[Any, ...], int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interleaved rounds of two_loop, fully_vectorized and the canary over GROUPS, with the fake clock
    running `factor` times slower during the groups named in slow_groups (their pass 0)."""
    clock = FakeClock()
    rng = np.random.default_rng(1)
    rounds: list[dict[str, Any]] = []
    canary_rows: list[dict[str, Any]] = []
    todo = [(g, 0) for g in GROUPS] + [(g, p) for g, n in (passes or {}).items() for p in range(1, n + 1)]
    for group, number in todo:
        m = group[0]
        clock.factor = slow_groups.get(group, 1.0) if number == 0 else 1.0
        timed = {
            "two_loop": Contender(fn=clock.kernel("two_loop", 100e-6 * m), loops=1, round_time=1e-3),
            "fully_vectorized": Contender(fn=clock.kernel("fully_vectorized", 1e-6 * m), loops=1, round_time=1e-3),
        }
        canary = Contender(fn=clock.kernel("canary", 50e-6), loops=1, round_time=5e-5)
        first = number * 10
        members = [*timed.values(), canary]
        run_interleaved(members, [[0, 1, 2]] * 10, rng, first_round=first, clock=clock)
        fields = dict(zip(("m", "n_x", "dtype", "layout", "threads"), group, strict=True))
        for name, contender in timed.items():
            for r, seconds in contender.samples.items():
                rounds.append(
                    {
                        "implementation": name,
                        **fields,
                        "pass": number,
                        "round": r,
                        "seconds": seconds,
                        "stamp_s": contender.stamps[r],
                    }
                )
        for r, seconds in canary.samples.items():
            canary_rows.append({**fields, "pass": number, "round": r, "seconds": seconds, "stamp_s": canary.stamps[r]})
    return pd.DataFrame(rounds, columns=list(ROUND_COLUMNS)), pd.DataFrame(canary_rows, columns=list(CANARY_COLUMNS))


def test_a_slow_stretch_is_flagged_and_its_speedups_still_cancel_it() -> None:
    rounds, canary = _simulate({GROUPS[2]: 1.8})
    result = estimate(rounds, canary)
    rows = result.rows.set_index(["implementation", "m"])
    assert rows.loc[("two_loop", 30), "unstable"] and rows.loc[("fully_vectorized", 30), "unstable"]
    assert not rows.drop(index=30, level="m")["unstable"].any()
    assert rows.loc[("two_loop", 30), "canary_ratio"] == pytest.approx(1.8)
    speed = result.speedups[result.speedups["baseline"] == "two_loop"].set_index("m")
    assert speed["speedup"].to_numpy() == pytest.approx(100.0)  # interleaving cancelled the slowdown
    assert speed.loc[30, "uncertain"] and not speed.drop(index=30)["uncertain"].any()
    summary = stability_summary(result, canary, remeasured=0)
    assert summary["disturbed_first_passes"] == 1 and summary["unstable_rows"] == 2
    assert summary["noisy"]  # 1 of 6 groups disturbed
    line = noisy_line(summary)
    assert line is not None and "\n" not in line and "1 of 6" in line


def test_a_stretch_that_starts_mid_group_is_flagged_by_the_canarys_spread() -> None:
    clock_rounds, canary = _simulate({})
    # Slow the second half of group 4's rounds only (the machine changed during the pass).
    late = (canary["m"] == 40) & (canary["round"] >= 5)
    canary.loc[late, "seconds"] *= 1.8
    rows = estimate(clock_rounds, canary).rows.set_index(["implementation", "m"])
    assert rows.loc[("two_loop", 40), "unstable"] and not rows.drop(index=40, level="m")["unstable"].any()


def test_a_quiet_re_measurement_replaces_a_disturbed_pass() -> None:
    slow = {GROUPS[2]: 1.8}
    rounds, canary = _simulate(slow)
    before = estimate(rounds, canary)
    order = remeasure_order(before)
    assert order == [GROUPS[2]]
    rounds, canary = _simulate(slow, passes={GROUPS[2]: 1})
    after = estimate(rounds, canary).rows.set_index(["implementation", "m"])
    assert not after["unstable"].any()
    row = ("two_loop", 30)
    assert after.loc[row, "passes"] == 2 and after.loc[row, "rounds"] == 10  # only the quiet pass counts
    assert after.loc[row, "median_s"] == pytest.approx(100e-6 * 30)


def test_a_quiet_machine_is_not_called_noisy() -> None:
    rounds, canary = _simulate({})
    result = estimate(rounds, canary)
    summary = stability_summary(result, canary, remeasured=0)
    assert not summary["noisy"] and noisy_line(summary) is None and summary["unstable_rows"] == 0


# -- suspects and what is re-measured first --------------------------------------------------


def _rows(
    times: dict[tuple[int, int], float], implementation: str = "numba_parallel", threads: int = 2
) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "implementation": implementation,
                "m": m,
                "n_x": n,
                "dtype": "float64",
                "layout": "C",
                "threads": threads,
                "median_s": t,
            }
            for (m, n), t in times.items()
        ]
    )


def test_a_row_far_slower_than_larger_cells_is_suspect() -> None:
    # The 32 ms numba_parallel rows a loaded run once measured among 45-500 µs neighbours.
    times = {(10, 10): 45e-6, (100, 10): 32e-3, (1000, 10): 60e-6, (100, 100): 90e-6, (1000, 100): 500e-6}
    found = suspects(_rows(times))
    assert ("numba_parallel", 100, 10, "float64", "C", 2) in found
    assert ("numba_parallel", 10, 10, "float64", "C", 2) not in found  # contradicts no other cell


def test_only_the_row_off_its_neighbours_is_an_outlier_and_it_is_marked_unstable() -> None:
    times = {(10, 10): 45e-6, (100, 10): 32e-3, (1000, 10): 60e-6, (100, 100): 90e-6, (1000, 100): 500e-6}
    assert outliers(_rows(times)) == {("numba_parallel", 100, 10, "float64", "C", 2)}
    # Through estimate(): rounds of a quiet machine (canary steady), one row 700x off its neighbours.
    rounds, canary = [], []
    for (m, n), t in times.items():
        group = {"m": m, "n_x": n, "dtype": "float64", "layout": "C", "threads": 1}
        for r in range(5):
            rounds.append({"implementation": "numba_loop", **group, "pass": 0, "round": r, "seconds": t, "stamp_s": r})
            canary.append({**group, "pass": 0, "round": r, "seconds": 1e-5, "stamp_s": r})
    rows = estimate(pd.DataFrame(rounds), pd.DataFrame(canary)).rows.set_index(["m", "n_x"])
    assert rows["unstable"].tolist() == [(m, n) == (100, 10) for m, n in rows.index]


def test_a_wide_interval_makes_a_speedup_uncertain() -> None:
    rounds, canary = _simulate({})
    # Scatter the baseline's rounds of one group by up to 3x: the median holds, the interval does not.
    scatter = (rounds["implementation"] == "two_loop") & (rounds["m"] == 40)
    rounds.loc[scatter, "seconds"] *= np.linspace(0.5, 1.5, int(scatter.sum()))
    speed = estimate(rounds, canary).speedups
    speed = speed[speed["baseline"] == "two_loop"].set_index("m")
    width = speed["ci_high"] / speed["ci_low"]
    assert width.loc[40] > 1.5 and speed.loc[40, "uncertain"]
    assert not speed.drop(index=40)["uncertain"].any()


def test_smooth_growth_is_not_suspect() -> None:
    times = {(m, n): 1e-6 + 1e-9 * m * n for m in (1, 10, 100, 1000) for n in (1, 10, 100)}
    assert suspects(_rows(times)) == set()


def test_uncertain_claim_cells_of_the_headline_come_first() -> None:
    rounds, canary = _simulate({GROUPS[1]: 1.8, GROUPS[4]: 1.8})
    result = estimate(rounds, canary)
    speed = result.speedups.copy()
    # Make group 5 straddle fully_vectorized's threshold (150x) and move group 2 out of the headline setting.
    speed.loc[(speed["m"] == 50) & (speed["baseline"] == "two_loop"), ["ci_low", "ci_high", "uncertain"]] = [
        120.0,
        180.0,
        True,
    ]
    rows = result.rows.copy()
    rows.loc[rows["m"] == 20, "layout"] = "F"
    speed.loc[speed["m"] == 20, "layout"] = "F"
    order = remeasure_order(dataclasses.replace(result, rows=rows, speedups=speed, contradictions={}))
    assert order[0] == GROUPS[4] and order[-1] == (20, 10, "float64", "F", 1)


def test_spread_groups_are_the_steady_goals_out_of_cache_in_float64_at_their_threads() -> None:
    steady = [name for name, impl in REGISTRY.items() if impl.goal is not None and impl.goal.steady]
    assert steady and all(REGISTRY[name].goal.all_threads for name in steady)  # type: ignore[union-attr]
    kernel, other = steady[0], REFERENCE

    def group(m: int, n_x: int, dtype: str, threads: int, *names: str) -> bench.measure.runner._Group:
        key = (m, n_x, dtype, "C", threads)
        tasks = [bench.measure.runner.Task(name, *key, 0, REGISTRY[name]) for name in names]
        return bench.measure.runner._Group(key, tasks)

    groups = [
        group(10_000, 10_000, "float64", 2, other, kernel),  # judged: 800 MB >= 2 threads' 80 MB
        group(1_000, 10_000, "float64", 2, other, kernel),  # 80 MB: just out of cache, judged
        group(1_000, 9_999, "float64", 2, other, kernel),  # a row short of it: in cache
        group(10_000, 10_000, "float64", 1, other, kernel),  # not the goal's threads
        group(10_000, 10_000, "float32", 2, other, kernel),  # shown, not judged
        group(20_000, 10_000, "float64", 2, other),  # no spread goal among its rows
        group(30_000, 10_000, "float64", 2, kernel),  # no reference to judge it against
    ]
    found = bench.measure.runner._spread_groups({g.key: g for g in groups}, {1: 50e6, 2: 80e6}, 2)
    assert found == [groups[0].key, groups[1].key]
    # The goal's threads are the run's most, not the most among the groups timed in this process.
    assert bench.measure.runner._spread_groups({groups[3].key: groups[3]}, {1: 50e6, 2: 80e6}, 2) == []
    assert bench.measure.runner._spread_groups({}, {2: 80e6}, 2) == []


# -- the runner ------------------------------------------------------------------------------


def test_the_course_shape_is_measured_whatever_the_cut_off_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A machine where every call is predicted over the cut-off: only the course shape's headline rows run.
    monkeypatch.setattr(bench.measure.runner, "COURSE_SHAPE", (8, 4))
    monkeypatch.setattr(bench.measure.runner, "predict_call_s", lambda *_, **__: 99.0)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    args = ["run", "--profile", "quick", "--m", "1,8", "--n-x", "1,4", "--no-lecture", "--threads", "1"]
    args += ["--implementations", "two_loop,feature_vectorized,fully_vectorized", "--out", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    frame = load_results(tmp_path)
    course = (frame["m"] == 8) & (frame["n_x"] == 4) & (frame["dtype"] == "float64") & (frame["layout"] == "C")
    assert set(frame.loc[course, "status"]) == {"ok"} and (frame.loc[course, "rounds"] >= 3).all()
    assert set(frame.loc[~course, "status"]) == {"skipped_budget"}
    speed = load_speedups(tmp_path)
    assert speed is not None
    claims = speed[(speed["baseline"] == "two_loop") & speed["threshold"].notna()]
    assert set(claims["implementation"]) == {"feature_vectorized", "fully_vectorized"}


def test_a_run_writes_its_rounds_and_speedups_with_intervals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    args = ["run", "--profile", "quick", "--m", "1,30", "--n-x", "1,20", "--no-lecture", "--threads", "1,2"]
    args += ["--implementations", "two_loop,fully_vectorized,numba_parallel", "--out", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    frame = load_results(tmp_path)
    ok = frame[frame["status"] == "ok"]
    speed = load_speedups(tmp_path)
    assert speed is not None and set(SPEEDUP_COLUMNS) <= set(speed.columns)
    assert ((speed["ci_low"] <= speed["speedup"]) & (speed["speedup"] <= speed["ci_high"])).all()
    # One thread: paired rounds; two threads: blocks one after the other, unpaired.
    assert set(speed.loc[speed["threads"] == 1, "paired"]) == {True}
    assert set(speed.loc[speed["threads"] == 2, "paired"]) == {False}
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    per_row = rounds.groupby(["implementation", "m", "n_x", "layout", "threads"]).size()
    assert (
        per_row.to_numpy()
        >= ok.set_index(["implementation", "m", "n_x", "layout", "threads"])["rounds"].reindex(per_row.index).to_numpy()
    ).all()
    # The medians in results.csv are those of the counted rounds: derived again from the CSVs beside it.
    again = estimate(rounds, pd.read_csv(tmp_path / "canary.csv")).rows
    merged = ok.merge(again, on=["implementation", "m", "n_x", "dtype", "layout", "threads"], suffixes=("", "_again"))
    assert len(merged) == len(ok) and np.allclose(merged["median_s"], merged["median_s_again"])
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert {"noisy", "drift", "canary_quiet_s", "unstable_rows"} <= set(meta["stability"])
    # The roof is timed in the rounds of every group whose X is out of cache (from 4 KiB here), and only there.
    roofs = pd.read_csv(tmp_path / "roofs.csv")
    group = ["m", "n_x", "dtype", "layout", "threads"]
    itemsize = rounds["dtype"].map({"float64": 8, "float32": 4})
    big = rounds[rounds["m"] * rounds["n_x"] * itemsize >= 4096]
    assert not big.empty and set(map(tuple, roofs[group].to_numpy())) == set(map(tuple, big[group].to_numpy()))
    assert set(roofs["threads"]) == {1, 2} and (roofs["seconds"] > 0).all()


def test_on_a_noisy_machine_unpaired_speedups_are_uncertain() -> None:
    # Rows on several threads are timed one block after the other: nothing cancels a slow stretch.
    used = pd.DataFrame(
        [
            {"implementation": name, "round": r, "seconds": t}
            for name, t in (("fully_vectorized", 1e-3), ("numba_parallel", 5e-4))
            for r in range(10)
        ]
    )
    group = (1000, 100, "float64", "F", 2)
    quiet = group_speedups(group, used, {}, paired=False, noisy=False)
    noisy = group_speedups(group, used, {}, paired=False, noisy=True)
    assert [r["uncertain"] for r in quiet] == [False] and [r["uncertain"] for r in noisy] == [True]
    assert noisy[0]["speedup"] == pytest.approx(2.0)


def test_estimate_derives_a_run_again_without_timing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    args = ["run", "--profile", "quick", "--m", "1,30", "--n-x", "1,20", "--no-lecture", "--threads", "1"]
    assert main([*args, "--implementations", "two_loop,fully_vectorized", "--out", str(tmp_path)]) == 0
    before = load_results(tmp_path)
    rounds_before = (tmp_path / "rounds.csv").read_bytes()
    assert main(["estimate", "--results", str(tmp_path)]) == 0
    after = load_results(tmp_path)
    pd.testing.assert_frame_equal(before, after)  # the same rules on the same rounds: the same table
    assert (tmp_path / "rounds.csv").read_bytes() == rounds_before
    (tmp_path / "rounds.csv").unlink()
    capsys.readouterr()
    assert main(["estimate", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "rounds.csv" in err


def test_a_call_that_raises_during_its_rounds_fails_that_implementation_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.cli
    import bench.measure.user
    from implementations import REGISTRY, Implementation

    calls = {"n": 0}
    inner = REGISTRY["fully_vectorized"].propagate

    def flaky(w: Any, b: float, X: Any, Y: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:  # right in its check and warm-up, then it raises mid-rounds
            raise RuntimeError("out of luck")
        return inner(w, b, X, Y)

    registry = {**REGISTRY, "flaky": Implementation(name="flaky", propagate=flaky, summary="raises after a while")}
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    args = ["run", "--profile", "quick", "--m", "1,30", "--n-x", "1", "--no-lecture", "--threads", "1"]
    code = main([*args, "--implementations", "two_loop,flaky", "--layouts", "C", "--out", str(tmp_path)])
    assert code == 1, capsys.readouterr().err
    frame = load_results(tmp_path)
    flaky_rows = frame[frame["implementation"] == "flaky"]
    assert set(flaky_rows["status"]) == {"failed_check"} and len(flaky_rows) == 2
    assert flaky_rows["reason"].str.contains("out of luck").all()
    assert set(frame.loc[frame["implementation"] == "two_loop", "status"]) == {"ok"}
    assert (tmp_path / "rounds.csv").is_file() and (tmp_path / "speedups.csv").is_file()


def test_the_spread_goals_groups_get_passes_of_their_own_after_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Out of cache from 4 KiB here: 30 x 20 (4,800 bytes), not 30 x 1. No budget for groups
    # in doubt, so that every extra pass is the spread goal's.
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    quick = dataclasses.replace(PROFILES["quick"], remeasure_s=0.0, spread_s=60.0, locate_rounds=0)
    monkeypatch.setitem(PROFILES, "quick", quick)
    args = ["run", "--profile", "quick", "--m", "30", "--n-x", "1,20", "--no-lecture", "--threads", "1,2"]
    args += ["--implementations", f"{REFERENCE},numba_parallel", "--out", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    passes = rounds.groupby(["m", "n_x", "layout", "threads"])["pass"].agg(lambda p: sorted(set(p)))
    judged = {(30, 20, "C", 2), (30, 20, "F", 2)}
    assert {key for key, p in passes.items() if p == [0, 1, 2]} == judged
    assert all(p == [0] for key, p in passes.items() if key not in judged)
    frame = load_results(tmp_path)
    row = frame[(frame["m"] == 30) & (frame["n_x"] == 20) & (frame["threads"] == 2)]
    assert len(row) == 4 and set(row["passes"]) == {3}  # both implementations, both layouts
    assert json.loads((tmp_path / "metadata.json").read_text())["stability"]["remeasured_passes"] == 4
    # A resumed run (as a locating round is) times nothing more here, and keeps the count.
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "metadata.json").read_text())["stability"]["remeasured_passes"] == 4
    # Where the groups in doubt were those same groups, their second pass came from that budget and
    # the spread's budget still gives them their third.
    again = tmp_path / "again"
    judged_key = [(30, 20, "float64", layout, 2) for layout in ("C", "F")]
    monkeypatch.setitem(PROFILES, "quick", dataclasses.replace(quick, remeasure_s=60.0))
    asked: list[int] = []

    def in_doubt(*_: object) -> list[tuple[Any, ...]]:  # in doubt for one more pass only
        asked.append(1)
        return list(judged_key) if len(asked) == 1 else []

    monkeypatch.setattr(bench.measure.runner, "remeasure_order", in_doubt)
    args[args.index("--out") + 1] = str(again)
    assert main(args) == 0, capsys.readouterr().err
    rounds = pd.read_csv(again / "rounds.csv")
    passes = rounds.groupby(["m", "n_x", "layout", "threads"])["pass"].agg(lambda p: sorted(set(p)))
    assert {key for key, p in passes.items() if p == [0, 1, 2]} == judged
