"""The command line end to end on tiny grids: outputs, one-line errors, resume, Ctrl-C, gate, cut-off."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

import bench.cli
import bench.measure.runner
import bench.measure.user
from bench.base.results import COLUMNS, load_results
from bench.cli import main
from implementations import REGISTRY, Gradients, Implementation
from implementations.interface import Prepared, as_gradients
from tests.helpers import flat_memory

TINY = ["--profile", "quick", "--m", "1,8", "--n-x", "1,4", "--no-lecture"]
# Implementations timed in this process: a test of the runner's own mechanics (resume, gate) need
# not start a worker process per row for the isolated ones (a few seconds each), nor count the
# skipped_unavailable rows of peers that are not installed.
IN_PROCESS = [
    "--implementations",
    ",".join(n for n, impl in REGISTRY.items() if not impl.isolate and impl.unavailable is None),
]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["run", *TINY, "--threads", "1,all", "--out", str(out)]) == 0
    return out


def test_run_writes_a_tidy_table_and_metadata(finished_run: Path) -> None:
    frame = pd.read_csv(finished_run / "results.csv")
    assert tuple(frame.columns) == COLUMNS
    assert set(frame["implementation"]) == set(REGISTRY)
    missing = {n for n, impl in REGISTRY.items() if impl.unavailable}
    # An implementation whose package is not installed has rows too, skipped with the reason.
    unavailable = frame[frame["implementation"].isin(missing)]
    assert set(unavailable["status"]) <= {"skipped_unavailable"} and unavailable["reason"].notna().all()
    frame = frame[~frame["implementation"].isin(missing)]
    assert set(frame["status"]) == {"ok"}
    assert frame[["median_s", "iqr_s", "min_s", "rounds", "loops"]].notna().all().all()
    assert (frame["median_s"] > 0).all() and (frame["min_s"] <= frame["median_s"]).all()
    # one row per implementation x cell x dtype x layout x threads, no duplicates
    key = ["implementation", "m", "n_x", "dtype", "layout", "threads"]
    assert not frame.duplicated(key).any()
    threaded = {n for n, impl in REGISTRY.items() if impl.threading != "none"}
    assert set(frame[~frame["implementation"].isin(threaded)]["threads"]) == {1}
    jit = frame[frame["implementation"].isin([n for n, i in REGISTRY.items() if i.jit])]
    assert jit.groupby("implementation")["compile_s"].apply(lambda s: s.notna().any()).all()
    meta = json.loads((finished_run / "metadata.json").read_text())
    for key_name in ("machine", "seed", "profile", "bandwidth_gbps", "complete", "settle_s", "warmup_s"):
        assert key_name in meta
    assert meta["x_offset_bytes"] == 16  # where every timed X starts in its cache line
    assert meta["complete"] is True and meta["machine"]["cpu"]
    assert {"numpy", "numba"} <= set(meta["machine"]["versions"])


def test_rows_record_the_set_up_apart_and_the_plan_it_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def setup(w: Any, b: float, X: Any, Y: Any) -> Prepared:
        calls.append("setup")
        time.sleep(0.05)  # a set-up that times its plans takes a while; none of it may reach median_s
        return Prepared(
            step=lambda: REGISTRY["fully_vectorized"].propagate(w, b, X, Y), gradients=as_gradients, plan="rows"
        )

    planned = Implementation(
        name="planned", propagate=REGISTRY["fully_vectorized"].propagate, summary="a plan", setup_fn=setup
    )
    registry = {**REGISTRY, "planned": planned}
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)  # not tested here
    args = ["run", *TINY, "--threads", "1", "--implementations", "two_loop,planned", "--out", str(tmp_path)]
    assert _run(args, capsys)[0] == 0
    frame = load_results(tmp_path)
    rows = frame[frame["implementation"] == "planned"]
    baseline = frame[frame["implementation"] == "two_loop"]
    assert len(calls) >= 4 and set(rows["plan"]) == {"rows"}  # a set-up per row at least
    assert (rows["setup_s"] >= 0.05).all() and (rows["median_s"] < 0.05).all()
    assert baseline["plan"].isna().all() and baseline["setup_s"].notna().all()


def test_metadata_names_the_threading_layer_numba_parallel_runs_on() -> None:
    from bench.measure.metadata import numba_threading
    from bench.present.report import _numba_layer

    X = np.ones((1_000, 1_000), order="F")  # past numba_parallel's smallest split: its pool starts
    REGISTRY["numba_parallel"].propagate(np.zeros((1_000, 1)), 0.0, X, np.ones((1, 1_000)))
    found = numba_threading()
    assert found["layer"] in {"omp", "tbb", "workqueue"}
    assert _numba_layer({"machine": {"numba_threading": found}}) == f"; Numba's threading layer: {found['layer']}"
    assert _numba_layer({"machine": {}}) == ""  # runs from before it was recorded


def test_every_timed_x_starts_where_the_grid_places_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    offsets: set[int] = set()

    def probe(w: Any, b: float, X: Any, Y: Any) -> Gradients:
        offsets.add(X.ctypes.data % 64)
        return REGISTRY["fully_vectorized"].propagate(w, b, X, Y)

    registry = {**REGISTRY, "probe": Implementation(name="probe", propagate=probe, summary="says where X starts")}
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)  # not tested here
    # Sizes whose X the allocator would put at several offsets: 8 bytes to 32 KiB, both layouts and dtypes.
    args = ["run", "--profile", "quick", "--m", "1,8,64", "--n-x", "1,4,64", "--no-lecture", "--threads", "1"]
    args += ["--dtypes", "float64,float32", "--layouts", "C,F", "--implementations", "two_loop,probe"]
    assert _run([*args, "--out", str(tmp_path)], capsys)[0] == 0
    assert offsets == {16}


def test_plot_and_report_read_only_the_table(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plots = tmp_path / "plots"
    assert _run(["plot", "--results", str(finished_run), "--out", str(plots)], capsys)[0] == 0
    assert {p.suffix for p in plots.iterdir()} == {".png", ".svg"}
    assert (plots / "speedup_heatmap.png").is_file() and (plots / "time_vs_m.svg").is_file()
    assert (
        _run(
            [
                "report",
                "--results",
                str(finished_run / "results.csv"),
                "--out",
                str(tmp_path),
                "--plots",
                str(plots),
            ],
            capsys,
        )[0]
        == 0
    )
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Verdicts" in report and "plots/speedup_heatmap.png" in report


BAD_ARGS = {
    "unknown implementation": (
        ["run", "--implementations", "two_loop,nope"],
        "unknown implementation 'nope'",
    ),
    "unknown profile": (["run", "--profile", "huge"], "invalid choice"),
    "zero size": (["run", "--m", "0"], "sizes must be positive"),
    "text size": (["run", "--n-x", "ten"], "'ten' is not an integer"),
    "zero threads": (["run", "--threads", "0"], "positive integer or 'all'"),
    "word threads": (["run", "--threads", "many"], "positive integer or 'all'"),
    "unknown dtype": (["run", "--dtypes", "float16"], "unknown dtype"),
    "negative seed": (["run", "--seed", "-1"], "seed must be a non-negative integer"),
    "no subcommand": ([], "required"),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arguments_are_one_line_and_exit_2(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args, message = BAD_ARGS[case]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_files_are_one_line_and_leave_results_untouched(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(finished_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text("implementation,m\nx,notanumber\n")
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\xff\x00 not a csv")
    cases = [
        (["run", *TINY, "--out", str(blocker / "sub")], "cannot write to output folder"),
        (["plot", "--results", str(tmp_path / "missing")], "no results file"),
        (["plot", "--results", str(corrupt), "--out", str(tmp_path)], "corrupt results file"),
        (["report", "--results", str(garbage), "--out", str(tmp_path)], "corrupt results file"),
        (["run", *TINY, "--resume", "--out", str(tmp_path / "empty")], "no earlier results"),
        (["run", *TINY, "--resume", "--seed", "1", "--out", str(finished_run)], "seed"),
        (["plot", "--from-pytest-json", str(corrupt)], "corrupt pytest-benchmark file"),
    ]
    for args, message in cases:
        code, err = _run(args, capsys)
        assert code == 2, args
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _digest(finished_run) == before


def test_resume_retimes_nothing_already_measured(
    finished_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "resumed"
    out.mkdir()
    for name in ("results.csv", "metadata.json"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    calls: list[Any] = []
    original = bench.measure.runner._Sweep.time_group

    def counting(self: bench.measure.runner._Sweep, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(bench.measure.runner._Sweep, "time_group", counting)
    code, err = _run(["run", *TINY, "--threads", "1,all", "--resume", "--out", str(out)], capsys)
    assert code == 0 and calls == [], err
    before = pd.read_csv(finished_run / "results.csv")
    after = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(before, after)


def test_ctrl_c_keeps_finished_rows_and_resume_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = bench.measure.runner._Sweep.time_group
    calls = {"n": 0}

    def interrupting(self: bench.measure.runner._Sweep, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # the third group of rows: two groups of the first cell are finished
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(bench.measure.runner._Sweep, "time_group", interrupting)
    code, err = _run(["run", *TINY, *IN_PROCESS, "--out", str(tmp_path)], capsys)
    assert code == 130 and "--resume" in err
    partial = pd.read_csv(tmp_path / "results.csv")
    assert len(partial) > 0 and (partial["m"] * partial["n_x"] == 1).all()
    assert json.loads((tmp_path / "metadata.json").read_text())["complete"] is False

    monkeypatch.setattr(bench.measure.runner._Sweep, "time_group", original)
    code, err = _run(["run", *TINY, *IN_PROCESS, "--resume", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    full = pd.read_csv(tmp_path / "results.csv")
    # The canary's quiet level is the run's, so rows measured before the interruption are judged against
    # every canary round of the finished run: canary_ratio (and so unstable) may move, the times may not.
    judged = ["canary_ratio", "unstable", "reason"]  # reason: "far off its neighbours" is judged too
    pd.testing.assert_frame_equal(full.head(len(partial)).drop(columns=judged), partial.drop(columns=judged))
    assert len(full) > len(partial) and not full.duplicated(["implementation", "m", "n_x", "layout", "threads"]).any()


def _broken_propagate(w: Any, b: float, X: Any, Y: Any) -> Gradients:
    grads = REGISTRY["fully_vectorized"].propagate(w, b, X, Y)
    return Gradients(dw=grads.dw * 1.01, db=grads.db, cost=grads.cost)


def test_gate_marks_a_wrong_implementation_and_the_run_goes_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = Implementation(name="broken", propagate=_broken_propagate, summary="wrong on purpose")
    registry = {**REGISTRY, "broken": broken}
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)  # not tested here
    args = ["run", *TINY, "--threads", "1", "--implementations", "two_loop,broken", "--out", str(tmp_path)]
    code, err = _run(args, capsys)
    assert code == 1
    assert "1 implementation(s) failed the check" in err and err.strip().splitlines()[-1].endswith("broken")
    frame = load_results(tmp_path)
    wrong = frame[frame["implementation"] == "broken"]
    assert set(wrong["status"]) == {"failed_check"} and wrong["median_s"].isna().all()
    assert wrong["reason"].str.contains("broken disagrees with fully_vectorized at m=1, n_x=1").all()
    baseline = frame[frame["implementation"] == "two_loop"]
    assert len(wrong) == len(baseline) == 8, "every planned row of the failing implementation is recorded"
    assert set(baseline["status"]) == {"ok"}


def test_cut_off_and_memory_skips_are_recorded_not_invented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        bench.measure.runner, "predict_call_s", lambda history, m, n_x, **_: 99.0 if m * n_x >= 32 else None
    )
    code, _ = _run(
        [
            "run",
            *TINY,
            "--m",
            "1,8",
            "--n-x",
            "1,4",
            "--implementations",
            "numba_loop",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0
    frame = pd.read_csv(tmp_path / "results.csv")
    skipped = frame[frame["status"] == "skipped_budget"]
    assert set(zip(skipped["m"], skipped["n_x"], strict=True)) == {(8, 4)}
    assert skipped["median_s"].isna().all() and (skipped["predicted_s"] == 99.0).all()

    class Tiny:
        available = 1
        total = 2**30

    monkeypatch.setattr(bench.measure.runner, "predict_call_s", lambda history, m, n_x, **_: None)
    monkeypatch.setattr(psutil, "virtual_memory", Tiny)
    code, _ = _run(["run", *TINY, "--implementations", "numba_loop", "--out", str(tmp_path / "mem")], capsys)
    frame = pd.read_csv(tmp_path / "mem" / "results.csv")
    assert code == 0 and set(frame["status"]) == {"skipped_memory"} and frame["median_s"].isna().all()


def test_module_entry_point_and_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    for option in (
        "--profile",
        "--implementations",
        "--m",
        "--n-x",
        "--threads",
        "--out",
        "--resume",
    ):
        assert option in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "plot", "--results", "/nonexistent/x.csv"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
