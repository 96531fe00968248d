"""Report and plots from hand-made tables: verdicts follow the rule, numbers come from the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analyse.analysis import analyse
from bench.analyse.verdicts import Verdict, verdict_for
from bench.base.results import COLUMNS
from bench.cli import main
from bench.present.report import build_report
from bench.pytest_json import load_pytest_json
from tests.helpers import has_row


def _speed(values: dict[tuple[int, int], float]) -> pd.Series:
    return pd.Series(values, index=pd.MultiIndex.from_tuples(list(values), names=["m", "n_x"]))


def test_verdicts() -> None:
    def verdict(values: dict[tuple[int, int], float], claimed: float) -> Verdict:
        return verdict_for(_speed(values), "x", "X", claimed)

    assert verdict({(10, 1): 400.0, (10, 8): 900.0}, 300).headline() == "holds in every measured cell"
    assert verdict({(10, 1): 4.0, (10, 8): 4.9}, 10).headline() == "does not hold in any measured cell"
    six = {(10, 1): 0.5, (100, 1): 0.6, (10, 64): 3.0, (100, 64): 12.0, (10, 512): 40.0, (100, 512): 90.0}
    found = verdict(six, 10)
    assert found.headline().startswith("holds where m x n_x >= 5,120")
    assert "3 of 6 cells" in found.sentence() and "agrees with 6 of 6 cells; no exceptions" in found.sentence()
    assert verdict({}, 10).headline() == "not measured"


def _rows(times: dict[str, float], m: int = 209, n_x: int = 12288) -> list[dict[str, Any]]:
    return [
        {
            "implementation": k,
            "m": m,
            "n_x": n_x,
            "dtype": "float64",
            "layout": "C",
            "threads": 1,
            "status": "ok",
            "median_s": v,
            "iqr_s": v / 100,
            "min_s": v,
            "rounds": 5,
            "loops": 1,
            "bytes_x": m * n_x * 8,
        }
        for k, v in times.items()
    ]


def test_report_numbers_come_from_the_table(tmp_path: Path) -> None:
    rows = _rows({"two_loop": 1.0, "feature_vectorized": 0.125, "fully_vectorized": 0.0025})
    rows += _rows({"two_loop": 0.002, "feature_vectorized": 0.004, "fully_vectorized": 0.0001}, m=100, n_x=2)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    a = analyse(frame, {"profile": "test"})
    claims = a.claims.set_index("implementation")
    assert claims.loc["feature_vectorized", "course_shape"] == pytest.approx(8.0)  # 1.0 / 0.125
    assert claims.loc["fully_vectorized", "course_shape"] == pytest.approx(400.0)  # 1.0 / 0.0025
    # feature_vectorized over both cells: 0.002 / 0.004 and 8.
    assert (claims.loc["feature_vectorized", "grid_min"], claims.loc["feature_vectorized", "grid_max"]) == (0.5, 8.0)
    assert claims.loc["fully_vectorized", "cells"] == 2 and claims.loc["two_loop", "course_shape"] == 1.0
    # The report's table shows those numbers, with the measured time beside the speedup.
    text = build_report(a, tmp_path, tmp_path)
    assert has_row(text, "`feature_vectorized`", "~10x", "8x (125 ms)", "4.2x", "0.5x to 8x")
    assert has_row(text, "`fully_vectorized`", "~300x", "400x (2.5 ms)")


def test_pytest_json_becomes_the_same_table_and_plots(tmp_path: Path) -> None:
    benchmarks = []
    for name, median in (("two_loop", 1e-2), ("fully_vectorized", 1e-5)):
        for m in (64, 4096):
            for n_x in (16, 256):
                benchmarks.append(
                    {
                        "name": f"test_propagate[{name}-m{m}-nx{n_x}]",
                        "stats": {
                            "median": median * m * n_x / 1e3,
                            "iqr": 1e-7,
                            "min": median,
                            "rounds": 5,
                            "iterations": 3,
                        },
                        "extra_info": {
                            "implementation": name,
                            "m": m,
                            "n_x": n_x,
                            "dtype": "float64",
                            "layout": "C",
                            "threads": 1,
                            "bytes_x": m * n_x * 8,
                        },
                    }
                )
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "benchmarks": benchmarks,
                "machine_info": {"cpu": {"brand_raw": "Test CPU"}},
                "datetime": "2026-01-01T00:00:00",
            }
        )
    )
    frame, meta = load_pytest_json(path)
    assert tuple(frame.columns) == COLUMNS and len(frame) == 8 and meta["machine"]["cpu"] == "Test CPU"
    assert main(["plot", "--from-pytest-json", str(path), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "speedup_heatmap.png").is_file()
    assert main(["report", "--from-pytest-json", str(path), "--out", str(tmp_path)]) == 0
    assert "1,000x" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("content", ["{}", "[]", '{"benchmarks": [{"extra_info": {"implementation": "x"}}]}'])
def test_bad_pytest_json_is_a_one_line_error(tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["plot", "--from-pytest-json", str(path), "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_readme_blocks_are_rewritten_between_their_markers_only(tmp_path: Path) -> None:
    from bench.base.errors import BenchError
    from bench.present.report import marker, update_readme

    start, end = marker("findings")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{start}\nold findings\n{end}\nafter\n")
    update_readme(readme, {"findings": "new findings\n"})
    assert readme.read_text() == f"# Title\n\nbefore\n{start}\nnew findings\n{end}\nafter\n"
    with pytest.raises(BenchError, match="no profiles markers"):
        update_readme(readme, {"profiles": "x\n"})
    assert "new findings" in readme.read_text()  # a failed update leaves the file as it was


def test_the_method_names_the_blocked_rows_pause_and_warm_up_where_the_run_recorded_them(tmp_path: Path) -> None:
    frame = pd.DataFrame(_rows({"two_loop": 1.0, "fully_vectorized": 0.0025}), columns=list(COLUMNS))
    recorded = build_report(analyse(frame, {"profile": "test", "settle_s": 0.25, "warmup_s": 0.02}), tmp_path, tmp_path)
    assert "with a 0.25 s pause between them and 20 ms of untimed calls before each block (" in recorded
    older = build_report(analyse(frame, {"profile": "test"}), tmp_path, tmp_path)
    assert "other, with a pause between (a pool left spinning slows the next one), so" in older


def test_the_method_says_where_every_x_started_where_the_run_recorded_it(tmp_path: Path) -> None:
    frame = pd.DataFrame(_rows({"two_loop": 1.0, "fully_vectorized": 0.0025}), columns=list(COLUMNS))
    recorded = build_report(analyse(frame, {"profile": "test", "x_offset_bytes": 16}), tmp_path, tmp_path)
    assert "- Every X starts 16 bytes into a 64-byte cache line, as a large array glibc maps does" in recorded
    older = build_report(analyse(frame, {"profile": "test"}), tmp_path, tmp_path)
    assert "Every X starts" not in older
