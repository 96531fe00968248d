"""`bench compare` on small hand-made runs: alignment, ratios, the noise mark, old tables, grids, CI exit code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analyse.compare import _labels, compare_runs, run_verdicts
from bench.analyse.verdicts import claim_verdicts
from bench.base.results import COLUMNS, load_results
from bench.cli import main
from tests.helpers import has_row, table_rows

CELLS = ((1, 1), (8, 4), (64, 64))
# Times per call in run A: two loops take 1 ms per element; the note's ~10x and ~300x exactly.
FACTORS = {"two_loop": 1.0, "feature_vectorized": 10.0, "fully_vectorized": 300.0}


def _rows(
    scale: dict[str, float] | None = None,
    cells: tuple[tuple[int, int], ...] = CELLS,
    iqr_share: float = 0.01,
) -> list[dict[str, Any]]:
    """One ok row per implementation and cell; `scale` multiplies an implementation's times."""
    rows = []
    for m, n_x in cells:
        for name, factor in FACTORS.items():
            median = 1e-3 * m * n_x / factor * (scale or {}).get(name, 1.0)
            rows.append(
                {
                    "implementation": name,
                    "m": m,
                    "n_x": n_x,
                    "dtype": "float64",
                    "layout": "C",
                    "threads": 1,
                    "status": "ok",
                    "median_s": median,
                    "iqr_s": iqr_share * median,
                    "min_s": 0.99 * median,
                    "rounds": 10,
                    "loops": 1,
                }
            )
    return rows


def _write_run(
    folder: Path, rows: list[dict[str, Any]], cpu: str = "Test CPU", columns: tuple[str, ...] = COLUMNS
) -> Path:
    folder.mkdir(parents=True)
    frame = pd.DataFrame(rows).reindex(columns=list(columns))
    frame.to_csv(folder / "results.csv", index=False)
    meta = {
        "machine": {
            "cpu": cpu,
            "cores": 2,
            "memory_gib": 8.0,
            "python": "3.11.7",
            "versions": {"numpy": "2.0.0", "numba": "0.60.0"},
            "blas": [{"internal_api": "openblas", "version": "0.3.27"}],
            "git_commit": "abc1234",
            "date": "2024-01-01T12:00:00+00:00",
        },
        "profile": "quick",
        "seed": 1,
        "complete": True,
    }
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def _compare(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """A, and B where fully_vectorized is twice as slow and feature_vectorized 0.5% slower (within noise)."""
    a = _write_run(tmp_path / "before", _rows())
    b = _write_run(tmp_path / "after", _rows({"fully_vectorized": 2.0, "feature_vectorized": 1.005}), cpu="Other CPU")
    return a, b


def test_compare_aligns_rows_and_computes_ratios(two_runs: tuple[Path, Path]) -> None:
    comparison = compare_runs(list(two_runs))
    assert len(comparison.common) == len(CELLS) * len(FACTORS)
    assert comparison.left_out == {"before": 0, "after": 0}
    pairs = comparison.pairs.set_index(["implementation", "m", "n_x"])
    assert pairs.loc[("fully_vectorized", 8, 4), "time_ratio"] == pytest.approx(2.0)
    assert pairs.loc[("fully_vectorized", 8, 4), "speedup_a"] == pytest.approx(300.0)
    assert pairs.loc[("fully_vectorized", 8, 4), "speedup_ratio"] == pytest.approx(0.5)
    assert pairs.loc[("two_loop", 64, 64), "time_ratio"] == pytest.approx(1.0)
    table = comparison.by_implementation.set_index("implementation")
    assert table.loc["fully_vectorized", "change"] == "slower"
    assert table.loc["fully_vectorized", "slower_beyond_noise"] == len(CELLS)
    assert table.loc["feature_vectorized", "change"] == "within noise"
    assert table.loc["two_loop", "change"] == "within noise"
    claims = comparison.claims.set_index(["run", "implementation"])
    assert claims.loc[("before", "fully_vectorized"), "grid_median"] == pytest.approx(300.0)
    assert claims.loc[("after", "fully_vectorized"), "grid_median"] == pytest.approx(150.0)


def test_compare_writes_markdown_csv_and_plots(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    code, stdout, err = _compare([str(two_runs[0]), str(two_runs[1] / "results.csv"), "--out", str(out)], capsys)
    assert code == 0, err
    report = (out / "COMPARE.md").read_text()
    assert stdout == report
    assert (
        "Test CPU, 2 cores" in report and "Other CPU, 2 cores" in report and "Differs between the runs: cpu" in report
    )
    assert has_row(report, "`fully_vectorized`", "3", "2.00 (2.00 to 2.00)", "0.50", "3 slower, 0 faster", "**slower**")
    # Every table in the markdown is linked to its CSV beside it, and the CSV is there.
    linked = re.findall(r"\[(compare_\w+\.csv)\]", report)
    assert len(linked) >= 4 and all((out / name).is_file() for name in linked)
    assert 2 <= report.count("\n|:---") <= len(set(linked))
    for stem in ("compare_speedups", "compare_claims"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.svg").is_file()
        assert f"]({stem}.png)" in report


@pytest.mark.parametrize(
    ("iqr_a", "iqr_b", "beyond"), [(0.01, 0.01, True), (0.05, 0.05, False), (0.01, 0.05, False), (0.05, 0.01, False)]
)
def test_noise_mark_needs_a_change_beyond_both_iqrs(tmp_path: Path, iqr_a: float, iqr_b: float, beyond: bool) -> None:
    a = _write_run(tmp_path / "a", _rows(iqr_share=iqr_a))
    b = _write_run(tmp_path / "b", _rows({"fully_vectorized": 1.03}, iqr_share=iqr_b))
    pairs = compare_runs([a, b]).pairs
    moved = pairs[pairs["implementation"] == "fully_vectorized"]
    assert moved["beyond_noise"].all() == beyond and moved["beyond_noise"].any() == beyond
    assert (moved["change"] == ("slower" if beyond else "")).all()
    assert not pairs[pairs["implementation"] == "two_loop"]["beyond_noise"].any()


def test_an_older_table_is_read_if_it_has_the_needed_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_columns = ("implementation", "m", "n_x", "dtype", "layout", "threads", "median_s", "iqr_s")
    a = _write_run(tmp_path / "old", _rows(), columns=old_columns)
    b = _write_run(tmp_path / "new", _rows())
    code, _, err = _compare([str(a), str(b), "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err

    no_iqr = _write_run(tmp_path / "older", _rows(), columns=tuple(c for c in COLUMNS if c != "iqr_s"))
    before = (no_iqr / "results.csv").read_bytes()
    code, _, err = _compare([str(b), str(no_iqr), "--out", str(tmp_path / "cmp2")], capsys)
    assert code == 2 and _one_line_error(err) and "iqr_s" in err and "older version" in err, err
    assert (no_iqr / "results.csv").read_bytes() == before


def test_different_grids_compare_on_common_rows_and_say_how_many_were_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write_run(tmp_path / "a", _rows(cells=((1, 1), (8, 4))))
    b = _write_run(tmp_path / "b", _rows(cells=((8, 4), (64, 64), (512, 64))))
    comparison = compare_runs([a, b])
    assert set(zip(comparison.common["m"], comparison.common["n_x"], strict=True)) == {(8, 4)}
    assert comparison.left_out == {"a": 3, "b": 6}
    code, stdout, _ = _compare([str(a), str(b), "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0 and "left out, measured in only some runs: a: 3, b: 6" in stdout

    c = _write_run(tmp_path / "c", _rows(cells=((4096, 1),)))
    code, _, err = _compare([str(a), str(c), "--out", str(tmp_path / "cmp2")], capsys)
    assert code == 2 and _one_line_error(err) and "share no measured row" in err, err


@pytest.mark.parametrize(("percent", "expected"), [(50, 1), (99, 1), (150, 0)])
def test_fail_if_slower_exit_code(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], percent: int, expected: int
) -> None:
    args = [*map(str, two_runs), "--out", str(tmp_path / "cmp"), "--fail-if-slower", str(percent)]
    code, _, err = _compare(args, capsys)
    assert code == expected, err
    assert ("slower: fully_vectorized is 2.00x as slow in after as in before" in err) == (expected == 1)
    assert "feature_vectorized" not in err  # 0.5% slower is within noise


def test_faster_is_never_a_failure(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, err = _compare(
        [str(two_runs[1]), str(two_runs[0]), "--out", str(tmp_path / "cmp"), "--fail-if-slower", "0"], capsys
    )
    assert code == 0, err
    assert any(row[-1] == "**faster**" for row in table_rows(stdout))


def test_verdicts_come_from_verdicts_json_else_na(
    two_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a, b = two_runs
    verdicts = [
        {
            "implementation": "fully_vectorized",
            "claimed": 300.0,
            "threshold": 150.0,
            "rule": {"all": [{"variable": "m*n_x", "op": ">=", "value": 32768}]},
            "agree": 27,
            "cells": 28,
            "exceptions": [[8, 4096]],
        }
    ]
    (a / "verdicts.json").write_text(json.dumps(verdicts))
    # b has no verdicts.json: its verdicts are found from its table now, in the same words a report uses.
    code, stdout, err = _compare([str(a), str(b), "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    row = next(r for r in table_rows(stdout) if r[:2] == ["`fully_vectorized`", "~300x"])
    assert "holds where m x n_x >= 32,768 (27 of 28 cells agree; exceptions: m=8 n_x=4,096)" in row
    found = {v.implementation: v for v in claim_verdicts(load_results(b))}["fully_vectorized"]
    assert row[-1] == f"{found.headline()} ({found.agree} of {found.cells} cells agree)"
    (b / "results.csv").write_text("implementation,m\nx,1\n")  # a table the verdicts cannot read: n/a
    assert run_verdicts(b) is None
    table = pd.read_csv(tmp_path / "cmp" / "compare_verdicts.csv")
    assert set(table["run"]) == {"before", "after"}


def test_bad_input_is_one_line_and_exit_2(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _compare([str(two_runs[0])], capsys)
    assert code == 2 and _one_line_error(err) and "at least two runs" in err
    code, _, err = _compare([str(two_runs[0]), str(tmp_path / "missing")], capsys)
    assert code == 2 and _one_line_error(err) and "no results file" in err
    with pytest.raises(SystemExit) as exc:
        main(["compare", *map(str, two_runs), "--fail-if-slower", "lots"])
    assert exc.value.code == 2 and "'lots' is not a number" in capsys.readouterr().err


def test_labels_are_unique_and_short() -> None:
    assert _labels([Path("/r/results/local"), Path("/r/results/local/previous/20240101T120000Z_abc")]) == [
        "local",
        "20240101T120000Z_abc",
    ]
    assert _labels([Path("/a/results/local"), Path("/b/results/local")]) == ["a/results/local", "b/results/local"]
    assert _labels([Path("/a/x"), Path("/a/x")]) == ["x#1", "x#2"]


def test_the_machine_line_names_numpys_blas_among_the_libraries_loaded() -> None:
    from bench.base.machine import machine_line

    pools: list[dict[str, Any]] = [
        {"internal_api": "openmp", "version": None},
        {"internal_api": "openblas", "version": "0.3.30", "numpy": False},  # a framework's own, loaded first
        {"internal_api": "openblas", "version": "0.3.31", "numpy": True},
    ]
    meta = {
        "cpu": "Some CPU",
        "cores": 2,
        "memory_gib": 8.0,
        "versions": {"numpy": "2.4.6"},
        "date": "2026-11-30T12:00:00+00:00",
        "blas": pools,
    }
    assert machine_line(meta) == "Some CPU, 2 cores, 8.0 GiB; NumPy 2.4.6 (openblas 0.3.31); 2026-11-30"
    # Runs recorded before the mark: the first BLAS, as before.
    for pool in pools:
        pool.pop("numpy", None)
    assert "(openblas 0.3.30)" in machine_line(meta)


def test_metadata_tells_numpys_own_blas_by_where_numpy_is_installed() -> None:
    from pathlib import Path

    import numpy

    from bench.measure.metadata import _numpys

    site = Path(numpy.__file__).resolve().parent.parent
    assert _numpys(str(site / "numpy.libs" / "libscipy_openblas64_-x.so"))
    assert _numpys(str(site / "numpy" / ".dylibs" / "libscipy_openblas.dylib"))
    assert not _numpys(str(site / "torch" / "lib" / "libopenblas.so"))  # a framework's own
    assert not _numpys("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
