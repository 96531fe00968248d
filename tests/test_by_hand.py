"""`bench kernels`: each kernel's goal timed by hand at one shape; ratios within a repetition, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.cli import main
from bench.measure.by_hand import COLUMNS, Settings, _row
from bench.measure.timing import available_cores
from bench.present.by_hand_report import kernels_text
from implementations import REFERENCE, REGISTRY, with_goals


def test_the_speedup_is_taken_within_each_repetition_and_the_roof_is_the_faster_stream() -> None:
    impl = REGISTRY["numba_parallel"]
    ms = 1e-3
    blocks = {
        # Repetition 1: kernel 1 ms, reference 2 ms (2x); repetition 2, a slow stretch: 4 ms and 4 ms (1x).
        impl.name: [[1 * ms, 1 * ms, 1.5 * ms], [4 * ms, 4 * ms, 4 * ms]],
        REFERENCE: [[2 * ms, 2 * ms, 2 * ms], [4 * ms, 4 * ms, 4.4 * ms]],
        "read": [[2 * ms, 2 * ms, 2 * ms], [2 * ms, 2 * ms, 2 * ms]],
    }
    row = _row("F", impl, 2, Settings(m=1, n_x=1, reps=2, calls=3), blocks, nbytes=10**7)
    assert row["speedup"] == pytest.approx(1.5) and (row["speedup_min"], row["speedup_max"]) == pytest.approx((1, 2))
    assert row["kernel_spread"] == pytest.approx(1.25) and row["reference_spread"] == pytest.approx(1.05)
    # The read streams 10 MB in 2 ms (5 GB/s); the reference reads X twice in 3 ms (6.7 GB/s): the roof is the latter.
    assert row["roof_gbps"] == pytest.approx(2 * 10**7 / 3e-3 / 1e9)
    assert row["kernel_gbps"] == pytest.approx(10**7 / 2.5e-3 / 1e9)
    assert row["roof_share"] == pytest.approx(row["kernel_gbps"] / row["roof_gbps"])
    assert row["target_speedup"] == impl.goal.speedup_in("F") and row["target_roof_share"] == 0.9  # type: ignore[union-attr]
    # Each goal decided with the row: 1.5x < 1.75x, 60% < 90%, and a spread of 1.25 wider than 1.05.
    assert (row["speedup_met"], row["roof_share_met"], row["steady_met"]) == (False, False, False)
    # Two repetitions each, the kernel's spreads (1.5, 1) against 1 and 1.1: the rank test cannot tell.
    assert row["steady_p_wider"] > 0.05
    fused = _row(
        "C",
        REGISTRY["numba_fused"],
        1,
        Settings(m=1, n_x=1, reps=2, calls=3),
        {"numba_fused": blocks[impl.name], REFERENCE: blocks[REFERENCE], "read": blocks["read"]},
        nbytes=10**7,
    )
    assert (fused["speedup_met"], fused["roof_share_met"], fused["steady_met"]) == (True, None, None)  # 1.5 >= 1.15
    assert (row["read_gbps_min"], row["read_gbps_max"], row["memory_steady"]) == pytest.approx((5, 5, True))


def test_a_read_that_changed_speed_between_repetitions_is_flagged() -> None:
    impl = REGISTRY["numba_parallel"]
    ms = 1e-3
    blocks = {
        impl.name: [[1 * ms] * 3, [1 * ms] * 3],
        REFERENCE: [[2 * ms] * 3, [2 * ms] * 3],
        "read": [[2 * ms] * 3, [1.6 * ms] * 3],  # 5 GB/s, then 6.25: 1.25x, past STEADY_MEMORY
    }
    row = _row("F", impl, 2, Settings(m=1, n_x=1, reps=2, calls=3), blocks, nbytes=10**7)
    assert (row["read_gbps_min"], row["read_gbps_max"]) == pytest.approx((5, 6.25)) and row["memory_steady"] is False
    text = kernels_text(pd.DataFrame([row], columns=COLUMNS), {}, 1, 1)
    assert "the one-pass read ran at 5.0 to 6.2 GB/s over the repetitions (1.25x)" in text
    blocks["read"] = [[2 * ms] * 3, [1.8 * ms] * 3]  # 1.11x: steady enough, no flag
    steady = _row("F", impl, 2, Settings(m=1, n_x=1, reps=2, calls=3), blocks, nbytes=10**7)
    assert steady["memory_steady"] is True
    assert "changed speed" not in kernels_text(pd.DataFrame([steady], columns=COLUMNS), {}, 1, 1)


def test_the_command_times_every_kernel_with_a_goal_and_writes_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "kernels.csv"
    args = ["kernels", "--m", "300", "--n-x", "40", "--reps", "2", "--calls", "3", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    names = [impl.name for impl in with_goals()]
    assert set(names) == {"numba_fused", "numba_parallel"}
    assert sorted(zip(table["layout"], table["kernel"], strict=True)) == sorted((lay, n) for lay in "FC" for n in names)
    for _, r in table.iterrows():
        goal = REGISTRY[r["kernel"]].goal
        assert goal is not None
        assert r["threads"] == (available_cores() if goal.all_threads else 1)
        assert r["speedup_min"] <= r["speedup"] <= r["speedup_max"] and r["kernel_ms"] > 0 and r["roof_gbps"] > 0
        assert r["kernel_spread"] >= 1 and r["reference_spread"] >= 1
        assert f"`{r['kernel']}`, {r['threads']}" in text
    assert "n_x = 40, m = 300" in text and ("met" in text or "missed" in text)
    # A spread is judged only for the kernels whose goal asks for it (steady).
    judged = {line.split("`")[1] for line in text.splitlines() if line.startswith("- ") and "slowest / fastest" in line}
    assert judged == {n for n in names if REGISTRY[n].goal.steady} == {"numba_parallel"}  # type: ignore[union-attr]


def test_ctrl_c_keeps_the_kernels_already_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.measure import by_hand

    calls = []
    block = by_hand._block

    def interrupt_the_second_kernel(fn: Any, count: int) -> list[float]:
        calls.append(fn)
        if len(calls) > 3:  # one repetition of three contenders per kernel
            raise KeyboardInterrupt
        return block(fn, count)

    monkeypatch.setattr(by_hand, "_block", interrupt_the_second_kernel)
    monkeypatch.setattr(by_hand, "SETTLE_S", 0.0)
    out = tmp_path / "k.csv"
    args = ["kernels", "--m", "64", "--n-x", "8", "--reps", "1", "--calls", "2", "--layouts", "F", "--out", str(out)]
    assert main(args) == 130
    captured = capsys.readouterr()
    assert "interrupted: 1 of 2 kernels timed" in captured.err and "`numba_fused`, 1" in captured.out
    assert pd.read_csv(out)["kernel"].tolist() == ["numba_fused"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calls", "1"], "--calls must be 2 or more"),
        (["--layouts", "X"], "unknown layout 'X'"),
        (["--m", "0"], "sizes must be positive"),
        (["--reps", "2,3"], "one positive integer"),
        (["--m", str(2**36), "--n-x", str(2**20)], "GiB of memory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["kernels", *args])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unwritable_out_is_one_line_before_anything_is_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    def no_timing(*_: object) -> None:
        raise AssertionError("timed before the output path was checked")

    monkeypatch.setattr("bench.measure.by_hand.time_kernels", no_timing)
    assert main(["kernels", "--m", "8", "--n-x", "4", "--out", str(blocker / "k.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert blocker.read_text() == "x"
