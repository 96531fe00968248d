"""The "What an engineer would pick instead" section: numbers from the table, n/a with the reason, CSVs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analyse.analysis import analyse
from bench.analyse.peers import CSV_FILES, close_wins, peer_tables
from bench.base.hierarchy import out_of_cache_bytes
from bench.base.results import COLUMNS
from bench.present.peers_report import peers_section
from bench.present.report import write_report
from tests.helpers import has_row


def _row(name: str, m: int, n_x: int, seconds: float | None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row |= {"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 1}
    row |= {"status": "ok", "median_s": seconds, "min_s": seconds, "iqr_s": 0.0, "rounds": 5, "loops": 1}
    return row | extra


def _frame(with_peers: bool = True) -> pd.DataFrame:
    rows = []
    # small cell (16 elements) and large cell (2**20 elements); jax_jit 2x faster at large only.
    for m, n_x, fv in ((4, 4, 1e-5), (1024, 1024, 1e-2)):
        rows += [
            _row("two_loop", m, n_x, fv * 300),
            _row("two_loop_lists", m, n_x, fv * 100),
            _row("feature_vectorized", m, n_x, fv * 10),
            _row("fully_vectorized", m, n_x, fv),
        ]
        if with_peers:
            rows += [
                _row("jax_jit", m, n_x, fv * (4.0 if m == 4 else 0.5), compile_s=0.2 if m == 4 else 0.4),
                _row("jax_jit", m, n_x, fv, threads=2),  # not the 1-thread setting: left out
            ]
        else:
            rows.append(_row("jax_jit", m, n_x, None, status="skipped_unavailable", reason="needs jax"))
        rows.append(_row("torch_eager", m, n_x, None, status="skipped_unavailable", reason="needs torch"))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_tables_hold_the_measured_ratios() -> None:
    tables = peer_tables(_frame())
    speed = tables["speedup"].set_index(["implementation", "region"])
    assert speed.loc[("jax_jit", "small (m x n_x <= 8,192)"), "median"] == pytest.approx(0.25)
    assert speed.loc[("jax_jit", "large (m x n_x > 524,288)"), "median"] == pytest.approx(2.0)
    assert speed.loc[("jax_jit", "medium (m x n_x <= 524,288)"), "cells"] == 0
    assert speed.loc[("torch_eager", "small (m x n_x <= 8,192)"), "cells"] == 0
    fastest = tables["fastest"].set_index("region")
    assert fastest.loc["small (m x n_x <= 8,192)", "implementation"] == "fully_vectorized"
    assert fastest.loc["large (m x n_x > 524,288)", "implementation"] == "jax_jit"
    compile_s = tables["compile"].set_index("implementation")
    assert compile_s.loc["jax_jit", "median_s"] == pytest.approx(0.3)
    assert compile_s.loc["jax_jit", "process"] == "a pinned worker per thread count"
    base = tables["baselines"].set_index(["implementation", "baseline"])
    assert base.loc[("fully_vectorized", "two_loop"), "median"] == pytest.approx(300)
    assert base.loc[("fully_vectorized", "two_loop_lists"), "median"] == pytest.approx(100)
    assert base.loc[("feature_vectorized", "two_loop_lists"), "median"] == pytest.approx(10)
    assert base.loc[("two_loop_lists", "two_loop"), "median"] == pytest.approx(3)


def test_unmeasured_peers_are_na_with_the_reason() -> None:
    frame = _frame(with_peers=False)
    text = "\n".join(peers_section(frame, peer_tables(frame)))
    assert "## What an engineer would pick instead" in text
    assert has_row(text, "`jax_jit`", "n/a: needs jax") and has_row(text, "`torch_eager`", "n/a: needs torch")
    assert "0.25x" not in text


def test_the_out_of_cache_cells_are_a_region_of_their_own() -> None:
    frame = _frame()
    big = frame[frame["m"] == 1024].assign(m=16_384)  # 16,384 x 1,024 x 8 bytes = 128 MiB
    big.loc[big["implementation"] == "jax_jit", "median_s"] *= 4  # jax_jit slower than the reference here
    tables = peer_tables(pd.concat([frame, big], ignore_index=True), 100 * 2**20)
    label = "of which out of cache (X >= 100 MiB)"
    fastest = tables["fastest"]
    wins = {(r, n): (c, w) for r, n, c, w in fastest[["region", "implementation", "cells", "wins"]].to_numpy()}
    assert wins[(label, "fully_vectorized")] == (1, 1)
    assert wins[("large (m x n_x > 524,288)", "jax_jit")] == (2, 1)
    speed = tables["speedup"].set_index(["implementation", "region"])
    assert speed.loc[("jax_jit", label), "median"] == pytest.approx(0.5)
    text = "\n".join(peers_section(frame, tables))
    assert has_row(text, label, "1", "`fully_vectorized` (1 of 1)")
    assert label in text.split("### Each peer against")[1]  # a column of the peers' speedups too


def test_write_report_writes_every_table_as_csv(tmp_path: Path) -> None:
    frame = _frame()
    write_report(analyse(frame, {}), tmp_path, tmp_path)
    assert "What an engineer would pick instead" in (tmp_path / "REPORT.md").read_text()
    for key, name in CSV_FILES.items():
        written = pd.read_csv(tmp_path / name)
        expected = peer_tables(frame, out_of_cache_bytes({}))[key]
        assert list(written.columns) == list(expected.columns) and len(written) == len(expected)


def test_a_win_within_the_rows_spread_is_counted_as_close() -> None:
    # Four large cells: jax_jit wins each by 10% of the reference's time; the larger IQR of the two
    # rows is 5%, 20%, 20% where only the runner-up's row has one, and none where neither has.
    rows = []
    for m, iqr_fv, iqr_jax in ((2048, 0.05, 0.0), (4096, 0.0, 0.2), (8192, 0.2, None), (16384, None, None)):
        rows += [
            _row("fully_vectorized", m, 1024, 1.0, iqr_s=iqr_fv),
            _row("jax_jit", m, 1024, 0.9, iqr_s=iqr_jax),
        ]
    tables = peer_tables(pd.DataFrame(rows, columns=COLUMNS))
    fastest = tables["fastest"]
    large = fastest[(fastest["region"] == "large (m x n_x > 524,288)") & (fastest["implementation"] == "jax_jit")]
    assert large[["wins", "close_wins"]].to_numpy().tolist() == [[4, 2]]  # the two at 20%: 0.1 <= 0.2
    text = "\n".join(peers_section(pd.DataFrame(rows, columns=COLUMNS), tables))
    assert has_row(text, "large (m x n_x > 524,288)", "4", "`jax_jit` (4 of 4, 2 within the rows' IQR)")
    # By hand: the margin equal to the larger IQR is close; a single implementation never is.
    times = pd.DataFrame({"a": [1.0, 1.0], "b": [1.25, None]}, index=pd.MultiIndex.from_tuples([(1, 1), (2, 1)]))
    iqr = pd.DataFrame({"a": [0.25, 0.5], "b": [0.0, 0.5]}, index=times.index)
    assert close_wins(times, iqr).tolist() == [True, False]
