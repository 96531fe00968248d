"""The tidy results table: one row per implementation and cell, written safely, read by plots and report.

Measuring writes this table and nothing else; plots and the report read only this table
and the metadata beside it, so they can be redrawn without timing anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.base.errors import BenchError
from bench.base.records import KEY, Cell
from implementations import BASELINE

RESULTS_CSV = "results.csv"
METADATA_JSON = "metadata.json"
LECTURE_CSV = "lecture.csv"
ROUNDS_CSV = "rounds.csv"  # every timed round of every row, and which pass it belonged to
CANARY_CSV = "canary.csv"  # the canary workload timed in every round: the machine's speed through the run
ROOFS_CSV = "roofs.csv"  # a one-pass read of X timed beside the kernels, in every round of each cell out of cache
SPEEDUPS_CSV = "speedups.csv"  # speedups from paired rounds, with intervals; `uncertain` cells
PARTIAL_SUFFIX = ".partial"

STATUS_OK = "ok"
STATUS_SKIPPED_BUDGET = "skipped_budget"
STATUS_SKIPPED_MEMORY = "skipped_memory"
STATUS_SKIPPED_UNAVAILABLE = "skipped_unavailable"  # a package it needs is not installed; `reason` says which
STATUS_FAILED_CHECK = "failed_check"  # wrong answer, an exception or a changed input; `reason` says what, not timed
STATUSES = (STATUS_OK, STATUS_SKIPPED_BUDGET, STATUS_SKIPPED_MEMORY, STATUS_SKIPPED_UNAVAILABLE, STATUS_FAILED_CHECK)


@dataclass(frozen=True)
class Row(Cell):
    """One implementation on one cell, and what was measured. Times are seconds per propagate call; empty if skipped."""

    status: str
    median_s: float | None = None
    iqr_s: float | None = None
    min_s: float | None = None
    rounds: int | None = None
    loops: int | None = None
    compile_s: float | None = None
    predicted_s: float | None = None  # the cut-off's prediction, made before timing
    bytes_x: int | None = None  # bytes of X read per step (the one-pass minimum)
    gbps: float | None = None  # bytes_x / median_s / 1e9
    bw_fraction: float | None = None  # gbps / measured read bandwidth at this thread count
    reason: str | None = None  # why a row is not ok, in a few words
    passes: int | None = None  # visits of the runner to this row's cell: more than 1 when it was re-measured
    canary_ratio: float | None = None  # the canary in this row's counted rounds, over its quiet level in the run
    unstable: bool = False  # measured while the machine was unstable (see bench.measure.estimates)
    # The way of stepping the set-up kept where it timed several on this X (numba_fused.PLANS);
    # "blocks+rows" when the set-ups of a re-measured row kept different ones. Empty elsewhere.
    plan: str | None = None
    setup_s: float | None = None  # the set-up (conversion, and any timing of plans or compiling it does), untimed


COLUMNS = tuple(f.name for f in fields(Row))
# Columns added after the first release: a table written before them is still read, with them empty.
OPTIONAL_COLUMNS = ("seed", "reason", "passes", "canary_ratio", "unstable", "plan", "setup_s")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class RowWriter:
    """Appends rows to `<csv>.partial` as each cell finishes; finish() renames it into place.

    The finished file only ever replaces an existing one through os.replace, which is atomic
    on POSIX, so a crash or Ctrl-C never leaves a half-written results.csv behind.
    """

    def __init__(self, path: Path, columns: tuple[str, ...] = COLUMNS) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self.columns = columns
        self._file = self.partial.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(columns)
        self.count = 0

    def write(self, row: Mapping[str, Any] | Row) -> None:
        record = asdict(row) if isinstance(row, Row) else dict(row)
        self._writer.writerow([_cell(record.get(c)) for c in self.columns])
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += 1

    def finish(self) -> Path:
        self._file.close()
        os.replace(self.partial, self.path)
        return self.path

    def abandon(self) -> Path:
        """Close without replacing the finished file; the partial file stays for inspection."""
        self._file.close()
        return self.partial


def write_text_atomic(path: Path, text: str) -> None:
    """Write a uniquely named sibling, then rename it over `path` (atomic on POSIX).

    The one way every output file is written: a reader sees the old file or the new one, never
    half of either, and two writers on one folder never share a temporary file.
    """
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=path.name + ".", suffix=PARTIAL_SUFFIX, delete=False
    ) as handle:
        handle.write(text)
    # NamedTemporaryFile makes the file readable by its owner only; a results file is for everyone.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)
    try:
        os.replace(handle.name, path)
    except OSError:
        Path(handle.name).unlink(missing_ok=True)
        raise


def rows_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Records as CSV text in `columns` order: floats in full precision, None and NaN empty (as RowWriter)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    """A table as CSV, all or nothing (floats in full precision, as RowWriter writes them)."""
    write_text_atomic(path, frame.to_csv(index=False, float_format="%.17g"))


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_json_list_atomic(path: Path, data: list[Mapping[str, Any]]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and prove a file can be written there, or raise BenchError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"cannot write to output folder {path}: {exc.strerror or exc}") from None
    return path


def results_path(path: Path) -> Path:
    """A run's CSV, given the CSV itself or the folder holding it."""
    csv_path = path / RESULTS_CSV if path.is_dir() else path
    if not csv_path.is_file():
        raise BenchError(f"no results file at {csv_path}")
    return csv_path


def _read_table(csv_path: Path, required: Iterable[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise BenchError(f"corrupt results file {csv_path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BenchError(f"corrupt results file {csv_path}: missing columns {', '.join(missing)}")
    return frame


INT_COLUMNS = ("m", "n_x", "threads")
FLOAT_COLUMNS = (
    "median_s",
    "iqr_s",
    "min_s",
    "compile_s",
    "predicted_s",
    "gbps",
    "bw_fraction",
    "canary_ratio",
    "setup_s",
)


def read_results_csv(csv_path: Path, required: Iterable[str]) -> pd.DataFrame:
    """A results table as written by any version of the suite: sizes as int, times as float, names as str.

    Only `required` columns must be there; a cell that is not a number is a one-line BenchError.
    """
    frame = _read_table(csv_path, required)
    try:
        for column in [c for c in INT_COLUMNS if c in frame.columns]:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(int)
        for column in [c for c in FLOAT_COLUMNS if c in frame.columns]:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"corrupt results file {csv_path}: {exc}") from None
    for column in [c for c in ("implementation", "dtype", "layout") if c in frame.columns]:
        frame[column] = frame[column].astype(str)
    return frame


def load_results(path: Path) -> pd.DataFrame:
    """The tidy table, checked: known statuses, positive sizes, and a time on every ok row."""
    csv_path = results_path(path)
    frame = read_results_csv(csv_path, [c for c in COLUMNS if c not in OPTIONAL_COLUMNS])
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    bad_status = set(frame["status"].astype(str)) - set(STATUSES)
    if bad_status:
        raise BenchError(f"corrupt results file {csv_path}: unknown status {sorted(bad_status)[0]!r}")
    frame["unstable"] = frame["unstable"].map(_truth).astype(bool)
    ok = frame["status"] == STATUS_OK
    if (frame.loc[ok, "median_s"].isna() | (frame.loc[ok, "median_s"] <= 0)).any():
        raise BenchError(f"corrupt results file {csv_path}: an 'ok' row has no positive median_s")
    if ((frame["m"] < 1) | (frame["n_x"] < 1)).any():
        raise BenchError(f"corrupt results file {csv_path}: sizes must be positive")
    return with_speedups(frame, load_speedups(csv_path))


# Columns with_speedups adds to the table: each row's paired speedup over the two-loop baseline.
SPEEDUP_FIELDS = ("speedup", "speedup_low", "speedup_high", "uncertain")


def with_speedups(frame: pd.DataFrame, speedups: pd.DataFrame | None) -> pd.DataFrame:
    """The table with each row's speedup over BASELINE from paired rounds, its interval and `uncertain`.

    Rows without a paired estimate (a run made before speedups.csv, rows on several threads,
    rows of another dtype than the baseline's) get NaN and uncertain False; analysis then
    falls back to the ratio of medians.
    """
    frame = frame.drop(columns=[c for c in SPEEDUP_FIELDS if c in frame.columns])
    if speedups is None or speedups.empty:
        return frame.assign(speedup=math.nan, speedup_low=math.nan, speedup_high=math.nan, uncertain=False)
    over = speedups[speedups["baseline"] == BASELINE]
    over = over[[*KEY, "speedup", "ci_low", "ci_high", "uncertain"]].rename(
        columns={"ci_low": "speedup_low", "ci_high": "speedup_high"}
    )
    merged = frame.merge(over.drop_duplicates(list(KEY)), on=list(KEY), how="left")
    merged["uncertain"] = merged["uncertain"].map(_truth).astype(bool)
    return merged


def _truth(value: Any) -> bool:
    """A CSV cell read as a boolean: True, 'True', 'true' and 1 are true; empty is false."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def load_beside(path: Path, name: str, required: Iterable[str]) -> pd.DataFrame | None:
    """A table written beside a run's results.csv (rounds, canary, speedups), or None if the run has none."""
    table = results_path(path).with_name(name)
    if not table.is_file():
        return None
    frame = _read_table(table, required)
    try:
        for column in ("m", "n_x", "threads", "pass", "round", "pairs"):
            if column in frame.columns:
                frame[column] = pd.to_numeric(frame[column], errors="raise").astype(int)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"corrupt file {table}: {exc}") from None
    for column in ("speedup", "ci_low", "ci_high", "ci_level", "threshold", "seconds", "stamp_s"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in ("paired", "unstable", "uncertain"):
        if column in frame.columns:
            frame[column] = frame[column].map(_truth).astype(bool)
    return frame


def load_speedups(path: Path) -> pd.DataFrame | None:
    """The run's speedups.csv (paired-round estimates with intervals), or None for a run made before it."""
    return load_beside(path, SPEEDUPS_CSV, ("implementation", "baseline", "m", "n_x", "speedup", "ci_low", "ci_high"))


def load_metadata(path: Path) -> dict[str, Any]:
    """The metadata JSON beside a results CSV (empty dict if there is none)."""
    csv_path = results_path(path)
    meta_path = csv_path.with_name(METADATA_JSON)
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt metadata file {meta_path}: {exc}") from None
    if not isinstance(data, dict):
        raise BenchError(f"corrupt metadata file {meta_path}: not a JSON object")
    return data


def load_lecture(path: Path) -> pd.DataFrame | None:
    """The lecture demo's table beside a results CSV, if the run measured it."""
    lecture_path = results_path(path).with_name(LECTURE_CSV)
    if not lecture_path.is_file():
        return None
    return _read_table(lecture_path, ("variant", "median_s"))
