"""The run folder: an earlier run is kept, one writer at a time, other runs are named, impossible sizes refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

import bench.measure.runner
from bench.cli import main
from bench.measure.rundir import HOLDER_NAME, REGISTRY_ENV, Holder, keep_previous, other_runs
from bench.measure.runner import RunConfig, RunSummary
from tests.helpers import flat_memory

REPO = Path(__file__).resolve().parent.parent
TINY = ["--profile", "quick", "--m", "1,8", "--n-x", "1,4", "--no-lecture", "--threads", "1"]
FAST = [*TINY, "--implementations", "two_loop,fully_vectorized"]
# Holds the lock on the folder given as argument until its stdin closes.
HOLD_LOCK = """
import sys
from pathlib import Path
from bench.measure.rundir import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine-wide registry of this test's own, inherited by the processes it starts."""
    registry = tmp_path / "registry"
    monkeypatch.setenv(REGISTRY_ENV, str(registry))
    return registry


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder`, hidden ones and subfolders included."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _earlier_run(folder: Path, commit: str = "abc1234", date: str = "2024-01-02T03:04:05+00:00") -> dict[str, str]:
    """A finished run's files, made by hand; returns their digests."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.csv").write_text("implementation,m\ntwo_loop,1\n")
    (folder / "metadata.json").write_text(json.dumps({"machine": {"date": date, "git_commit": commit}}))
    (folder / "lecture.csv").write_text("variant,median_s\nloop,0.4\n")
    (folder / "REPORT.md").write_text("# report\n")
    (folder / "verdicts.json").write_text("[]\n")
    names = ("results.csv", "metadata.json", "lecture.csv", "REPORT.md", "verdicts.json")
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


def _fake_run(config: RunConfig) -> RunSummary:
    """Stands in for the timing, for tests about what happens around it."""
    return RunSummary(results=config.out / "results.csv", timed=1)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock on tmp_path/held (an earlier run inside)."""
    folder = tmp_path / "held"
    _earlier_run(folder)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        yield proc, folder
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_new_run_keeps_the_earlier_one_under_previous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "local"
    before = _earlier_run(out)
    (out / "notes.txt").write_text("mine")  # not a run file: stays
    monkeypatch.setattr(bench.measure.runner, "run", _fake_run)
    assert main(["run", *FAST, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    kept = out / "previous" / "20240102T030405Z_abc1234"
    assert f"kept the earlier run in {out}: moved it to {kept}" in err.splitlines()
    assert _digest(kept) == before
    assert (out / "notes.txt").read_text() == "mine" and not (out / "results.csv").exists()

    # A second earlier run with the same stamp gets its own folder; nothing is overwritten.
    again = _earlier_run(out)
    assert keep_previous(out) == out / "previous" / "20240102T030405Z_abc1234-2"
    assert _digest(kept) == before and _digest(out / "previous" / "20240102T030405Z_abc1234-2") == again


def test_resume_continues_in_place_and_an_empty_folder_moves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.measure.runner, "run", _fake_run)
    out = tmp_path / "local"
    before = _earlier_run(out)
    assert main(["run", *FAST, "--resume", "--out", str(out)]) == 0
    assert not (out / "previous").exists()
    assert {name: d for name, d in _digest(out).items() if not name.startswith(".")} == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "README.md").write_text("not a run")
    assert main(["run", *FAST, "--out", str(fresh)]) == 0
    assert not (fresh / "previous").exists() and (fresh / "README.md").is_file()
    assert "kept the earlier run" not in capsys.readouterr().err


def test_two_real_runs_leave_two_comparable_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "local"
    assert main(["run", *FAST, "--out", str(out)]) == 0
    first = (out / "results.csv").read_bytes()
    assert main(["run", *FAST, "--out", str(out)]) == 0
    kept = list((out / "previous").iterdir())
    assert len(kept) == 1 and (kept[0] / "results.csv").read_bytes() == first
    assert {p.name for p in kept[0].iterdir()} == {
        "results.csv",
        "metadata.json",
        "rounds.csv",
        "canary.csv",
        "roofs.csv",
        "speedups.csv",
    }
    capsys.readouterr()
    assert main(["compare", str(out), str(kept[0]), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "COMPARE.md").is_file()


def test_a_second_run_into_a_held_folder_exits_2_naming_the_holder_and_touches_nothing(
    holder: tuple[subprocess.Popen[str], Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, folder = holder
    before = _digest(folder)
    recorded = Holder.read(folder / HOLDER_NAME)
    assert recorded is not None and recorded.pid == proc.pid

    def no_probe(*args: object) -> float:
        raise AssertionError("the memory sweep ran while another run held the folder")

    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", no_probe)
    for extra in ([], ["--resume"]):
        code = main(["run", *FAST, *extra, "--out", str(folder)])
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"another run is writing to {folder} (pid {proc.pid} on " in err and "-c" in err
        assert _digest(folder) == before
    assert proc.poll() is None  # the holder was left alone


def test_a_run_warns_when_another_benchmark_is_running(
    holder: tuple[subprocess.Popen[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, _ = holder
    monkeypatch.setattr(bench.measure.runner, "run", _fake_run)
    assert main(["run", *FAST, "--out", str(tmp_path / "elsewhere")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "another benchmark is running" in line]
    assert len(warnings) == 1 and f"pid {proc.pid} " in warnings[0]


def test_a_killed_holder_leaves_nothing_that_blocks(
    tmp_path: Path, own_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a killed run leaves: its sidecar and its registry entry; the OS has released its lock.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    stale = Holder(
        pid=pid, host="vm", started="2024-01-01T00:00:00+00:00", command="python -m bench run", create_time=1.0
    )
    out = tmp_path / "local"
    out.mkdir()
    (out / HOLDER_NAME).write_text(json.dumps(stale.__dict__))
    own_registry.mkdir()
    (own_registry / f"{pid}.json").write_text(json.dumps(stale.__dict__))
    assert other_runs() == [] and not (own_registry / f"{pid}.json").exists()
    monkeypatch.setattr(bench.measure.runner, "run", _fake_run)
    assert main(["run", *FAST, "--out", str(out)]) == 0
    assert "another benchmark is running" not in capsys.readouterr().err
    assert not (out / HOLDER_NAME).exists()


@pytest.mark.parametrize("existing", [False, True])
def test_sizes_that_leave_no_cell_exit_2_before_anything_is_written(
    tmp_path: Path, existing: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "local"
    before = _earlier_run(out) if existing else {}
    code = main(["run", "--profile", "quick", "--m", "99999999999", "--n-x", "99999", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no cell left to time" in err and "134,217,728" in err
    assert (_digest(out) == before) if existing else not out.exists()


def test_a_run_that_times_nothing_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoMemory:
        available = 1
        total = 2**30

    monkeypatch.setattr(psutil, "virtual_memory", NoMemory)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    assert main(["run", *FAST, "--out", str(tmp_path)]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("done: 0 rows timed (nothing timed: 16 skipped for memory"), last
    assert set(pd.read_csv(tmp_path / "results.csv")["status"]) == {"skipped_memory"}


def test_the_registry_sees_only_live_runs(own_registry: Path) -> None:
    me = Holder.me(Path("x"))
    own_registry.mkdir()
    # This process is never "another run"; a live process with another pid is.
    (own_registry / f"{me.pid}.json").write_text(json.dumps(me.__dict__))
    parent = psutil.Process(os.getppid())
    live = Holder(os.getppid(), "vm", "now", "python -m bench run", "y", parent.create_time())
    (own_registry / f"{live.pid}.json").write_text(json.dumps(live.__dict__))
    reused = Holder(os.getppid(), "vm", "now", "python -m bench run", "z", parent.create_time() - 100)
    (own_registry / "reused.json").write_text(json.dumps(reused.__dict__))
    assert other_runs() == [live]
    assert not (own_registry / "reused.json").exists()  # a reused pid is not the run that registered
