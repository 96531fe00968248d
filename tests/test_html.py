"""REPORT.html without a browser: self-contained, the report's sections, the charts' data from the table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.base.results import load_results
from bench.cli import main
from tests.helpers import flat_memory


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import bench.measure.runner

    out = tmp_path_factory.mktemp("run")
    patch = pytest.MonkeyPatch()
    patch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    try:
        args = ["run", "--profile", "quick", "--m", "1,30", "--n-x", "1,20", "--no-lecture", "--threads", "1"]
        assert (
            main([*args, "--implementations", "two_loop,feature_vectorized,fully_vectorized", "--out", str(out)]) == 0
        )
    finally:
        patch.undo()
    assert main(["plot", "--results", str(out), "--out", str(out / "plots")]) == 0
    assert main(["report", "--results", str(out), "--out", str(out), "--plots", str(out / "plots")]) == 0
    return out


def _charts(text: str) -> dict[str, dict[str, object]]:
    blocks = re.findall(r'<script type="application/json" data-chart="([^"]+)">(.*?)</script>', text, re.S)
    return {name: json.loads(body) for name, body in blocks}


def test_the_page_is_self_contained(reported: Path) -> None:
    text = (reported / "REPORT.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?://""", text)
    assert len(text) > 500_000 and "data:image/png;base64," in text  # the libraries and the static plots, inline
    assert (reported / "REPORT.html").stat().st_size < 5 * 2**20


def test_the_page_has_every_section_of_the_report(reported: Path) -> None:
    text = (reported / "REPORT.html").read_text(encoding="utf-8")
    sections = [line[3:] for line in (reported / "REPORT.md").read_text().splitlines() if line.startswith("## ")]
    shown = re.findall(r"<h2[^>]*>(.*?)</h2>", text)
    assert sections and all(s.replace("&", "&amp;").replace("'", "&#39;") in shown or s in shown for s in sections)


def test_the_charts_carry_every_measured_row(reported: Path) -> None:
    charts = _charts((reported / "REPORT.html").read_text(encoding="utf-8"))
    assert {"chart-heatmap", "chart-times"} <= set(charts) <= {"chart-heatmap", "chart-times", "chart-crossovers"}
    frame = load_results(reported)
    ok = frame[frame["status"] == "ok"]
    times = charts["chart-times"]["data"]["values"]  # type: ignore[index]
    assert len(times) == len(ok)
    assert {(r["implementation"], r["m"], r["n_x"], r["layout"]) for r in times} == set(
        zip(ok["implementation"], ok["m"], ok["n_x"], ok["layout"], strict=True)
    )
    heat = charts["chart-heatmap"]["data"]["values"]  # type: ignore[index]
    pair = [r for r in heat if r["implementation"] == "fully_vectorized" and r["baseline"] == "two_loop"]
    assert pair and all(r["speedup"] and r["speedup"] > 0 for r in pair)
