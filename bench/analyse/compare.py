"""`python -m bench compare`: runs side by side, from any machine or any version of the code.

The first run is the one the others are compared with (before -> after, or "my CPU" against
the reference). Rows are aligned on (implementation, m, n_x, dtype, layout, threads); only
rows measured in every run are compared, and how many were left out is said. A time that
changed by more than the IQR of each run's rounds in that row counts as beyond noise.

Writes COMPARE.md, every one of its tables as CSV beside it, and two plots (PNG and SVG).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.analyse.reproduce import reproduce_summary, rules_compared, speedup_pairs
from bench.analyse.verdicts import VERDICTS_JSON, claim_verdicts
from bench.analyse.views import claims_table, headline, implementation_order
from bench.base.constants import COURSE_SHAPE
from bench.base.errors import BenchError
from bench.base.machine import machine_line
from bench.base.records import KEY
from bench.base.results import STATUS_OK, load_metadata, load_results, read_results_csv, results_path, write_csv_atomic
from implementations import BASELINE

# Columns a results table needs to be compared; `status` is optional (rows with a time count as ok).
NEEDED = (*KEY, "median_s", "iqr_s")
# An implementation "got slower" (or faster) when most of its rows moved beyond noise that way.
MAJORITY = 0.5


@dataclass
class Run:
    """One run to compare: its ok rows (every column typed) and metadata."""

    label: str
    folder: Path
    rows: pd.DataFrame
    meta: dict[str, Any]


@dataclass
class Comparison:
    """Every table of the comparison, as data; `markdown()` renders them."""

    runs: list[Run]
    common: pd.DataFrame  # one row per aligned key: KEY columns only
    left_out: dict[str, int]  # run label -> its ok rows not measured in every run
    claims: pd.DataFrame  # long: run + claims_table columns
    pairs: pd.DataFrame  # long: run, against, KEY, times, speedups, ratios, noise mark
    by_implementation: pd.DataFrame  # run, against, implementation, ratios, counts, change
    verdicts: pd.DataFrame  # implementation, claimed, run, verdict
    machines: pd.DataFrame  # one row per run: machine, software and run settings
    reproduce: pd.DataFrame  # cell by cell: both speedups with intervals, overlap, spread (reproduce.speedup_pairs)
    reproduce_summary: pd.DataFrame  # per pair of runs and scope: share overlapping, median and worst spread
    rules: pd.DataFrame  # per pair and claim: both rules and whether they reproduce


def _labels(folders: Sequence[Path]) -> list[str]:
    """Short unique names: the folder name, with more of the path only where names clash."""
    parts = [folder.resolve().parts for folder in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label}#{i + 1}" for i, label in enumerate("/".join(p[-1:]) for p in parts)]


def load_run(path: Path, label: str = "") -> Run:
    """A run's ok rows, read leniently: a table from an older version of the suite needs only NEEDED."""
    csv_path = results_path(path)
    frame = read_results_csv(csv_path, ())
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise BenchError(
            f"cannot compare {csv_path}: it has no {', '.join(missing)} column(s) "
            f"(written by an older version of the suite?); compare needs {', '.join(NEEDED)}"
        )
    ok = frame["status"].astype(str) == STATUS_OK if "status" in frame.columns else frame["median_s"].notna()
    rows = frame[ok & (frame["median_s"] > 0)].drop_duplicates(list(KEY), keep="last").copy()
    rows["status"] = STATUS_OK
    rows["speedup"] = _speedups(rows)
    return Run(label=label or csv_path.parent.name, folder=csv_path.parent, rows=rows, meta=load_metadata(csv_path))


def _speedups(rows: pd.DataFrame) -> pd.Series:
    """Each row's speedup over the two-loop baseline at the same m, n_x and layout (float64, 1 thread preferred)."""
    base = rows[rows["implementation"] == BASELINE].copy()
    base["_rank"] = (base["threads"] != 1).astype(int) * 2 + (base["dtype"] != "float64").astype(int)
    base = base.sort_values("_rank").drop_duplicates(["m", "n_x", "layout"])
    lookup = base.set_index(["m", "n_x", "layout"])["median_s"]
    keys = pd.MultiIndex.from_frame(rows[["m", "n_x", "layout"]])
    baseline_s = lookup.reindex(keys).to_numpy(dtype=float)
    return pd.Series(baseline_s / rows["median_s"].to_numpy(dtype=float), index=rows.index)


def _common_keys(runs: list[Run]) -> tuple[pd.DataFrame, dict[str, int]]:
    keys = [pd.MultiIndex.from_frame(run.rows[list(KEY)]) for run in runs]
    common = keys[0]
    for other in keys[1:]:
        common = common.intersection(other)
    if len(common) == 0:
        sizes = ", ".join(f"{run.label}: {len(run.rows)}" for run in runs)
        raise BenchError(
            f"the runs share no measured row (same implementation, m, n_x, dtype, layout and threads); "
            f"rows per run: {sizes}"
        )
    left_out = {run.label: int((~k.isin(common)).sum()) for run, k in zip(runs, keys, strict=True)}
    return common.to_frame(index=False), left_out


def _aligned(run: Run, common: pd.DataFrame) -> pd.DataFrame:
    return common.merge(run.rows, on=list(KEY), how="left")


def _pairs(a: Run, b: Run, common: pd.DataFrame) -> pd.DataFrame:
    """Row by row, run b against run a: times, speedups, their ratios and the noise mark."""
    left = _aligned(a, common)
    right = _aligned(b, common)
    out = common.copy()
    out.insert(0, "against", a.label)
    out.insert(0, "run", b.label)
    out["median_s_a"] = left["median_s"].to_numpy()
    out["iqr_s_a"] = left["iqr_s"].to_numpy()
    out["median_s_b"] = right["median_s"].to_numpy()
    out["iqr_s_b"] = right["iqr_s"].to_numpy()
    out["speedup_a"] = left["speedup"].to_numpy()
    out["speedup_b"] = right["speedup"].to_numpy()
    out["time_ratio"] = out["median_s_b"] / out["median_s_a"]
    out["speedup_ratio"] = out["speedup_b"] / out["speedup_a"]
    # Beyond noise: the change is larger than the IQR of each run's rounds (a missing IQR is no evidence).
    noise = np.fmax(out["iqr_s_a"].to_numpy(dtype=float), out["iqr_s_b"].to_numpy(dtype=float))
    diff = (out["median_s_b"] - out["median_s_a"]).to_numpy(dtype=float)
    out["beyond_noise"] = np.abs(diff) > noise
    out["change"] = np.where(out["beyond_noise"], np.where(diff > 0, "slower", "faster"), "")
    return out


def _by_implementation(pairs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rows = []
    for (run, against), group in pairs.groupby(["run", "against"], sort=False):
        for name in [n for n in order if n in set(group["implementation"])]:
            g = group[group["implementation"] == name]
            ratio = g["time_ratio"]
            slower = int((g["change"] == "slower").sum())
            faster = int((g["change"] == "faster").sum())
            median = float(ratio.median())
            if median > 1 and slower > MAJORITY * len(g):
                change = "slower"
            elif median < 1 and faster > MAJORITY * len(g):
                change = "faster"
            else:
                change = "within noise" if slower + faster == 0 else "mixed"
            speedup_ratio = g["speedup_ratio"].dropna()
            rows.append(
                {
                    "run": run,
                    "against": against,
                    "implementation": name,
                    "rows": len(g),
                    "time_ratio_median": median,
                    "time_ratio_min": float(ratio.min()),
                    "time_ratio_max": float(ratio.max()),
                    "speedup_ratio_median": float(speedup_ratio.median()) if not speedup_ratio.empty else math.nan,
                    "slower_beyond_noise": slower,
                    "faster_beyond_noise": faster,
                    "change": change,
                }
            )
    return pd.DataFrame(rows)


def _rule_text(rule: Any) -> str:
    """{"all": [{"variable", "op", "value"}, ...]} as 'm x n_x >= 32,768 and ...'."""
    terms = rule.get("all", []) if isinstance(rule, dict) else []
    parts = []
    for term in terms:
        value = term.get("value")
        shown = f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
        parts.append(f"{str(term.get('variable', '?')).replace('*', ' x ')} {term.get('op', '?')} {shown}")
    return " and ".join(parts) if parts else "every cell"


def _verdict_text(record: dict[str, Any]) -> str:
    # The verdict in words where the run wrote it; else the rule read back from verdicts.json.
    text = str(record.get("verdict") or f"holds where {record.get('rule_text') or _rule_text(record.get('rule'))}")
    if "agree" in record and "cells" in record:
        text += f" ({record['agree']} of {record['cells']} cells agree"
        exceptions = [tuple(e) for e in record.get("exceptions") or []]
        if exceptions:
            shown = ", ".join(f"m={m:,} n_x={n:,}" for m, n in exceptions[:3])
            text += f"; exceptions: {shown}" + (f" and {len(exceptions) - 3} more" if len(exceptions) > 3 else "")
        text += ")"
    return text


def run_verdicts(folder: Path) -> list[dict[str, Any]] | None:
    """Each claim's verdict rule for one run: its verdicts.json, else found now from its table (verdicts.json's format).

    None when neither is available (shown as n/a). The only place that knows the verdicts' format.
    """
    path = folder / VERDICTS_JSON
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else None
    try:
        frame = load_results(folder)
    except BenchError:
        return None  # an older table the verdicts cannot read
    return [verdict.to_json() for verdict in claim_verdicts(frame)]


def _verdicts_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        records = run_verdicts(run.folder)
        if records is None:
            rows.append({"implementation": "", "claimed": math.nan, "run": run.label, "verdict": "n/a"})
            continue
        for record in records:
            rows.append(
                {
                    "implementation": str(record.get("implementation", "?")),
                    "claimed": float(record.get("claimed", math.nan)),
                    "run": run.label,
                    "verdict": _verdict_text(record),
                }
            )
    return pd.DataFrame(rows, columns=["implementation", "claimed", "run", "verdict"])


def _machines(runs: list[Run], left_out: dict[str, int]) -> pd.DataFrame:
    rows = []
    for run in runs:
        machine = run.meta.get("machine", {})
        versions = machine.get("versions", {})
        blas: dict[str, Any] = next((b for b in machine.get("blas", []) if b.get("internal_api")), {})
        rows.append(
            {
                "run": run.label,
                "folder": str(run.folder),
                "machine": machine_line(run.meta),
                "cpu": machine.get("cpu", ""),
                "cores": machine.get("cores", ""),
                "blas": f"{blas.get('internal_api', '')} {blas.get('version') or ''}".strip(),
                "python": machine.get("python", ""),
                "numpy": versions.get("numpy", ""),
                "numba": versions.get("numba", ""),
                "profile": run.meta.get("profile", ""),
                "seed": run.meta.get("seed", ""),
                "commit": machine.get("git_commit", ""),
                "complete": run.meta.get("complete", ""),
                "rows_ok": len(run.rows),
                "rows_left_out": left_out[run.label],
            }
        )
    return pd.DataFrame(rows)


def compare_runs(paths: Sequence[Path]) -> Comparison:
    """Load, align and compare runs; the first is the one the others are compared with."""
    if len(paths) < 2:
        raise BenchError("compare needs at least two runs")
    folders = [results_path(p).parent for p in paths]
    runs = [load_run(p, label) for p, label in zip(paths, _labels(folders), strict=True)]
    common, left_out = _common_keys(runs)
    claims = []
    for run in runs:
        table = claims_table(_aligned(run, common), COURSE_SHAPE)
        table.insert(0, "run", run.label)
        claims.append(table)
    pairs = pd.concat([_pairs(runs[0], run, common) for run in runs[1:]], ignore_index=True)
    order = implementation_order(pd.concat([run.rows for run in runs]))
    first = runs[0]
    reproduce = pd.concat(
        [speedup_pairs(first.folder, run.folder, first.label, run.label) for run in runs[1:]], ignore_index=True
    )
    rules = pd.concat(
        [
            rules_compared(
                run_verdicts(first.folder),
                run_verdicts(run.folder),
                reproduce[reproduce["run"] == run.label],
                (first.label, run.label),
            )
            for run in runs[1:]
        ],
        ignore_index=True,
    )
    return Comparison(
        runs=runs,
        common=common,
        left_out=left_out,
        claims=pd.concat(claims, ignore_index=True),
        pairs=pairs,
        by_implementation=_by_implementation(pairs, order),
        verdicts=_verdicts_table(runs),
        machines=_machines(runs, left_out),
        reproduce=reproduce,
        reproduce_summary=reproduce_summary(reproduce),
        rules=rules,
    )


def slower_than(comparison: Comparison, percent: float) -> list[str]:
    """One sentence per implementation that got more than `percent` slower beyond noise."""
    table = comparison.by_implementation
    bad = table[(table["change"] == "slower") & (table["time_ratio_median"] > 1 + percent / 100)]
    return [
        f"{r['implementation']} is {r['time_ratio_median']:.2f}x as slow in {r['run']} as in {r['against']} "
        f"(median over {r['rows']} rows, {r['slower_beyond_noise']} slower beyond noise; limit +{percent:g}%)"
        for r in _records(bad)
    ]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def default_out(comparison: Comparison) -> Path:
    labels = [re.sub(r"[^A-Za-z0-9._-]+", "-", run.label).strip("-") or "run" for run in comparison.runs]
    return Path("results") / "compare" / "_vs_".join(labels)


def speedup_points(comparison: Comparison, run: str) -> pd.DataFrame:
    """The headline setting's rows of one pair (run against the first), baseline left out: for the plot."""
    pairs = comparison.pairs[comparison.pairs["run"] == run]
    data = headline(pairs)
    return data[(data["implementation"] != BASELINE) & data["speedup_a"].notna() & data["speedup_b"].notna()]


CSV_NAMES = {
    "machines": "compare_runs.csv",
    "claims": "compare_claims.csv",
    "implementations": "compare_implementations.csv",
    "rows": "compare_rows.csv",
    "verdicts": "compare_verdicts.csv",
    "reproduce": "compare_reproduce.csv",
    "reproduce_summary": "compare_reproduce_summary.csv",
    "rules": "compare_rules.csv",
}


def comparison_tables(comparison: Comparison) -> dict[str, pd.DataFrame]:
    """The comparison's tables, keyed as CSV_NAMES."""
    return {
        "machines": comparison.machines,
        "claims": comparison.claims,
        "implementations": comparison.by_implementation,
        "rows": comparison.pairs,
        "verdicts": comparison.verdicts,
        "reproduce": comparison.reproduce,
        "reproduce_summary": comparison.reproduce_summary,
        "rules": comparison.rules,
    }


def write_comparison_tables(comparison: Comparison, out: Path) -> list[Path]:
    """Every table of the comparison as CSV in `out`."""
    written = []
    for key, table in comparison_tables(comparison).items():
        write_csv_atomic(out / CSV_NAMES[key], table)
        written.append(out / CSV_NAMES[key])
    return written
