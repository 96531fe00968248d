"""Beyond the note's steadiness goal: a kernel's slowest / fastest round against the reference's, from rounds.csv."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.analyse.beyond import beyond
from bench.base.hierarchy import Hierarchy, Level, roof_setters
from bench.base.results import COLUMNS
from bench.present.beyond import beyond_section
from implementations import REFERENCE, REGISTRY, Goal, Implementation, registry

LLC = 1 << 20  # a machine whose last-level cache is 1 MiB: out of cache from 4 MiB of X
META = {"last_level_cache_bytes": LLC}
CELLS = ((1_000, 1_000), (2_000, 1_000), (4_000, 1_000))  # 8, 16 and 32 MB of X


@pytest.fixture(autouse=True)
def steady_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Implementation(
        name="steady_kernel",
        propagate=REGISTRY[REFERENCE].propagate,
        summary="A kernel that exists only in this test.",
        threading="numba",
        goal=Goal(all_threads=True, steady=True),
    )
    monkeypatch.setitem(registry._BY_NAME, kernel.name, kernel)


def _frame() -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for m, n_x in CELLS:
        for name in (REFERENCE, "steady_kernel"):
            row: dict[str, Any] = dict.fromkeys(COLUMNS)
            row |= {"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 2}
            row |= {"status": "ok", "median_s": 1e-3, "iqr_s": 1e-5, "min_s": 1e-3, "rounds": 8}
            rows.append(row | {"loops": 1, "bytes_x": m * n_x * 8, "bw_fraction": 0.5})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _rounds(kernel_spread: float, reference_spread: float, count: int = 8, drift: float = 1.0) -> pd.DataFrame:
    """Rounds from 1 ms up to spread x 1 ms for each cell, evenly, for both implementations.

    With drift, a second pass of the same rounds, all `drift` times slower (the machine slowed down).
    """
    rows = []
    for m, n_x in CELLS:
        for name, widest in ((REFERENCE, reference_spread), ("steady_kernel", kernel_spread)):
            for pass_, level in enumerate((1.0, drift) if drift != 1.0 else (1.0,)):
                for k, seconds in enumerate(np.linspace(1e-3, widest * 1e-3, count) * level):
                    rows.append({"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": "C",
                                 "threads": 2, "pass": pass_, "round": k, "seconds": seconds})  # fmt: skip
    return pd.DataFrame(rows)


def _check(rounds: pd.DataFrame | None) -> pd.Series:
    found = beyond(_frame(), META, rounds)
    assert found is not None
    checks = found.checks[(found.checks["implementation"] == "steady_kernel") & (found.checks["what"] == "spread")]
    assert len(checks) == 1
    return checks.iloc[0]


def test_a_kernel_steadier_than_the_reference_meets_its_goal() -> None:
    check = _check(_rounds(kernel_spread=1.1, reference_spread=1.4))
    assert check["value"] == pytest.approx(1.1) and check["target"] == pytest.approx(1.4)
    assert bool(check["met"]) is True


def test_a_kernel_with_a_wider_spread_misses_it() -> None:
    check = _check(_rounds(kernel_spread=1.8, reference_spread=1.2))
    assert check["value"] == pytest.approx(1.8) and bool(check["met"]) is False
    # One pass over each of 3 cells: even 3 wider of 3 leaves the rank test at p = 1/20, not below 0.05.
    assert check["samples"] == 3 and check["p_wider"] == pytest.approx(1 / 20)
    assert "not distinguishable" in _spread_line(_rounds(kernel_spread=1.8, reference_spread=1.2))
    # Two passes over each cell: 6 wider of 6, p = 1/924, beyond the passes' own variation.
    wide = _rounds(kernel_spread=1.8, reference_spread=1.2, drift=1.1)
    assert _check(wide)["p_wider"] == pytest.approx(1 / 924)
    assert "wider beyond the passes' own variation" in _spread_line(wide)


def _spread_line(rounds: pd.DataFrame) -> str:
    found = beyond(_frame(), META, rounds)
    assert found is not None
    return next(line for line in beyond_section(found) if "slowest / fastest round of a pass" in line)


def test_the_spread_is_within_a_pass_not_the_drift_between_passes() -> None:
    check = _check(_rounds(kernel_spread=1.1, reference_spread=1.3, drift=1.6))
    assert check["value"] == pytest.approx(1.1) and bool(check["met"]) is True


def test_a_cell_is_judged_out_of_cache_against_the_cache_its_thread_count_measured() -> None:
    # 1 MiB of cache on 1 thread, 8 MiB on 2: of the 8, 16 and 32 MB cells on 2 threads only the
    # last is out of cache (past 16 MiB), and so is only its roof; on 1 thread all three are.
    one = Hierarchy((Level(100.0, 1 << 20), Level(20.0, None)), 4 << 20)
    two = Hierarchy((Level(200.0, 8 << 20), Level(30.0, None)), 32 << 20)
    meta = {"memory": {"threads": {"1": one.to_json(), "2": two.to_json()}}}
    roofs = pd.DataFrame(
        [{"m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 2, "pass": 0, "round": k, "seconds": 1e-3}
         for m, n_x in CELLS for k in range(3)]
    )  # fmt: skip
    frame = _frame()
    found = beyond(frame, meta, _rounds(1.1, 1.2), roofs)
    assert found is not None
    spread = found.table[(found.table["what"] == "spread") & (found.table["scope"] == "out of cache")]
    assert spread["cells"].tolist() == [1]
    assert found.cell_roofs[["m", "n_x"]].values.tolist() == [[4_000, 1_000]]
    assert "X of at least 16 MiB:" in "\n".join(beyond_section(found))
    # A kernel judged on 1 thread beside it: all three cells.
    single = Implementation(
        name="single_kernel",
        propagate=REGISTRY[REFERENCE].propagate,
        summary="A kernel that exists only in this test.",
        threading="none",
        goal=Goal(),
    )
    one_thread = frame.assign(threads=1)
    both = pd.concat([frame, one_thread, one_thread.assign(implementation="single_kernel")], ignore_index=True)
    both = both.drop_duplicates(["implementation", "m", "n_x", "threads"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._BY_NAME, single.name, single)
        found = beyond(both, meta, _rounds(1.1, 1.2))
        assert found is not None
        text = "\n".join(beyond_section(found))
    speedups = found.table[(found.table["what"] == "speedup") & (found.table["scope"] == "out of cache")]
    assert dict(zip(speedups["implementation"], speedups["cells"], strict=True)) == {
        "steady_kernel": 1,
        "single_kernel": 3,
    }
    assert "X of at least 2 MiB on 1 thread and 16 MiB on 2 threads" in text


def _roofed_kernel(steady: bool) -> Implementation:
    """A kernel judged against 90% of its roof in C order on all threads (and for its spread, if steady)."""
    return Implementation(
        name="roofed_kernel",
        propagate=REGISTRY[REFERENCE].propagate,
        summary="A kernel that exists only in this test.",
        threading="numba",
        goal=Goal(all_threads=True, roof_share=(("C", 0.9),), steady=steady),
    )


def test_each_cell_s_share_is_against_the_roof_timed_in_its_own_rounds() -> None:
    roofed = _roofed_kernel(steady=False)
    frame = _frame()
    kernel = frame[frame["implementation"] == "steady_kernel"].assign(implementation="roofed_kernel")
    frame = pd.concat([frame, kernel], ignore_index=True)
    frame["gbps"] = frame["bytes_x"] / frame["median_s"] / 1e9  # 8, 16 and 32 GB/s
    # The reference's two reads of X: 2 GB/s in the first cell, 32 GB/s in the second.
    frame.loc[frame["implementation"] == REFERENCE, "median_s"] = [8e-3, 1e-3, 1e-3]
    meta = {**META, "memory": {"roof": {"C": {"2": 40.0}}}}
    # Each cell's read: 2 ms for 8 MB (4 GB/s), then 1 ms for 16 MB (16 GB/s); the third cell has none.
    roofs = pd.DataFrame(
        [{"m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 2, "pass": 0, "round": k, "seconds": s}
         for (m, n_x), s in zip(CELLS[:2], (2e-3, 1e-3), strict=True) for k in range(3)]
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._BY_NAME, roofed.name, roofed)
        found = beyond(frame, meta, None, roofs)
        assert found is not None
        text = "\n".join(beyond_section(found))
    # A cell's roof is its read or the reference's streaming rate, whichever is higher.
    roofs = found.cell_roofs
    assert roofs["read_gbps"].tolist() == pytest.approx([4.0, 16.0])
    assert roofs["best_other"].tolist() == [REFERENCE, REFERENCE]
    assert roofs["roof_gbps"].tolist() == pytest.approx([4.0, 32.0])
    share = found.table[(found.table["implementation"] == "roofed_kernel") & (found.table["what"] == "roof share")]
    # 8/4 = 2.0 and 16/32 = 0.5 against their own roofs; 32/40 = 0.8 against the sweep's, where no read was timed.
    assert share.iloc[0][["min", "median", "max"]].tolist() == pytest.approx([0.5, 0.8, 2.0])
    check = found.checks[(found.checks["implementation"] == "roofed_kernel") & (found.checks["what"] == "roof share")]
    assert check.iloc[0]["value"] == pytest.approx(0.8) and bool(check.iloc[0]["met"]) is False
    assert "features-major (C) on 2 thread(s) 18.0 GB/s (4.0 to 32.0 over 2 cell(s)" in text
    assert f"set by the read in 1, `{REFERENCE}` in 1" in text and "`roofs.csv`" in text
    assert "no roof of its own is against it" in text  # the third cell's share, against the sweep's 40 GB/s
    # Each cell's share is written out (beyond_shares.csv) and listed, lowest roof first, with where its roof came from.
    shares = found.cell_shares[found.cell_shares["implementation"] == "roofed_kernel"].sort_values("m")
    assert shares["roof_gbps"].tolist() == pytest.approx([4.0, 32.0, 40.0])
    assert shares["share"].tolist() == pytest.approx([2.0, 0.5, 0.8])
    assert shares["roof"].tolist() == ["cell", "cell", "sweep"]
    assert (
        "`roofed_kernel` at 2 thread(s): 200% of 4.0 GB/s at m = 1,000, n_x = 1,000; 50% of 32.0 GB/s at m = 2,000, "
        "n_x = 1,000; 80% of 40.0 GB/s at m = 4,000, n_x = 1,000 (the sweep's read)."
    ) in text


def test_without_any_read_of_x_the_share_is_of_main_memory_s_bandwidth_and_no_cell_is_listed() -> None:
    # A run with no memory sweep and no read timed in the cells: each cell's share is its bw_fraction
    # (0.25, 0.5, 0.75 here), and the per-cell table, which lists only measured roofs, stays empty.
    roofed = _roofed_kernel(steady=False)
    frame = _frame()
    kernel = frame[frame["implementation"] == "steady_kernel"].assign(implementation="roofed_kernel")
    kernel["bw_fraction"] = [0.25, 0.5, 0.75]
    frame = pd.concat([frame, kernel], ignore_index=True)
    frame["gbps"] = frame["bytes_x"] / frame["median_s"] / 1e9
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._BY_NAME, roofed.name, roofed)
        found = beyond(frame, META, None, None)
        assert found is not None
        text = "\n".join(beyond_section(found))
    share = found.table[(found.table["implementation"] == "roofed_kernel") & (found.table["what"] == "roof share")]
    assert share.iloc[0][["min", "median", "max"]].tolist() == pytest.approx([0.25, 0.5, 0.75])
    assert found.cell_shares.empty and "beyond_shares.csv" not in text


def test_cells_with_too_few_rounds_and_runs_without_rounds_are_not_measured() -> None:
    assert _check(_rounds(1.1, 1.4, count=3))["met"] is None
    assert _check(None)["met"] is None


def test_only_implementations_without_a_roof_goal_and_with_a_known_read_count_can_set_the_roof() -> None:
    # The report (beyond) and `make kernels` (by_hand) both take the roof from this one rule.
    setters = roof_setters()
    assert setters[REFERENCE] == 2  # Z = w.T X, then dw = X dZ.T: two reads of X
    for name, impl in REGISTRY.items():
        judged_against_a_roof = impl.goal is not None and bool(impl.goal.roof_share)
        assert (name in setters) == (impl.reads_of_x is not None and not judged_against_a_roof), name
    assert "numba_parallel" not in setters  # its own roof would otherwise be its own speed


def test_float32_cells_out_of_cache_are_shown_with_their_own_roofs_and_judged_by_no_goal() -> None:
    roofed = _roofed_kernel(steady=True)
    wide = _frame()
    wide = pd.concat([wide, wide[wide["implementation"] == "steady_kernel"].assign(implementation="roofed_kernel")])
    # The same cells in float32: 4, 8 and 16 MB of X, the last two out of cache (from 4 MiB), where
    # the kernels take twice the reference's time.
    narrow = wide.assign(dtype="float32", bytes_x=wide["bytes_x"] // 2)
    narrow.loc[narrow["implementation"] != REFERENCE, "median_s"] = 2e-3
    frame = pd.concat([wide, narrow], ignore_index=True)
    frame["gbps"] = frame["bytes_x"] / frame["median_s"] / 1e9
    # The read of each float32 cell takes 0.5 ms: 8, 16 and 32 GB/s of its 4-byte elements; the
    # reference's two reads in 1 ms are as fast.
    roofs = pd.DataFrame(
        [{"m": m, "n_x": n_x, "dtype": "float32", "layout": "C", "threads": 2, "pass": 0, "round": k, "seconds": 5e-4}
         for m, n_x in CELLS for k in range(3)]
    )  # fmt: skip
    rounds = pd.concat([_rounds(1.1, 1.2), _rounds(3.0, 1.2).assign(dtype="float32")], ignore_index=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._BY_NAME, roofed.name, roofed)
        found = beyond(frame, META, rounds, roofs)
        assert found is not None
        text = "\n".join(beyond_section(found))
    assert found.unjudged_dtypes == ("float32",)
    assert found.cell_roofs["dtype"].tolist() == ["float32"] * 2
    assert found.cell_roofs["read_gbps"].tolist() == pytest.approx([16.0, 32.0])
    scope = found.table[(found.table["scope"] == "out of cache, float32")]
    speed = scope[(scope["implementation"] == "roofed_kernel") & (scope["what"] == "speedup")]
    assert speed.iloc[0][["cells", "median"]].tolist() == [2, pytest.approx(0.5)]
    share = scope[(scope["implementation"] == "roofed_kernel") & (scope["what"] == "roof share")]
    assert share.iloc[0]["median"] == pytest.approx(0.25)  # 4 GB/s of X against its own 16 GB/s read
    steady = scope[(scope["implementation"] == "steady_kernel") & (scope["what"] == "spread")]
    assert steady.iloc[0]["median"] == pytest.approx(3.0)
    # The goals are float64's: every check is on the float64 cells, none on the float32 ones.
    assert set(found.checks["scope"]) == {"out of cache"}
    checks = found.checks
    spread_check = checks[(checks["what"] == "spread") & (checks["implementation"] == "steady_kernel")]
    assert spread_check.iloc[0]["value"] == pytest.approx(1.1)
    assert '(the rows "out of cache, float32" give the same figures for those cells, with no goal checked)' in text
    assert "features-major (C) on 2 thread(s), float32 24.0 GB/s (16.0 to 32.0 over 2 cell(s)" in text


def test_the_plans_a_kernels_set_ups_kept_are_counted_over_the_cells() -> None:
    frame = _frame()
    kernel = frame["implementation"] == "steady_kernel"
    frame.loc[kernel, "plan"] = ["blocks", "rows", "blocks+rows"]
    found = beyond(frame, META, _rounds(1.1, 1.2))
    assert found is not None
    plans = found.table[(found.table["what"] == "plans") & (found.table["scope"] == "out of cache")]
    assert plans[["implementation", "cells", "plans"]].values.tolist() == [
        ["steady_kernel", 3, "blocks 1, blocks+rows 1, rows 1"]
    ]
    text = "\n".join(beyond_section(found))
    assert "steady_kernel, plans kept (cells)" in text and "nan" not in text
    # No row where no set-up timed plans: the reference here, and every kernel of a run made before plans.
    assert found.table[(found.table["what"] == "plans") & (found.table["implementation"] == REFERENCE)].empty
    before = beyond(_frame().drop(columns=["plan"]), META, _rounds(1.1, 1.2))
    assert before is not None and (before.table["what"] != "plans").all()


def test_a_spread_check_shows_the_digits_that_tell_the_two_apart() -> None:
    from bench.present.beyond import _spread_text

    row = pd.Series({"value": 1.15787, "target": 1.15782, "met": False, "p_wider": 0.67, "samples": 2.0})
    assert "**missed** (1.1579 > 1.1578)" in _spread_text(row, "x")
    assert "met (1.05 <= 1.10)" in _spread_text(pd.Series({**row, "value": 1.05, "target": 1.1, "met": True}), "x")
    from bench.present.beyond import _check_text

    share = {"implementation": "k", "threads": 2, "layout": "F", "scope": "out of cache", "what": "roof share"}
    near = _check_text(pd.Series({**share, "value": 0.8996, "target": 0.9, "met": False}))
    assert "(fraction 0.8996 < 0.9)" in near  # not "0.90 < 0.9"
    assert "(fraction 0.93 >= 0.9)" in _check_text(pd.Series({**share, "value": 0.93, "target": 0.9, "met": True}))
