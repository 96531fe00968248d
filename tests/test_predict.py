"""`bench predict` and api.predict: seconds per step at sizes a run never measured, with the model's own range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import api
from bench.base.results import COLUMNS
from bench.cli import main


def _step(name: str, m: float, n_x: float) -> float:
    """Known step times: a fixed cost, per example, per feature and per element (no sweep: no reads term)."""
    if name == "two_loop":
        return 2e-6 + 8e-7 * m + 3e-8 * n_x + 2.8e-7 * m * n_x
    return 1.2e-5 + 4e-9 * m + 2e-9 * n_x + 1.5e-10 * m * n_x


def _run(folder: Path) -> Path:
    rows: list[dict[str, Any]] = []
    for name in ("two_loop", "fully_vectorized"):
        for m in (1, 10, 100, 1_000):
            for n_x in (1, 10, 100, 1_000):
                t = _step(name, m, n_x)
                row: dict[str, Any] = dict.fromkeys(COLUMNS)
                row |= {"implementation": name, "m": m, "n_x": n_x, "dtype": "float64", "layout": "C", "threads": 1}
                rows.append(row | {"status": "ok", "median_s": t, "iqr_s": 0.0, "min_s": t, "rounds": 5, "loops": 1})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(folder / "results.csv", index=False)
    (folder / "metadata.json").write_text(json.dumps({"profile": "test"}))
    return folder


def test_predict_writes_the_model_s_seconds_for_every_size_and_implementation(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    out = tmp_path / "predicted.csv"
    code = main(["predict", "--results", str(run), "--m", "50000,60000", "--n-x", "784", "--iterations", "2000",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 4 and set(table["implementation"]) == {"two_loop", "fully_vectorized"}
    for r in table.to_dict("records"):
        predicted, low, high = float(r["predicted_s"]), float(r["low_s"]), float(r["high_s"])
        assert predicted == pytest.approx(_step(str(r["implementation"]), float(r["m"]), float(r["n_x"])), rel=1e-3)
        assert low <= predicted <= high and float(r["total_s"]) == pytest.approx(2000 * predicted)
        assert bool(r["extrapolated"])  # 50,000 x 784 elements: beyond the 1,000 x 1,000 the fit saw
    same = api.predict(run, [50_000, 60_000], 784, iterations=2000)
    pd.testing.assert_frame_equal(same.reset_index(drop=True), table, check_dtype=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--m", "0", "--n-x", "784"], "positive"),
        (["--m", "1,x", "--n-x", "784"], "not an integer"),
        (["--m", "10", "--n-x", "784", "--implementations", "nope"], "no model for nope"),
        (["--m", "10", "--n-x", "784", "--iterations", "0"], "positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path / "run")
    try:
        code = main(["predict", "--results", str(run), *args])
    except SystemExit as exc:  # argparse's own errors: one line, exit 2, from OneLineParser
        code = int(str(exc.code))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_an_unwritable_out_or_a_missing_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "run")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["predict", "--results", str(run), "--m", "10", "--n-x", "10", "--out", str(blocker / "p.csv")]) == 2
    assert main(["predict", "--results", str(tmp_path / "none"), "--m", "10", "--n-x", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and blocker.read_text() == "not a folder"
