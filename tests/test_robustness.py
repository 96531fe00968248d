"""The robustness study's bookkeeping and its report section, on fake timings and synthetic tables."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analyse.analysis import Analysis, analyse
from bench.analyse.robustness import IMPACTS_CSV, Impact
from bench.base.constants import KEEP_MAPPED_ENV
from bench.base.errors import BenchError
from bench.base.results import COLUMNS as RESULT_COLUMNS
from bench.cli import main
from bench.measure.robustness import (
    COLUMNS,
    EFFECTS,
    ROBUSTNESS_CSV,
    Comparison,
    StudySettings,
    Variant,
    default_plan,
    load_robustness,
    measure_comparison,
    run_study,
    to_csv,
)
from bench.measure.worker import WorkerRequest, WorkerResult
from bench.present.report import build_report
from tests.helpers import has_row

SETTINGS = StudySettings(seed=1, budget_s=0.02, round_s=0.001, max_rounds=3)
KEPT = dict(KEEP_MAPPED_ENV)


class FakeTimer:
    """Seconds per call from a table keyed by (implementation, m, n_x, kept mapped or placed on a line?); a queue
    per key for spreads."""

    def __init__(self, times: Mapping[tuple[str, int, int, bool], float | list[float]]) -> None:
        self.times = {k: list(v) if isinstance(v, list) else v for k, v in times.items()}
        self.calls: list[tuple[str, int, int, bool]] = []
        self.requests: list[WorkerRequest] = []

    def __call__(self, request: WorkerRequest, env: Mapping[str, str]) -> WorkerResult:
        key = (request.cell.implementation, request.cell.m, request.cell.n_x, dict(env) == KEPT)
        self.calls.append(key)
        self.requests.append(request)
        return self._result(key, request.x_offset, request.paired_offset)

    def _result(self, key: tuple[str, int, int, bool], offset: int | None, paired: int | None) -> WorkerResult:
        # Placed on a line (x_offset 0): the time under the key with the aligned flag in place of the kept one.
        placed = (*key[:3], True) if offset == 0 else key
        value = self.times.get(placed, 1e-3)
        median = value.pop(0) if isinstance(value, list) else value
        where = 16 if offset is None else offset  # the grid's placement
        second = None if paired is None else self._result(key, paired, None)
        return WorkerResult(median, median / 10, median * 0.9, 5, 10, None, (0,), pid=1, x_offset=where, paired=second)


def _ab(effect: str, a: Variant, b: Variant, processes: int = 1, per_element: bool = False) -> Comparison:
    return Comparison(effect, a, b, processes, per_element)


def test_allocator_factor_is_the_ratio_of_medians_over_processes_run_abba() -> None:
    comparison = _ab(
        "allocator",
        Variant("malloc_default", "fully_vectorized", 30_000, 8),
        Variant("malloc_kept_mapped", "fully_vectorized", 30_000, 8, KEEP_MAPPED_ENV),
        processes=2,
    )
    timer = FakeTimer(
        {("fully_vectorized", 30_000, 8, False): [1.0e-3, 0.8e-3], ("fully_vectorized", 30_000, 8, True): 0.45e-3}
    )
    row = measure_comparison(comparison, SETTINGS, timer)
    # a b b a: the second process pair runs in reverse, so drift during the study cancels.
    assert [kept for *_, kept in timer.calls] == [False, True, True, False]
    assert row["time_a_s"] == pytest.approx(0.9e-3) and row["time_b_s"] == pytest.approx(0.45e-3)
    assert row["factor"] == pytest.approx(2.0) and row["basis"] == "per_call"
    assert row["factor_min"] == pytest.approx(2.0)  # the fake minima are 0.9 x each median
    assert row["medians_a_s"] == "0.001;0.0008" and row["env_a"] == ""
    assert row["env_b"] == "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824"
    assert row["status"] == "ok" and set(row) <= set(COLUMNS)


def test_power_of_two_compares_time_per_element() -> None:
    comparison = _ab(
        "power_of_two",
        Variant("power_of_two", "numba_loop", 512, 512),
        Variant("neighbour", "numba_loop", 500, 500),
        per_element=True,
    )
    timer = FakeTimer({("numba_loop", 512, 512, False): 1.0e-3, ("numba_loop", 500, 500, False): 0.25e-3})
    row = measure_comparison(comparison, SETTINGS, timer)
    per_a, per_b = 1.0e-3 / 512**2, 0.25e-3 / 500**2
    assert row["per_element_a_s"] == pytest.approx(per_a) and row["per_element_b_s"] == pytest.approx(per_b)
    assert row["factor"] == pytest.approx(per_a / per_b) and row["factor"] != pytest.approx(4.0)
    assert row["factor_min"] == pytest.approx(per_a / per_b)
    assert (row["m"], row["n_x"], row["m_b"], row["n_x_b"]) == (512, 512, 500, 500)
    assert row["basis"] == "per_element"


def test_process_spread_is_slowest_over_fastest_and_keeps_every_median() -> None:
    comparison = Comparison("process", Variant("fresh_process", "two_loop", 100, 10), None, processes=3)
    timer = FakeTimer({("two_loop", 100, 10, False): [2.0e-3, 2.3e-3, 2.1e-3]})
    row = measure_comparison(comparison, SETTINGS, timer)
    assert len(timer.calls) == 3
    assert row["factor"] == pytest.approx(2.3 / 2.0) and row["basis"] == "max_over_min"
    assert row["variant_a"] == "slowest_process" and row["variant_b"] == "fastest_process"
    assert [float(t) for t in row["medians_a_s"].split(";")] == [2.0e-3, 2.3e-3, 2.1e-3]
    with pytest.raises(Exception, match="more processes"):
        measure_comparison(Comparison("process", comparison.a, None, processes=2), SETTINGS, timer)


def test_alignment_times_x_where_numpy_put_it_against_on_a_line_in_the_comparison_s_layout() -> None:
    comparison = Comparison(
        "alignment",
        Variant("grid_placement", "numba_fused", 1_000, 1_000),
        Variant("line_aligned", "numba_fused", 1_000, 1_000, x_offset=0),
        processes=2,
        layout="F",
        paired=True,
    )
    timer = FakeTimer({("numba_fused", 1_000, 1_000, False): 1.2e-3, ("numba_fused", 1_000, 1_000, True): 1.0e-3})
    row = measure_comparison(comparison, SETTINGS, timer)
    # Both placements in each of the two processes, in the same rounds: the worker's paired answer is b.
    assert [(r.x_offset, r.paired_offset) for r in timer.requests] == [(None, 0), (None, 0)]
    assert {r.cell.layout for r in timer.requests} == {"F"} and SETTINGS.layout == "C"
    assert row["layout"] == "F" and row["factor"] == pytest.approx(1.2)
    assert (row["x_offset_a"], row["x_offset_b"]) == ("16", "0")  # as the workers said
    unpaired = Comparison("alignment", comparison.a, Variant("other_cell", "numba_fused", 999, 1_000), paired=True)
    with pytest.raises(BenchError, match="differ in more than where X starts"):
        measure_comparison(unpaired, SETTINGS, timer)


def test_default_plan_covers_the_named_cells() -> None:
    plan = default_plan()
    assert {c.effect for c in plan} == set(EFFECTS)
    cells = {(c.effect, c.a.implementation, c.a.m, c.a.n_x) for c in plan}
    assert ("allocator", "fully_vectorized", 30_000, 8) in cells
    assert {("power_of_two", name, 512, 512) for name in ("numba_loop", "feature_vectorized")} <= cells
    spread = [c for c in plan if c.effect == "process"]
    assert {c.a.implementation for c in spread} >= {"numba_loop", "fully_vectorized", "two_loop"}
    assert all(c.processes >= 3 and c.b is None for c in spread)
    assert all(c.b is not None and c.b.env == KEEP_MAPPED_ENV for c in plan if c.effect == "allocator")
    assert all(c.b is not None and c.b.implementation == "two_loop_lists" for c in plan if c.effect == "baseline_style")
    aligned = [c for c in plan if c.effect == "alignment"]
    assert all(c.paired and c.a.x_offset is None and c.b is not None and c.b.x_offset == 0 for c in aligned)
    # The kernel and the reference in the same examples-major cells, so the speedup's move can be derived.
    examples_major = {(c.a.implementation, c.a.m, c.a.n_x) for c in aligned if c.layout == "F"}
    assert {("numba_fused", 1_000, 1_000), ("fully_vectorized", 1_000, 1_000)} <= examples_major
    assert any(c.layout == "C" and c.a.implementation == "fully_vectorized" for c in aligned)


def test_study_writes_only_robustness_csv_with_every_effect(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("held by a run\n")
    before = hashlib.sha256((tmp_path / "results.csv").read_bytes()).hexdigest()
    path = run_study(tmp_path, default_plan(), SETTINGS, FakeTimer({}), log=lambda _text: None)
    assert path == tmp_path / ROBUSTNESS_CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", ROBUSTNESS_CSV]
    assert hashlib.sha256((tmp_path / "results.csv").read_bytes()).hexdigest() == before
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == COLUMNS
    assert set(frame["effect"]) == set(EFFECTS)
    # The fake timer gives every call the same time: per call that is 1x, per element the ratio of sizes.
    per_element = frame["basis"] == "per_element"
    assert (frame.loc[~per_element, "factor"] == 1.0).all()
    sizes = frame["m_b"] * frame["n_x_b"] / (frame["m"] * frame["n_x"])
    assert (frame.loc[per_element, "factor"] - sizes[per_element]).abs().max() < 1e-12
    assert len(load_robustness(path)) == len(default_plan())


def test_real_worker_measures_a_tiny_comparison(tmp_path: Path) -> None:
    plan = [
        _ab(
            "allocator",
            Variant("malloc_default", "fully_vectorized", 16, 4),
            Variant("malloc_kept_mapped", "fully_vectorized", 16, 4, KEEP_MAPPED_ENV),
        )
    ]
    frame = load_robustness(run_study(tmp_path, plan, SETTINGS, log=lambda _text: None))
    assert list(frame["status"]) == ["ok"]
    assert frame["time_a_s"].iloc[0] > 0 and frame["time_b_s"].iloc[0] > 0 and frame["factor"].iloc[0] > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("effect,m\nallocator,1\n", "missing columns"),
        (to_csv([{**dict.fromkeys(COLUMNS, "1"), "effect": "cosmic_rays"}]), "unknown effect"),
        (to_csv([{**dict.fromkeys(COLUMNS, "1"), "effect": "process", "status": "ok", "factor": "-1"}]), "factor"),
    ],
)
def test_corrupt_robustness_csv_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / ROBUSTNESS_CSV
    path.write_text(text)
    with pytest.raises(Exception, match=message):
        load_robustness(path)


def test_bad_output_folder_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["robustness", "--out", str(blocker / "sub")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["robustness", "--out", str(tmp_path), "--processes", "2"]) == 2
    assert "3 or more" in capsys.readouterr().err
    assert not (tmp_path / ROBUSTNESS_CSV).exists()


# --- the report section, on a synthetic run and a synthetic study ---------------------------------

# Speedups over two_loop per cell: (feature_vectorized, fully_vectorized).
SPEEDUPS = {
    (10, 1): (0.5, 2.0),
    (10, 100): (6.0, 40.0),
    (512, 512): (4.0, 400.0),  # a power-of-two stride; feature_vectorized just below 5x
    (1_000, 100): (8.0, 200.0),
    (32_768, 1): (0.6, 100.0),  # 256 KiB temporaries; fully_vectorized below 150x
    (32_768, 100): (9.0, 600.0),
}


def _results(lists: bool) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for (m, n_x), (fv, full) in SPEEDUPS.items():
        base = 1e-6 * m * n_x
        times = {"two_loop": base, "feature_vectorized": base / fv, "fully_vectorized": base / full}
        if lists:
            times["two_loop_lists"] = base / 4
        for name, t in times.items():
            rows.append(
                {
                    "implementation": name,
                    "m": m,
                    "n_x": n_x,
                    "dtype": "float64",
                    "layout": "C",
                    "threads": 1,
                    "status": "ok",
                    "median_s": t,
                    "iqr_s": t / 100,
                    "min_s": t,
                    "rounds": 5,
                    "loops": 1,
                    "bytes_x": m * n_x * 8,
                }
            )
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _study(folder: Path) -> None:
    times: dict[tuple[str, int, int, bool], float | list[float]] = {
        ("fully_vectorized", 30_000, 8, False): 1.0e-3,
        ("fully_vectorized", 30_000, 8, True): 0.5e-3,  # allocator: 2x
        ("feature_vectorized", 512, 512, False): 1.5 * 512**2,
        ("feature_vectorized", 500, 500, False): 500**2,  # power of two: 1.5x per element
        ("two_loop", 10, 10, False): 4e-5,
        ("two_loop_lists", 10, 10, False): 1e-5,  # baseline style: 4x
        ("two_loop", 1_000, 100, False): [1.0, 1.1, 1.05],  # spread 1.1x
        ("fully_vectorized", 1_000, 100, False): [1.0, 1.5, 1.2],  # spread 1.5x
        ("numba_fused", 2_000, 1_000, False): 2.2e-3,
        ("numba_fused", 2_000, 1_000, True): 1.0e-3,  # alignment: 2.2x
        ("fully_vectorized", 2_000, 1_000, False): 4.0e-3,
        ("fully_vectorized", 2_000, 1_000, True): 2.5e-3,  # alignment: 1.6x
    }
    plan = [
        _ab(
            "allocator",
            Variant("malloc_default", "fully_vectorized", 30_000, 8),
            Variant("malloc_kept_mapped", "fully_vectorized", 30_000, 8, KEEP_MAPPED_ENV),
        ),
        _ab(
            "power_of_two",
            Variant("power_of_two", "feature_vectorized", 512, 512),
            Variant("neighbour", "feature_vectorized", 500, 500),
            per_element=True,
        ),
        _ab(
            "baseline_style",
            Variant("numpy_arrays", "two_loop", 10, 10),
            Variant("python_lists", "two_loop_lists", 10, 10),
        ),
        *(
            Comparison(
                "alignment",
                Variant("grid_placement", name, 2_000, 1_000),
                Variant("line_aligned", name, 2_000, 1_000, x_offset=0),
                layout="F",
                paired=True,
            )
            for name in ("numba_fused", "fully_vectorized")
        ),
        Comparison("process", Variant("fresh_process", "two_loop", 1_000, 100), None, 3),
        Comparison("process", Variant("fresh_process", "fully_vectorized", 1_000, 100), None, 3),
    ]
    run_study(folder, plan, SETTINGS, FakeTimer(times), log=lambda _text: None)


def _analysis(folder: Path, lists: bool = False) -> Analysis:
    return analyse(_results(lists), {}, None, folder)


def _impacts(folder: Path, effect: str, lists: bool = False) -> dict[str, Impact]:
    found = _analysis(folder, lists).robustness
    assert found is not None
    return {i.implementation: i for i in found.impacts_of(effect)}


def _section(folder: Path, lists: bool = False) -> str:
    return build_report(_analysis(folder, lists), folder, folder)


def test_section_says_how_to_measure_when_there_is_no_study(tmp_path: Path) -> None:
    a = _analysis(tmp_path)
    assert a.robustness is None and a.robustness_problem is None
    text = _section(tmp_path)
    assert "## How robust is this answer" in text and f"python -m bench robustness --out {tmp_path}" in text


def test_each_factor_is_judged_against_the_process_spread(tmp_path: Path) -> None:
    _study(tmp_path)
    found = _analysis(tmp_path).robustness
    assert found is not None
    study = found.study.set_index("effect")
    assert study.loc["allocator", "factor"] == pytest.approx(2.0)
    # The allocator's 2x clears the larger spread of its sides (fully_vectorized's 1.5x), medians and minima.
    assert study.loc["allocator", "noise"] == pytest.approx(1.5) and bool(study.loc["allocator", "beyond_noise"])
    assert study.loc["power_of_two", "factor"] == pytest.approx(1.5)  # per element
    assert not study.loc["power_of_two", "beyond_noise"]  # 1.5x is not beyond the 1.5x spread
    assert study.loc["baseline_style", "factor"] == pytest.approx(4.0)
    spreads = study.loc["process"].set_index("implementation")["factor"]
    assert spreads["two_loop"] == pytest.approx(1.1) and spreads["fully_vectorized"] == pytest.approx(1.5)
    # The report's table shows the same rows.
    text = _section(tmp_path)
    assert has_row(text, "allocator", "`fully_vectorized`", "m = 30,000, n_x = 8")
    assert has_row(text, "2.00x", "2.00x", "yes")


def test_allocator_scales_only_the_cells_above_the_mmap_threshold(tmp_path: Path) -> None:
    _study(tmp_path)
    impacts = _impacts(tmp_path, "allocator")
    full = impacts["fully_vectorized"]
    # (1, m) temporaries of 32,768 x 8 bytes = 256 KiB pass the 128 KiB threshold; the rest do not.
    assert set(full.affected) == {(32_768, 1), (32_768, 100)} and full.held == 1
    # At 32,768 x 1 it is at 100x; halving its time gives 200x >= 150x.
    assert full.gain == ((32_768, 1),) and full.loss == () and full.outcome == "changes"
    assert full.factor == pytest.approx(2.0)
    # feature_vectorized allocates only (n_x, 1) arrays: nothing passes the threshold.
    assert impacts["feature_vectorized"].outcome == "unaffected"


def test_power_of_two_names_the_aliasing_cells_and_what_they_would_do(tmp_path: Path) -> None:
    _study(tmp_path)
    found = _analysis(tmp_path).robustness
    assert found is not None and found.aliasing_cells == ((512, 512), (32_768, 100))
    impacts = _impacts(tmp_path, "power_of_two")
    # feature_vectorized at 4x would be 6x at a neighbour size (1.5x per element, two_loop not measured: 1x).
    fv = impacts["feature_vectorized"]
    assert fv.factor == pytest.approx(1.5) and fv.gain == ((512, 512),) and fv.outcome == "changes"
    assert impacts["fully_vectorized"].outcome == "unknown"  # no power-of-two row for it in the study


def test_baseline_style_uses_the_lists_verdicts_when_the_run_measured_them(tmp_path: Path) -> None:
    _study(tmp_path)
    derived = _impacts(tmp_path, "baseline_style", lists=False)["fully_vectorized"]
    assert not derived.detail["measured"] and derived.detail["baseline"] == "two_loop_lists"
    # Every speedup divided by 4: of 2, 40, 400, 200, 100, 600 only 600 / 4 = 150 still reaches 150x.
    assert derived.detail["at_high"] == 1 and derived.held == 3 and derived.outcome == "shrinks"
    measured = _impacts(tmp_path, "baseline_style", lists=True)["fully_vectorized"]
    # Over lists every speedup is 4x smaller: ~300x holds in 3 cells over two_loop, 1 (600x / 4) over lists.
    assert measured.detail["measured"] and (measured.held, measured.detail["held_other"]) == (3, 1)
    assert measured.outcome == "changes"
    assert "`two_loop_lists` was not measured in this run" in _section(tmp_path, lists=False)


def test_alignment_says_where_x_started_and_what_a_line_would_do_to_the_kernel_s_speedup(tmp_path: Path) -> None:
    _study(tmp_path)
    found = _analysis(tmp_path).robustness
    assert found is not None
    (scale,) = found.alignment  # the kernel paired with the reference in the same cell
    assert (scale.implementation, scale.layout, scale.m, scale.n_x) == ("numba_fused", "F", 2_000, 1_000)
    assert scale.scale == pytest.approx(2.2 / 1.6)
    text = _section(tmp_path)
    assert "### Where X starts (alignment)" in text
    assert "`numba_fused` at m = 2,000, n_x = 1,000, F order" in text and "**2.20x**, beyond the process spread" in text
    assert "with X where the grid puts it (16 bytes into a line)" in text
    assert "would be 1.38x the one measured with X where the grid puts it (2.20x / 1.60x, *derived*)" in text


def test_process_spread_flags_the_cells_near_each_threshold(tmp_path: Path) -> None:
    _study(tmp_path)
    full = _impacts(tmp_path, "process")["fully_vectorized"]
    # Band for fully_vectorized: 1.5 x 1.1 = 1.65x around 150x, [91x, 248x): 100x and 200x, not 40x or 400x.
    assert full.factor == pytest.approx(1.65) and set(full.affected) == {(32_768, 1), (1_000, 100)}
    assert full.outcome == "could_move"


def test_build_report_includes_the_section_and_its_csv(tmp_path: Path) -> None:
    _study(tmp_path)
    a = _analysis(tmp_path)
    text = build_report(a, tmp_path, tmp_path)
    assert "## How robust is this answer" in text
    assert text.index("## How robust is this answer") < text.index("## Plots")
    a.write(tmp_path)
    table = pd.read_csv(tmp_path / IMPACTS_CSV)
    row = table[(table["effect"] == "allocator") & (table["implementation"] == "fully_vectorized")].iloc[0]
    assert (row["affected"], row["would_reach"], row["outcome"]) == (2, 1, "changes")
