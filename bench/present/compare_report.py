"""COMPARE.md: formats a bench.analyse.compare.Comparison, with its plots; decides nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.analyse.compare import CSV_NAMES, Comparison, write_comparison_tables
from bench.analyse.reproduce import AGREE_MEDIAN, AGREE_WORST
from bench.analyse.views import fmt_speedup
from bench.base.results import write_text_atomic
from bench.present.compare_plots import draw_compare
from bench.present.tables import md_rows
from implementations import BASELINE

COMPARE_MD = "COMPARE.md"


def md_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    return md_rows(header, rows).splitlines()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def _ratio(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def _differs(machines: pd.DataFrame) -> str:
    columns = ["cpu", "cores", "blas", "python", "numpy", "numba", "profile", "seed", "commit"]
    differ = [c for c in columns if machines[c].astype(str).nunique() > 1]
    return "Differs between the runs: " + ", ".join(differ) + "." if differ else "Same machine, software and settings."


def _reproduce_section(comparison: Comparison, csv_names: dict[str, str]) -> list[str]:
    """Whether the later runs reproduce the first: speedup intervals cell by cell, and the verdict rules."""
    lines = ["", "## Does it reproduce?", ""]
    summary = comparison.reproduce_summary
    if summary.empty:
        return [*lines, "n/a: a run has no `speedups.csv` (made before speedups had intervals)."]
    lines += [
        f"Speedups over `{BASELINE}` measured in both runs. A cell *reproduces* when its two intervals overlap; "
        "the spread is the larger speedup over the smaller. Two runs of the same code on the same machine "
        f"agree when the spread is at most {AGREE_MEDIAN:g}x at the median and {AGREE_WORST:g}x at worst. "
        f"CSV: [{csv_names['reproduce_summary']}]({csv_names['reproduce_summary']}), cell by cell: "
        f"[{csv_names['reproduce']}]({csv_names['reproduce']}).",
        "",
    ]
    rows = [
        [
            f"{r['run']} vs {r['against']}",
            str(r["scope"]),
            f"{r['overlapping']} of {r['cells']} ({r['share']:.0%})",
            f"{_ratio(r['spread_median'])}x",
            f"{_ratio(r['spread_worst'])}x ({r['worst_cell']})",
            "**yes**" if r["agrees"] else "no",
        ]
        for r in _records(summary)
    ]
    lines += md_lines(["runs", "scope", "intervals overlapping", "spread: median", "spread: worst", "agree"], rows)
    if not comparison.rules.empty:
        lines += ["", f"Verdict rules (CSV: [{csv_names['rules']}]({csv_names['rules']})):", ""]
        rule_rows = [
            [f"{r['run']} vs {r['against']}", f"`{r['implementation']}`", str(r["rule_a"]), str(r["rule_b"]),
             str(r["outcome"])]
            for r in _records(comparison.rules)
        ]  # fmt: skip
        lines += md_lines(["runs", "implementation", "rule (first run)", "rule (this run)", "outcome"], rule_rows)
    return lines


def _machines_section(comparison: Comparison, csv_names: dict[str, str]) -> list[str]:
    lines = ["# logreg-vecbench: runs compared", ""]
    for row in _records(comparison.machines):
        lines.append(
            f"- **{row['run']}** (`{row['folder']}`): {row['machine']}; Python {row['python'] or '?'}, "
            f"Numba {row['numba'] or '?'}; profile `{row['profile'] or '?'}`, commit `{row['commit'] or '?'}`"
            + ("" if row["complete"] is not False else " (**interrupted run**)")
        )
    left = [f"{label}: {n}" for label, n in comparison.left_out.items() if n]
    return [
        *lines,
        "",
        _differs(comparison.machines),
        f"Compared on the {len(comparison.common)} rows measured in every run "
        "(same implementation, m, n_x, dtype, layout and threads)"
        + (f"; left out, measured in only some runs: {', '.join(left)}." if left else "; none left out."),
        f"Table as CSV: [{csv_names['machines']}]({csv_names['machines']}).",
    ]


def _claims_section(comparison: Comparison, csv_names: dict[str, str]) -> list[str]:
    runs = comparison.runs
    header = ["Approach", "implementation", "claimed"]
    for run in runs:
        header += [f"{run.label}: course shape", f"{run.label}: median", f"{run.label}: range"]
    claim_rows = []
    for approach, group in comparison.claims.groupby("approach", sort=False):
        first_row = group.iloc[0]
        claimed = "1x" if first_row["claimed"] == 1 else f"~{first_row['claimed']:.0f}x"
        cells = [str(approach), f"`{first_row['implementation']}`", claimed]
        for run in runs:
            r = group[group["run"] == run.label].iloc[0]
            cells += [fmt_speedup(r["course_shape"]), fmt_speedup(r["grid_median"]),
                      f"{fmt_speedup(r['grid_min'])} to {fmt_speedup(r['grid_max'])}"]  # fmt: skip
        claim_rows.append(cells)
    return [
        "",
        "## The note's speed table, run by run",
        "",
        f"Speedup over `{BASELINE}` in the headline setting (float64, C order, 1 thread), over the compared rows "
        f"only. CSV: [{csv_names['claims']}]({csv_names['claims']}).",
        "",
        *md_lines(header, claim_rows),
    ]


def _implementation_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for rec in _records(table):
        mark = f"**{rec['change']}**" if rec["change"] in ("slower", "faster") else str(rec["change"])
        rows.append(
            [
                f"`{rec['implementation']}`",
                str(rec["rows"]),
                f"{_ratio(rec['time_ratio_median'])} ({_ratio(rec['time_ratio_min'])} to "
                f"{_ratio(rec['time_ratio_max'])})",
                _ratio(rec["speedup_ratio_median"]),
                f"{rec['slower_beyond_noise']} slower, {rec['faster_beyond_noise']} faster",
                mark,
            ]
        )
    return rows


def _implementations_sections(comparison: Comparison, csv_names: dict[str, str]) -> list[str]:
    first = comparison.runs[0].label
    header = ["implementation", "rows", "time ratio: median (range)", "speedup ratio: median", "rows beyond noise",
              "change"]  # fmt: skip
    lines: list[str] = []
    for run in comparison.runs[1:]:
        table = comparison.by_implementation[comparison.by_implementation["run"] == run.label]
        lines += [
            "",
            f"## Per implementation: {run.label} against {first}",
            "",
            f"Time ratio = time in {run.label} / time in {first} per row (above 1: slower in {run.label}); "
            f"speedup ratio = speedup over `{BASELINE}` in "
            f"{run.label} / in {first}. A row changed *beyond noise* when its time moved by more than the IQR of "
            "each run's rounds. **slower** / **faster**: the median moved that way and so did most rows beyond "
            f"noise. CSV: [{csv_names['implementations']}]({csv_names['implementations']}), row by row: "
            f"[{csv_names['rows']}]({csv_names['rows']}).",
            "",
            *md_lines(header, _implementation_rows(table)),
        ]
    return lines


def _verdicts_section(comparison: Comparison, csv_names: dict[str, str]) -> list[str]:
    lines = ["", "## Claim verdicts, run by run", ""]
    verdicts = comparison.verdicts
    named = verdicts[verdicts["implementation"] != ""]
    if named.empty:
        return [*lines, "n/a: no run holds verdicts (`verdicts.json`) and this version cannot derive them."]
    rows = []
    for name in dict.fromkeys(named["implementation"]):
        claimed = named[named["implementation"] == name]["claimed"].dropna()
        cells = [f"`{name}`", f"~{claimed.iloc[0]:g}x" if not claimed.empty else "?"]
        for run in comparison.runs:
            match = verdicts[(verdicts["run"] == run.label) & (verdicts["implementation"].isin([name, ""]))]
            cells.append(str(match["verdict"].iloc[0]) if not match.empty else "n/a")
        rows.append(cells)
    header = ["implementation", "claimed", *[run.label for run in comparison.runs]]
    return [*lines, f"CSV: [{csv_names['verdicts']}]({csv_names['verdicts']}).", "", *md_lines(header, rows)]


def markdown(comparison: Comparison, csv_names: dict[str, str], plots: list[Path]) -> str:
    """COMPARE.md: machines, the note's table per run, ratios per implementation, verdicts, plots."""
    lines = _machines_section(comparison, csv_names)
    lines += _claims_section(comparison, csv_names)
    lines += _implementations_sections(comparison, csv_names)
    lines += _reproduce_section(comparison, csv_names)
    lines += _verdicts_section(comparison, csv_names)
    pngs = [path for path in plots if path.suffix == ".png"]
    if pngs:
        lines += ["", "## Plots", ""]
        for path in pngs:
            lines += [f"![{path.stem}]({path.name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """COMPARE.md, its tables as CSV, and the plots; returns the files written."""
    written = write_comparison_tables(comparison, out)
    plots = draw_compare(comparison, out)
    path = out / COMPARE_MD
    write_text_atomic(path, markdown(comparison, CSV_NAMES, plots))
    return [path, *written, *plots]
