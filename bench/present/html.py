"""REPORT.html: the report as one self-contained page, with interactive plots (Vega-Altair).

The page is REPORT.md rendered to HTML (the same sections and numbers, from the same
analysis), with the static plots inlined as images and two interactive charts drawn from
the same table: the speedup heatmap and the time per step. Selectors switch dtype, layout,
threads and the pair of implementations; hovering a cell shows its m, n_x, both times with
their IQR, the speedup with its interval, and the row's status and reason. Vega, Vega-Lite
and Vega-Embed are inlined (vl-convert's bundle), so the page opens from file:// with no
network, and it prints without the selectors.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any, cast

import altair as alt
import numpy as np
import pandas as pd
import vl_convert
from markdown_it import MarkdownIt

from bench.analyse.analysis import Analysis
from bench.analyse.views import PAIR_BASELINES, fmt_speedup, implementation_order
from bench.base.claims import HEADLINE
from bench.base.results import STATUS_OK
from implementations import BASELINE, REFERENCE

REPORT_HTML = "REPORT.html"
# Plots the page draws itself; the others are inlined as the PNGs `bench plot` drew.
INTERACTIVE = ("speedup_heatmap", "time_vs_m", "time_vs_n_x", "crossovers")

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2em; }
.chart { margin: 1em 0 2em; }
@media print {
  .vega-bindings, .vega-actions, th::after { display: none !important; }
  body { max-width: none; }
  h2 { break-before: page; }
}
"""

# Sorting a table by a header click: a few lines, kept out of the plots (which use no hand-written code).
SORT_SCRIPT = """
document.querySelectorAll("table").forEach((table) => {
  table.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const body = table.tBodies[0];
    const order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", order);
    const key = (row) => {
      const text = row.cells[column].innerText.trim();
      const number = parseFloat(text.replace(/[,x%]/g, ""));
      return Number.isNaN(number) ? text : number;
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return order === "ascending" ? cmp : -cmp;
    });
    rows.forEach((row) => body.appendChild(row));
  }));
});
"""

# Embeds each chart's spec from the JSON blocks of the page.
EMBED_SNIPPET = """
document.querySelectorAll("script[type='application/json'][data-chart]").forEach((block) => {
  vegaEmbed("#" + block.dataset.chart, JSON.parse(block.textContent), {renderer: "svg", actions: false})
    .then(() => document.body.setAttribute("data-charts-ready", String(
      Number(document.body.getAttribute("data-charts-ready") || 0) + 1)));
});
"""


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records: NaN becomes null, numpy scalars become Python ones."""
    # NaN and infinities have no JSON form a browser parses: null.
    finite = table.replace([np.inf, -np.inf], np.nan)
    clean = finite.astype(object).where(finite.notna(), None)
    text = json.dumps(clean.to_dict("records"), default=lambda v: v.item() if hasattr(v, "item") else str(v))
    return cast(list[dict[str, Any]], json.loads(text))


def _data(table: pd.DataFrame) -> alt.Data:
    return alt.Data(values=_records(table))  # type: ignore[no-untyped-call]


def _select(name: str, options: list[Any], value: Any) -> alt.Parameter:
    return alt.param(name=name, value=value, bind=alt.binding_select(options=options, name=f"{name} "))


def _settings(table: pd.DataFrame) -> list[alt.Parameter]:
    return [
        _select("dtype", sorted(set(table["dtype"])), HEADLINE["dtype"]),
        _select("layout", sorted(set(table["layout"])), HEADLINE["layout"]),
        _select("threads", sorted(int(t) for t in set(table["threads"])), HEADLINE["threads"]),
    ]


def _setting_filter() -> str:
    return "datum.dtype == dtype && datum.layout == layout && datum.threads == threads"


def heatmap_chart(frame: pd.DataFrame, pairs_table: pd.DataFrame) -> alt.LayerChart:
    """Speedup of one implementation over a baseline on the (m, n_x) grid, for the chosen setting and pair."""
    table = pairs_table
    table = table.assign(
        pair=table["implementation"] + " over " + table["baseline"],
        label=[fmt_speedup(s) if np.isfinite(s) else "" for s in table["speedup"].astype(float)],
        reason=table["reason"].fillna(""),
    )
    order = implementation_order(frame)
    pairs = [f"{n} over {b}" for b in PAIR_BASELINES for n in order if f"{n} over {b}" in set(table["pair"])]
    default = next((p for p in pairs if p.startswith(f"{REFERENCE} over")), pairs[0] if pairs else "")
    params = [*_settings(table), _select("pair", pairs, default)]
    base = alt.Chart(_data(table)).transform_filter(_setting_filter() + " && datum.pair == pair")
    tooltip = [
        alt.Tooltip("m:Q", format=","),
        alt.Tooltip("n_x:Q", format=","),
        alt.Tooltip("implementation:N"),
        alt.Tooltip("median_s:Q", title="time (s)", format=".3~g"),
        alt.Tooltip("iqr_s:Q", title="time IQR (s)", format=".2~g"),
        alt.Tooltip("baseline:N"),
        alt.Tooltip("median_s_base:Q", title="baseline time (s)", format=".3~g"),
        alt.Tooltip("speedup:Q", format=".3~g"),
        alt.Tooltip("speedup_low:Q", title="interval low", format=".3~g"),
        alt.Tooltip("speedup_high:Q", title="interval high", format=".3~g"),
        alt.Tooltip("uncertain:N"),
        alt.Tooltip("status:N"),
        alt.Tooltip("reason:N"),
    ]
    x = alt.X("n_x:O", title="n_x (features)", sort="ascending")
    y = alt.Y("m:O", title="m (examples)", sort="descending")
    measured = "isValid(datum.speedup) && datum.speedup > 0"
    color = alt.Color("speedup:Q", scale=alt.Scale(type="log", scheme="viridis"), title="speedup")
    rect = base.transform_filter(measured).mark_rect(stroke="white").encode(x=x, y=y, color=color, tooltip=tooltip)
    # Cells without a speedup (a row or its baseline skipped): grey, with the status and reason on hover.
    missing = (
        base.transform_filter(f"!({measured})")
        .mark_rect(stroke="white", color="#dddddd")
        .encode(x=x, y=y, tooltip=tooltip)
    )
    text = base.mark_text(fontSize=10, color="black").encode(x=x, y=y, text="label:N", tooltip=tooltip)
    return cast(
        alt.LayerChart,
        alt.layer(missing, rect, text)
        .add_params(*params)
        .properties(width=560, height=360, title="Speedup on the (m, n_x) grid (grey: not measured; hover for why)"),
    )


def time_chart(frame: pd.DataFrame) -> alt.Chart:
    """Seconds per gradient step against m, one line per implementation, for the chosen setting and n_x."""
    ok = frame[frame["status"] == STATUS_OK]
    table = ok[["implementation", "m", "n_x", "dtype", "layout", "threads", "median_s", "iqr_s", "rounds"]]
    widths = sorted(int(n) for n in set(table["n_x"]))
    counts = table.groupby("n_x")["m"].nunique()
    default = int(cast(int, counts.idxmax())) if not counts.empty else (widths[0] if widths else 1)
    params = [*_settings(frame), _select("n_x_shown", widths, default)]
    return cast(
        alt.Chart,
        alt.Chart(_data(table))
        .transform_filter(_setting_filter() + " && datum.n_x == n_x_shown")
        .mark_line(point=True)
        .encode(
            x=alt.X("m:Q", scale=alt.Scale(type="log"), title="m (examples)"),
            y=alt.Y("median_s:Q", scale=alt.Scale(type="log"), title="seconds per step"),
            color=alt.Color("implementation:N", sort=implementation_order(frame)),
            tooltip=[
                "implementation:N",
                alt.Tooltip("m:Q", format=","),
                alt.Tooltip("n_x:Q", format=","),
                alt.Tooltip("median_s:Q", title="time (s)", format=".3~g"),
                alt.Tooltip("iqr_s:Q", title="IQR (s)", format=".2~g"),
                "rounds:Q",
            ],
        )
        .add_params(*params)
        .properties(width=560, height=340, title="Time per gradient step against m (choose n_x)"),
    )


def crossover_chart(frame: pd.DataFrame, table: pd.DataFrame) -> alt.LayerChart | None:
    """Speedup over the baseline against n_x at a chosen m: the fitted cost model (lines) and the measured cells."""
    if table.empty:
        return None
    ms = sorted(int(m) for m in set(table["m"]))
    chosen = _select("m_shown", ms, ms[len(ms) // 2])
    base = alt.Chart(_data(table)).transform_filter("datum.m == m_shown")
    x = alt.X("n_x:Q", scale=alt.Scale(type="log"), title="n_x (features)")
    y = alt.Y("speedup:Q", scale=alt.Scale(type="log"), title=f"speedup over {BASELINE} (headline setting)")
    color = alt.Color("implementation:N", sort=implementation_order(frame))
    lines = base.transform_filter("datum.source == 'model'").mark_line().encode(x=x, y=y, color=color)
    points = (
        base.transform_filter("datum.source == 'measured'")
        .mark_point(filled=True, size=50)
        .encode(
            x=x,
            y=y,
            color=color,
            tooltip=["implementation:N", alt.Tooltip("m:Q", format=","), alt.Tooltip("n_x:Q", format=","),
                     alt.Tooltip("speedup:Q", format=".3~g"), "source:N"],
        )
    )  # fmt: skip
    return cast(
        alt.LayerChart,
        alt.layer(lines, points)
        .add_params(chosen)
        .properties(width=560, height=340, title="Crossovers: the cost model (lines) and the measured cells (points)"),
    )


def _inline_images(body: str, report_dir: Path) -> str:
    """<img> of relative PNGs as data: URIs (self-contained); the interactive plots' images are dropped."""

    def replace(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        path = (report_dir / src).resolve()
        if path.stem in INTERACTIVE:
            return f"<em>(interactive above: {html.escape(path.stem)})</em>"
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}"{match.group(2)}>'

    return re.sub(r'<img src="([^"]+)"([^>]*)>', replace, body)


def _vega_lite_version() -> str | None:
    """Altair's Vega-Lite version as vl-convert names it (e.g. '6.4'), if vl-convert bundles it."""
    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return wanted if wanted in vl_convert.get_vegalite_versions() else None


def _script_json(spec: dict[str, Any]) -> str:
    # Inside <script>, "</" would end the element early.
    return json.dumps(spec).replace("</", "<\\/")


def page(markdown_text: str, a: Analysis, report_dir: Path) -> str:
    """The whole page as one string: styles, scripts and data inlined."""
    # Raw HTML in the text (a reason, say) is shown as text, never run: the report has none of its own.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    body = _inline_images(body, report_dir)
    charts: dict[str, alt.TopLevelMixin] = {
        "chart-heatmap": heatmap_chart(a.frame, a.pairs),
        "chart-times": time_chart(a.frame),
    }
    crossovers = crossover_chart(a.frame, a.crossovers)
    if crossovers is not None:
        charts["chart-crossovers"] = crossovers
    blocks = "".join(
        f'<div class="chart" id="{name}"></div>'
        f'<script type="application/json" data-chart="{name}">{_script_json(chart.to_dict())}</script>'
        for name, chart in charts.items()
    )
    interactive = f'<h2 id="interactive-plots">Interactive plots</h2>{blocks}'
    # The charts go right after the first section (the title and machine), before the long text.
    at = body.find("<h2>")
    body = body[:at] + interactive + body[at:] if at >= 0 else body + interactive
    bundle = vl_convert.javascript_bundle(EMBED_SNIPPET, vl_version=_vega_lite_version())
    title = html.escape(markdown_text.splitlines()[0].lstrip("# ").strip() if markdown_text else "Report")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>{body}"
        f'<script type="module">{bundle}</script><script>{SORT_SCRIPT}</script></body></html>\n'
    )
