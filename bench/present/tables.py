"""The one way a table is written into REPORT.md, COMPARE.md and the README: DataFrame.to_markdown."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def _escape(value: object) -> object:
    # A `|` inside a cell would end it: markdown's pipe tables need it escaped.
    return value.replace("|", "\\|") if isinstance(value, str) else value


def md_table(frame: pd.DataFrame) -> str:
    """The frame as a markdown pipe table, cells as they are (no number parsing), `|` escaped."""
    shown = frame.map(_escape)
    shown.columns = [str(_escape(str(c))) for c in frame.columns]
    return shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def md_rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows already formatted as text, under `header`, as a markdown table."""
    return md_table(pd.DataFrame([list(r) for r in rows], columns=list(header)))
