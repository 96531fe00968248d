"""The report's "What an engineer would pick instead" section: formats bench.analyse.peers' tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.analyse.peers import CSV_FILES, baselines, regions
from bench.analyse.views import fmt_seconds, fmt_speedup, headline, setting_label
from bench.base.results import STATUS_SKIPPED_UNAVAILABLE
from bench.present.tables import md_rows
from implementations import REFERENCE, REGISTRY


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [md_rows(header, rows)]


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], table.to_dict("records"))


def _range_text(row: Mapping[str, Any]) -> str:
    if not row["cells"]:
        return "n/a"
    return (
        f"{fmt_speedup(row['median'])} ({fmt_speedup(row['min'])} to {fmt_speedup(row['max'])}, {row['cells']} cells)"
    )


def _why_not(frame: pd.DataFrame, name: str) -> str:
    rows = frame[frame["implementation"] == name]
    reasons = rows.loc[rows["status"] == STATUS_SKIPPED_UNAVAILABLE, "reason"].dropna()
    if not reasons.empty:
        return f"n/a: {reasons.iloc[0]}"
    return "n/a: not in this run" if rows.empty else "n/a"


def _labels(*tables: pd.DataFrame) -> list[str]:
    """The regions: the fixed three, then any other the tables hold (the run's out-of-cache cells)."""
    found = [label for table in tables for label in table["region"]]
    return list(dict.fromkeys([label for label, _lo, _hi in regions()] + found))


def _close(r: dict[str, Any]) -> str:
    close = r.get("close_wins")
    return f", {int(close)} within the rows' IQR" if close is not None and pd.notna(close) and close > 0 else ""


def _fastest(fastest: pd.DataFrame, speedup: pd.DataFrame) -> list[str]:
    rows = []
    for label in _labels(fastest, speedup):
        part = fastest[fastest["region"] == label].sort_values("wins", ascending=False)
        if part.empty:
            rows.append([label, "0", "n/a"])
            continue
        cells = int(part["cells"].iloc[0])
        winners = ", ".join(f"`{r['implementation']}` ({r['wins']} of {cells}{_close(r)})" for r in _records(part))
        rows.append([label, str(cells), winners])
    return ["### Fastest implementation per region of the grid", "",
            *_table(["region", "cells", "fastest (cells where it was fastest)"], rows), "",
            "A win is counted \"within the rows' IQR\" where the runner-up's median is within the larger "
            "interquartile range of the two rows' rounds: their own spread could reverse it. Implementations "
            "timed in a process of their own (see the compile times below) were not timed in the same rounds "
            "as the others, so a drift of the machine between the two moments is not in either IQR."]  # fmt: skip


def _against_reference(frame: pd.DataFrame, speedup: pd.DataFrame) -> list[str]:
    lines = ["", f"### Each peer against `{REFERENCE}` (speedup = its time / the peer's time)", ""]
    names = list(dict.fromkeys(speedup["implementation"]))
    if not names:
        return [*lines, "n/a: no peer is registered."]
    header = ["peer", *_labels(speedup)]
    rows = []
    for name in names:
        part = speedup[speedup["implementation"] == name]
        if not part["cells"].any():
            rows.append([f"`{name}`", _why_not(frame, name), *([""] * (len(header) - 2))])
        else:
            rows.append([f"`{name}`", *[_range_text(r) for r in _records(part)]])
    return lines + _table(header, rows)


def _compile_times(table: pd.DataFrame) -> list[str]:
    lines = ["", "### JIT compile times (`compile_s`: the first call of a row, timed apart)", ""]
    if table.empty:
        return [*lines, "n/a: no JIT implementation was measured."]
    rows = [
        [f"`{r['implementation']}`", str(r["rows"]), fmt_seconds(r["median_s"]), fmt_seconds(r["max_s"]), r["process"]]
        for r in _records(table)
    ]
    return [
        *lines,
        *_table(["implementation", "rows", "median", "max", "process"], rows),
        "",
        "Numba compiles once per dtype and layout, XLA once per shape, dtype and layout in each thread "
        "count's worker, so a row's first call includes a compile only where its combination is new: the "
        "median is over rows, the max is the costliest compile.",
    ]


def _baselines(table: pd.DataFrame) -> list[str]:
    first, *others = baselines()
    named = ", ".join(f"`{n}`" for n in others)
    what = "; ".join(REGISTRY[n].summary.rstrip(".") for n in others)
    rows = []
    for r in _records(table):
        claimed = f"~{r['claimed']:.0f}x" if np.isfinite(r["claimed"]) else ""
        rows.append([f"`{r['implementation']}`", f"`{r['baseline']}`", claimed, _range_text(r)])
    return [
        "",
        f"### The baseline's effect on the note's ratios (`{first}` against {named})",
        "",
        f"{named}: {what}. Dividing by it instead of by `{first}` moves the note's ratios by the factor in the "
        "last rows.",
        "",
        *_table(["implementation", "against", "claimed", "speedup: median (range)"], rows),
    ]


def peers_section(frame: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Markdown lines of the section; every number comes from the peers' tables (bench.analyse.peers)."""
    setting = setting_label(headline(frame))
    return [
        "",
        "## What an engineer would pick instead",
        "",
        "Instead of vectorising by hand with NumPy: JIT-compile the loop (Numba) or use the framework already "
        f"in use (JAX, PyTorch). Setting: {setting}. Tables also in "
        + ", ".join(f"`{f}`" for f in CSV_FILES.values())
        + ".",
        "",
        *_fastest(tables["fastest"], tables["speedup"]),
        *_against_reference(frame, tables["speedup"]),
        *_compile_times(tables["compile"]),
        *_baselines(tables["baselines"]),
    ]
