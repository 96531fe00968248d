"""Your own functions in a run: beside the registered ones, labelled, checked, and failing on their own."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.measure.runner
from bench.base.results import load_results
from bench.cli import main
from bench.measure.data import make_problem
from bench.measure.user import ENTRY_POINT_GROUP, resolve, to_gradients
from implementations import Gradients
from tests.helpers import assert_matches_reference, flat_memory
from tests.reference import reference_gradients
from tests.user_functions import course

ROOT = Path(__file__).resolve().parent.parent
GOOD = f"{ROOT}/examples/course_propagate.py:propagate"
NO_M = f"{ROOT}/examples/wrong_propagates.py:missing_one_over_m"
RAISES = f"{ROOT}/examples/wrong_propagates.py:raises"
TINY = ["run", "--profile", "quick", "--m", "1,8", "--n-x", "1,4", "--no-lecture", "--threads", "1"]


@pytest.fixture(autouse=True)
def _skip_bandwidth_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about what joins a run, not about bandwidth: skip the memory sweep.
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("mixed")
    targets = ",".join(["two_loop", "fully_vectorized", GOOD, NO_M, RAISES])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
        code = main([*TINY, "--implementations", targets, "--out", str(out)])
    return code, load_results(out), out


def test_a_course_style_function_gets_ok_rows_beside_the_others(mixed_run: tuple[int, pd.DataFrame, Path]) -> None:
    _, frame, out = mixed_run
    mine = frame[frame["implementation"] == "course_propagate.propagate"]
    assert len(mine) == 8 and set(mine["status"]) == {"ok"} and (mine["median_s"] > 0).all()
    for name in ("two_loop", "fully_vectorized"):
        rows = frame[frame["implementation"] == name]
        assert len(rows) == 8 and set(rows["status"]) == {"ok"}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["sources"]["course_propagate.propagate"] == GOOD and meta["complete"] is True


def test_wrong_and_raising_functions_get_failed_check_rows(mixed_run: tuple[int, pd.DataFrame, Path]) -> None:
    code, frame, _ = mixed_run
    assert code == 1
    wrong = frame[frame["implementation"] == "wrong_propagates.missing_one_over_m"]
    assert len(wrong) == 8 and set(wrong["status"]) == {"failed_check"} and wrong["median_s"].isna().all()
    assert wrong["reason"].str.contains("db is 0.00436673, expected 0.00145558").all()
    assert wrong["reason"].str.contains("the 1/m is missing").all()
    raising = frame[frame["implementation"] == "wrong_propagates.raises"]
    assert set(raising["status"]) == {"failed_check"}
    assert raising["reason"].str.contains(r"raised ValueError: shapes \(2,1\) and \(2,3\) not aligned").all()


def test_the_report_names_what_failed(mixed_run: tuple[int, pd.DataFrame, Path], tmp_path: Path) -> None:
    _, _, out = mixed_run
    assert main(["report", "--results", str(out), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Failed the check (not timed)" in report and "`wrong_propagates.raises` (8 rows)" in report


def test_label_names_the_function_and_bad_labels_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "--m", "4", "--n-x", "2", "--layouts", "C", "--out", str(tmp_path)]
    assert main([*args, "--implementations", f"fully_vectorized,{GOOD}", "--label", "mine"]) == 0
    assert set(load_results(tmp_path)["implementation"]) == {"fully_vectorized", "mine"}
    capsys.readouterr()
    before = (tmp_path / "results.csv").read_bytes()
    for extra, message in (
        (["--label", "a,b"], "2 label(s) for 1 function target(s)"),
        (["--label", "two_loop"], "is a registered implementation's name"),
    ):
        assert main([*args, "--implementations", f"fully_vectorized,{GOOD}", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--implementations", f"{GOOD},{ROOT}/examples/course_propagate.py:propagate_loops"]) == 0
    assert (tmp_path / "results.csv").read_bytes() != before
    assert main([*args, "--implementations", f"{GOOD},{GOOD.replace(str(ROOT) + '/', '')}"]) == 2
    assert "two implementations are labelled" in capsys.readouterr().err


def test_package_module_specs_resolve() -> None:
    (impl,) = resolve(["tests.user_functions:course"])
    assert impl.name == "user_functions.course" and impl.source == "tests.user_functions:course"
    p = make_problem(5, 3, seed=1)
    prepared = impl.setup(p.w, p.b, p.X, p.Y)
    # The timed step is the user's call and nothing else.
    assert isinstance(prepared.step, functools.partial) and prepared.step.func is course
    assert_matches_reference(prepared.gradients(prepared.step()), reference_gradients(p.w, p.b, p.X, p.Y), "float64")


def test_results_in_either_convention_become_gradients() -> None:
    dw = np.ones((2, 1))
    expected = Gradients(dw=dw, db=0.5, cost=1.5)
    for result in (
        ({"dw": dw, "db": np.float64(0.5)}, np.array(1.5)),
        ({"dw": dw, "db": 0.5}, np.squeeze(np.array([[1.5]]))),
        (dw, 0.5, 1.5),
        Gradients(dw=dw, db=0.5, cost=1.5),
    ):
        got = to_gradients(result)
        assert got.db == expected.db and got.cost == expected.cost and np.array_equal(got.dw, dw)
        assert isinstance(got.db, float) and isinstance(got.cost, float)
    for bad, message in (
        ({"dw": dw}, "returned a dict"),
        (({"dw": dw}, 1.0), "grads has no 'db'"),
        (({"dw": dw, "db": np.ones((3, 3))}, 1.0), r"db has shape \(3, 3\), expected a single number"),
        ((dw, 0.5), "returned a tuple of 2"),
    ):
        with pytest.raises(ValueError, match=message):
            to_gradients(bad)


def test_an_installed_entry_point_joins_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A distribution as pip installs one: its entry_points.txt names the group and the function.
    dist = tmp_path / "learner_kernels-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: learner-kernels\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nlearner_kernel = learner_kernels:propagate\n")
    (tmp_path / "learner_kernels.py").write_text(
        "from tests.user_functions import course\n\ndef propagate(w, b, X, Y):\n    return course(w, b, X, Y)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "learner_kernel"]) == 0
    assert "ok   learner_kernel (entry point learner_kernels:propagate)" in capsys.readouterr().out
    out = tmp_path / "run"
    args = [*TINY, "--m", "2", "--n-x", "3", "--layouts", "C", "--implementations", "learner_kernel", "--out", str(out)]
    assert main(args) == 0
    assert set(load_results(out)["status"]) == {"ok"}
    sys.modules.pop("learner_kernels", None)
