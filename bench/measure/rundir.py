"""A run's output folder: one writer at a time, and no earlier run ever overwritten.

A run locks its folder (filelock, an OS lock released even when the process is killed) and
writes who holds it into a sidecar file, so a second run into the same folder can name the
holder and leave without touching anything. A new run into a folder that holds an earlier
run first moves that run aside into `previous/<UTC date-time>_<commit>/`. Every run also
registers itself in a machine-wide folder under the system temp dir, so that a run can warn
when another one is timing at the same moment (their timings disturb each other).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from filelock import FileLock, Timeout

from bench.base.errors import BenchError
from bench.base.results import (
    LECTURE_CSV,
    METADATA_JSON,
    PARTIAL_SUFFIX,
    RESULTS_CSV,
    STATUS_FAILED_CHECK,
    STATUS_SKIPPED_BUDGET,
    STATUS_SKIPPED_MEMORY,
    STATUS_SKIPPED_UNAVAILABLE,
    ensure_writable_dir,
    write_json_atomic,
)

LOCK_NAME = ".bench-run.lock"
HOLDER_NAME = ".bench-run.holder.json"
PREVIOUS_DIR = "previous"
# A folder holds a run when one of these is there (a killed run leaves only the .partial).
RUN_MARKERS = (RESULTS_CSV, RESULTS_CSV + PARTIAL_SUFFIX, METADATA_JSON, LECTURE_CSV, LECTURE_CSV + PARTIAL_SUFFIX)
# What belongs to a run and moves aside with it: its tables, metadata and reports.
RUN_FILE_PATTERNS = ("*.csv", "*.json", "*.md", "*.html", "*" + PARTIAL_SUFFIX)
# The machine-wide registry of running benchmarks; the variable lets tests use their own.
REGISTRY_ENV = "LOGREG_VECBENCH_RUNS_DIR"
REGISTRY_DIRNAME = "logreg-vecbench-runs"


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder: written beside the lock while it is held."""

    pid: int
    host: str
    started: str
    command: str
    out: str = ""
    create_time: float = 0.0  # the process's start time, so a reused pid is not taken for a live run

    @classmethod
    def me(cls, out: Path) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=_command_line(),
            out=str(out),
            create_time=_create_time(os.getpid()) or 0.0,
        )

    def describe(self) -> str:
        command = " ".join(self.command.split())  # one line, whatever the command held
        command = command if len(command) <= 200 else command[:197] + "..."
        return f"pid {self.pid} on {self.host}, started {self.started}: {command}"

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        """The holder recorded in `path`, or None if it is missing or unreadable (e.g. being written)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                started=str(data["started"]),
                command=str(data["command"]),
                out=str(data.get("out", "")),
                create_time=float(data.get("create_time", 0.0)),
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None


def _command_line() -> str:
    """This process's command line as typed (`python -m bench run ...`), not as sys.argv rewrote it."""
    try:
        parts = psutil.Process().cmdline()
    except (psutil.Error, OSError):
        parts = []
    parts = parts or [sys.executable, *sys.argv]
    return shlex.join([Path(parts[0]).name, *parts[1:]])


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def _alive(holder: Holder) -> bool:
    created = _create_time(holder.pid)
    return created is not None and abs(created - holder.create_time) < 1.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data)


def registry_dir() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / REGISTRY_DIRNAME)


def other_runs() -> list[Holder]:
    """Runs of this suite alive on this machine now, other than this process; stale entries are removed."""
    found = []
    try:
        entries = sorted(registry_dir().glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        holder = Holder.read(entry)
        if holder is None or holder.pid == os.getpid():
            continue
        if _alive(holder):
            found.append(holder)
        else:
            with suppress(OSError):  # a run killed before it could unregister
                entry.unlink()
    return found


@contextmanager
def _registered(holder: Holder) -> Iterator[None]:
    """List this run in the machine-wide registry while it runs; a registry that cannot be written is skipped."""
    entry = registry_dir() / f"{holder.pid}.json"
    try:
        if not entry.parent.is_dir():
            entry.parent.mkdir(parents=True, exist_ok=True)
            with suppress(OSError):  # shared like /tmp itself, so every user's runs can register
                entry.parent.chmod(0o1777)
        _write_json(entry, asdict(holder))
        registered = True
    except OSError:
        registered = False  # the warning about other runs is a courtesy; never fail a run over it
    try:
        yield
    finally:
        if registered:
            with suppress(OSError):
                entry.unlink()


def benchmark_processes() -> list[str]:
    """pytest-benchmark runs that time on this machine now (they do not take the registry)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with suppress(psutil.Error, OSError, TypeError):
            cmdline = proc.info["cmdline"] or []
            if proc.info["pid"] != os.getpid() and "--benchmark-only" in cmdline:
                found.append(f"pid {proc.info['pid']}: {shlex.join(cmdline)}")
    return found


@contextmanager
def locked(out: Path) -> Iterator[Holder]:
    """Hold `out` for one run, or raise BenchError naming the process that holds it.

    Creates `out` if needed; nothing else in it is touched before the lock is held.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    lock = FileLock(out / LOCK_NAME, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        holder = Holder.read(out / HOLDER_NAME)
        who = holder.describe() if holder else f"another process holds {out / LOCK_NAME}"
        raise BenchError(f"another run is writing to {out} ({who}); wait for it or choose another --out") from None
    except OSError as exc:
        raise BenchError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    holder_path = out / HOLDER_NAME
    try:
        ensure_writable_dir(out)  # the lock file may be writable in a folder that is not
        me = Holder.me(out)
        try:
            _write_json(holder_path, asdict(me))
        except OSError as exc:
            raise BenchError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
        with _registered(me):
            yield me
    finally:
        with suppress(OSError):
            holder_path.unlink()
        lock.release()


def _run_stamp(out: Path) -> str:
    """'<UTC date-time>_<commit>' of the run in `out`, from its metadata, else from its files' age."""
    meta: dict[str, Any] = {}
    with suppress(OSError, ValueError):
        loaded = json.loads((out / METADATA_JSON).read_text(encoding="utf-8"))
        meta = loaded.get("machine", {}) if isinstance(loaded, dict) else {}
    when: dt.datetime | None = None
    with suppress(TypeError, ValueError):
        when = dt.datetime.fromisoformat(str(meta.get("date")))
    if when is None:
        mtimes = [(out / name).stat().st_mtime for name in RUN_MARKERS if (out / name).is_file()]
        when = dt.datetime.fromtimestamp(min(mtimes, default=0.0), dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    commit = re.sub(r"[^A-Za-z0-9._-]", "", str(meta.get("git_commit") or "unknown")) or "unknown"
    return f"{when.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}_{commit}"


def run_files(out: Path) -> list[Path]:
    """The files of the run in `out` (none if it holds no run); hidden files such as the lock stay."""
    if not any((out / name).is_file() for name in RUN_MARKERS):
        return []
    files = {p for pattern in RUN_FILE_PATTERNS for p in out.glob(pattern) if p.is_file()}
    return sorted(p for p in files if not p.name.startswith("."))


def keep_previous(out: Path) -> Path | None:
    """Move the run in `out` aside into out/previous/<stamp>/ and return that folder (None if no run)."""
    files = run_files(out)
    if not files:
        return None
    stamp = _run_stamp(out)
    target = out / PREVIOUS_DIR / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = out / PREVIOUS_DIR / f"{stamp}-{suffix}"
    try:
        target.mkdir(parents=True)
        for path in files:
            os.replace(path, target / path.name)
    except OSError as exc:
        raise BenchError(f"cannot move the earlier run in {out} aside to {target}: {exc.strerror or exc}") from None
    return target


@contextmanager
def claimed(out: Path, *, resume: bool) -> Iterator[None]:
    """Everything a run does to its folder before timing: lock, warn of other runs, keep the earlier run."""
    with locked(out):
        for other in other_runs():
            print(
                f"warning: another benchmark is running on this machine ({other.describe()}); "
                "both runs' timings will be disturbed",
                file=sys.stderr,
            )
        for other_process in benchmark_processes():
            print(
                f"warning: a pytest-benchmark run is timing on this machine ({other_process}); "
                "both runs' timings will be disturbed",
                file=sys.stderr,
            )
        if not resume:
            moved = keep_previous(out)
            if moved is not None:
                print(f"kept the earlier run in {out}: moved it to {moved}", file=sys.stderr)
        yield


def why_nothing_timed(results_csv: Path, reused: int) -> str:
    """Why a finished run timed no row, from what its table recorded."""
    try:
        status = pd.read_csv(results_csv, usecols=["status"])["status"].astype(str)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return "no row was recorded"
    memory = int((status == STATUS_SKIPPED_MEMORY).sum())
    budget = int((status == STATUS_SKIPPED_BUDGET).sum())
    reasons = []
    if memory:
        reasons.append(f"{memory} skipped for memory (their data would not fit in the memory free now)")
    if budget:
        reasons.append(f"{budget} skipped by the time cut-off")
    unavailable = int((status == STATUS_SKIPPED_UNAVAILABLE).sum())
    if unavailable:
        reasons.append(f"{unavailable} not run for a missing package (see the reason column)")
    failed = int((status == STATUS_FAILED_CHECK).sum())
    if failed:
        reasons.append(f"{failed} failed the check (see the reason column)")
    if reused:
        reasons.append(f"{reused} already measured before (--resume)")
    return "; ".join(reasons) if reasons else "no row was recorded"
