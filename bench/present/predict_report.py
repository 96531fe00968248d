"""`bench predict`'s table on the terminal: formats bench.analyse.predict's rows; decides nothing."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.analyse.views import fmt_seconds
from bench.base.machine import machine_line
from bench.present.tables import md_rows


def _range(row: pd.Series, low: str, high: str) -> str:
    return f"{fmt_seconds(row[low])} to {fmt_seconds(row[high])}"


def predictions_text(table: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The predictions as a markdown table, with the run they come from and what the range means."""
    iterations = int(table["iterations"].iloc[0]) if not table.empty else 1
    header = ["implementation", "m", "n_x", "per step (predicted)", "range"]
    if iterations > 1:
        header += [f"{iterations:,} steps (predicted)", "range"]
    rows = []
    for _, r in table.iterrows():
        name = f"`{r['implementation']}`" + (" (extrapolated)" if r["extrapolated"] else "")
        row = [name, f"{r['m']:,}", f"{r['n_x']:,}", fmt_seconds(r["predicted_s"]), _range(r, "low_s", "high_s")]
        if iterations > 1:
            row += [fmt_seconds(r["total_s"]), _range(r, "total_low_s", "total_high_s")]
        rows.append(row)
    errors = table[["implementation", "error", "error_basis"]].drop_duplicates()
    bases = "; ".join(f"{n}: +/-{e * 100:.0f}% ({b})" for n, e, b in errors.itertuples(index=False))
    return (
        f"Predicted, not measured: the cost models of the run measured on {machine_line(meta)} "
        "(float64, C order, 1 thread).\n\n"
        + md_rows(header, rows)
        + f"\n\nRange: the model's worst error on cells it never saw ({bases}). "
        "(extrapolated): beyond the largest cell the model was fitted on.\n"
    )
