"""REPORT.html in a real browser: Debian's chromium, headless, driven by Playwright.

Skipped, with the reason, where chromium or Playwright is missing (`make test-browser` needs
both; `.ci/run` installs chromium). Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.analyse.views import claims_table, fmt_speedup
from bench.base.constants import COURSE_SHAPE
from bench.base.results import load_results

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
REFERENCE = Path(os.environ.get("REPORT_RUN") or Path(__file__).resolve().parent.parent / "results" / "reference")
# What a sandboxed root needs, and no background traffic (this machine has no network).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.is_file():
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium; then make test-browser)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (make venv installs it)")


@pytest.fixture(scope="module")
def report() -> Iterator[tuple[Any, list[str]]]:
    """The reference run's REPORT.html opened from file://, its charts drawn, and every console error seen."""
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        except sync_api.Error as exc:  # a stub or an unsupported build: skip in make test, fail in make test-browser
            if os.environ.get("REQUIRE_BROWSER"):
                raise
            pytest.skip(f"{CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        context = browser.new_context(viewport={"width": 1280, "height": 900})  # a fresh, empty profile
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((REFERENCE / "REPORT.html").as_uri())
        every = "String(document.querySelectorAll('script[data-chart]').length)"
        page.wait_for_function(f"document.body.getAttribute('data-charts-ready') === {every}", timeout=60_000)
        yield page, errors
        browser.close()


def test_the_page_is_self_contained_and_small() -> None:
    text = (REFERENCE / "REPORT.html").read_text(encoding="utf-8")
    assert (REFERENCE / "REPORT.html").stat().st_size < 5 * 2**20
    assert not re.search(r"""(src|href)=["']https?://""", text), "the page must not load anything from a network"


def test_no_console_errors(report: tuple[Any, list[str]]) -> None:
    _page, errors = report
    assert errors == []


def test_every_section_of_the_report_is_on_the_page(report: tuple[Any, list[str]]) -> None:
    page, _ = report
    wanted = [line[3:].strip() for line in (REFERENCE / "REPORT.md").read_text().splitlines() if line.startswith("## ")]
    shown = [h.strip() for h in page.locator("h2").all_inner_texts()]
    assert wanted and all(w in shown for w in wanted), set(wanted) - set(shown)


def test_the_course_shape_speedup_is_the_one_in_the_table(report: tuple[Any, list[str]]) -> None:
    page, _ = report
    table = claims_table(load_results(REFERENCE), COURSE_SHAPE)
    course = table.loc[table["implementation"] == "fully_vectorized", "course_shape"]
    expected = fmt_speedup(float(course.iloc[0]))
    row = page.locator("table tr", has_text="fully_vectorized").first
    assert row.locator("td").nth(3).inner_text().startswith(expected)


def test_hovering_a_heatmap_cell_shows_that_cells_values(report: tuple[Any, list[str]]) -> None:
    page, _ = report
    cell = page.locator("#chart-heatmap .mark-rect path").first
    datum = cell.evaluate("element => element.__data__.datum")
    box = cell.bounding_box()
    assert box is not None
    # The pointer where a reader's would be: over the cell (its label shows the same tooltip).
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()
    assert f"{int(datum['m']):,}" in text and f"{int(datum['n_x']):,}" in text
    assert datum["implementation"] in text and datum["status"] in text


def test_switching_the_layout_changes_the_plot(report: tuple[Any, list[str]]) -> None:
    page, _ = report
    labels = "#chart-heatmap .mark-text text"
    texts = "elements => elements.map((e) => e.textContent)"
    before = page.locator(labels).evaluate_all(texts)
    page.locator("#chart-heatmap select[name='layout']").select_option("F")
    changed = f"JSON.stringify(Array.from(document.querySelectorAll({labels!r})).map((e) => e.textContent))"
    shown_before = json.dumps(json.dumps(before, separators=(",", ":"), ensure_ascii=False))
    page.wait_for_function(f"{changed} !== {shown_before}", timeout=10_000)
    after = page.locator(labels).evaluate_all(texts)
    page.locator("#chart-heatmap select[name='layout']").select_option("C")
    assert before and after and before != after


def test_a_screenshot_of_the_page(report: tuple[Any, list[str]], tmp_path: Path) -> None:
    page, _ = report
    page.locator("#interactive-plots").scroll_into_view_if_needed()
    path = tmp_path / "report.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    keep = os.environ.get("REPORT_SCREENSHOT")  # make screenshot: the README's picture of the page
    if keep:
        shutil.copyfile(path, keep)
