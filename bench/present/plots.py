"""Plots drawn only from the tidy results table; `python -m bench plot` redraws them without timing.

Every figure gets the same footer (machine, date, setting) and is saved as PNG and SVG. The
*_figure functions return the matplotlib Figure without saving it (for notebooks: bench.api);
the plot_* functions save it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # files only, no display needed; a notebook keeps its own backend

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from numpy.typing import NDArray

from bench.analyse.analysis import Analysis
from bench.analyse.views import (
    cell_items,
    claims_table,
    grid_axes,
    headline,
    implementation_order,
    setting_label,
    speedups,
)
from bench.base.constants import COURSE_SHAPE
from bench.base.hierarchy import curve_of, hierarchy_of
from bench.base.machine import machine_line
from bench.base.results import STATUS_OK, STATUS_SKIPPED_BUDGET, STATUS_SKIPPED_MEMORY
from implementations import BASELINE

FORMATS = ("png", "svg")
MARKERS = "osD^v<>ph*"


def _colors(names: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _footer(fig: Figure, meta: dict[str, Any], setting: str, layout: bool = True) -> Figure:
    """Footer naming the machine, date and setting; layout=False where the layout is set by hand."""
    fig.text(
        0.01,
        0.005,
        f"{machine_line(meta)} | {setting}",
        fontsize=7,
        color="0.35",
        ha="left",
        va="bottom",
    )
    if layout:
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _save(fig: Figure | None, out: Path, stem: str, bbox_tight: bool = False) -> list[Path]:
    """PNG and SVG side by side; nothing for a figure the table cannot support (None)."""
    if fig is None:
        return []
    paths = []
    for fmt in FORMATS:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, dpi=130, bbox_inches="tight" if bbox_tight else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _pick(values: list[int], count: int) -> list[int]:
    """Up to `count` values spread evenly over a sorted list, ends included."""
    if len(values) <= count:
        return values
    idx = np.unique(np.linspace(0, len(values) - 1, count).round().astype(int))
    return [values[i] for i in idx]


def time_vs_figure(frame: pd.DataFrame, meta: dict[str, Any], x: str) -> Figure | None:
    """Seconds per gradient step against x (m or n_x), log-log, one panel per chosen value of the other."""
    panel = "n_x" if x == "m" else "m"
    data = headline(frame)
    ok = data[data["status"] == STATUS_OK]
    if ok.empty:
        return None
    names = implementation_order(data)
    colors = _colors(implementation_order(frame))
    ms, ns = grid_axes(data)
    panels = _pick(ns if panel == "n_x" else ms, 4) or sorted(set(ok[panel]))[:4]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, value in zip(axes[0], panels, strict=True):
        for i, name in enumerate(names):
            series = ok[(ok["implementation"] == name) & (ok[panel] == value)].sort_values(x)
            if series.empty:
                continue
            ax.errorbar(
                series[x],
                series["median_s"],
                yerr=series["iqr_s"] / 2,
                label=name,
                color=colors[name],
                marker=MARKERS[i % len(MARKERS)],
                ms=4,
                lw=1.4,
                capsize=2,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{panel} = {value:,}")
        ax.set_xlabel("m (training examples)" if x == "m" else "n_x (features)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("seconds per gradient step (median)")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Time per gradient step against {x}: lower is better; bars span the IQR")
    return _footer(fig, meta, setting_label(data))


def plot_time_vs(frame: pd.DataFrame, meta: dict[str, Any], out: Path, x: str) -> list[Path]:
    return _save(time_vs_figure(frame, meta, x), out, f"time_vs_{x}")


def _speed_grid(speed: pd.DataFrame, name: str, ms: list[int], ns: list[int]) -> NDArray[np.float64]:
    """One implementation's speedups as an (n_x, m) grid, NaN where not measured."""
    grid = np.full((len(ns), len(ms)), np.nan)
    for m, n_x, value in cell_items(speed[name].dropna()) if name in speed else []:
        if m in ms and n_x in ns:
            grid[ns.index(n_x), ms.index(m)] = value
    return grid


def _unmeasured_label(status: pd.Series, name: str, m: int, n_x: int) -> str:
    """Why a cell has no speedup: the row skipped (budget, memory) or its baseline's."""
    own = status.get((name, m, n_x))
    base = status.get((BASELINE, m, n_x))
    why = {STATUS_SKIPPED_BUDGET: "skip", STATUS_SKIPPED_MEMORY: "mem"}
    return why.get(str(own)) or (f"base\n{why.get(str(base), 'n/a')}" if base != STATUS_OK else "n/a")


def _label_cells(
    ax: Any, grid: NDArray[np.float64], ms: list[int], ns: list[int], unmeasured: Callable[[int, int], str]
) -> None:
    """Each cell's speedup written in it; unmeasured cells hatched, with why."""
    for j, n_x in enumerate(ns):
        for i, m in enumerate(ms):
            value = grid[j, i]
            if np.isfinite(value):
                text = f"{value:.3g}" if value < 100 else f"{value:,.0f}"
                color = "white" if value < 30 else "black"
                ax.text(i, j, text, ha="center", va="center", fontsize=6.5, color=color)
            else:
                ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
                ax.text(i, j, unmeasured(m, n_x), ha="center", va="center", fontsize=5.5, color="0.3")


def _claim_contours(ax: Any, grid: NDArray[np.float64], ms: list[int], ns: list[int]) -> None:
    """The note's 10x and 300x as contours, where at least four cells were measured."""
    if np.isfinite(grid).sum() < 4:
        return
    contours = ax.contour(
        np.arange(len(ms)),
        np.arange(len(ns)),
        np.log10(np.ma.masked_invalid(grid)),
        levels=[np.log10(10.0), np.log10(300.0)],
        colors=["orange", "red"],
        linewidths=1.6,
    )
    ax.clabel(contours, fmt={np.log10(10.0): "10x", np.log10(300.0): "300x"}, fontsize=7)


def speedup_heatmaps_figure(frame: pd.DataFrame, meta: dict[str, Any]) -> Figure | None:
    """Speedup over the baseline on the (m, n_x) grid, one panel per implementation, 10x and 300x contours."""
    data = headline(frame)
    speed = speedups(data)
    names = [n for n in implementation_order(data) if n != BASELINE]
    ms, ns = grid_axes(data)
    if speed.empty or not names or len(ms) < 2 or len(ns) < 2:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    # The title sits just above the top row, whatever the number of rows.
    fig.subplots_adjust(hspace=0.45, wspace=0.35, top=1 - 1.0 / (4.0 * rows))
    norm = LogNorm(vmin=0.1, vmax=max(1e4, float(np.nanmax(speed.to_numpy())) if speed.size else 1e4))
    status = data.set_index(["implementation", "m", "n_x"])["status"]
    image = None
    for ax, name in zip(axes.flat, names, strict=False):
        grid = _speed_grid(speed, name, ms, ns)
        image = ax.imshow(grid, origin="lower", cmap="viridis", norm=norm, aspect="auto")
        _label_cells(ax, grid, ms, ns, functools.partial(_unmeasured_label, status, name))
        _claim_contours(ax, grid, ms, ns)
        ax.set_xticks(range(len(ms)), [f"{m:,}" for m in ms], rotation=45, fontsize=7)
        ax.set_yticks(range(len(ns)), [f"{n:,}" for n in ns], fontsize=7)
        ax.set_xlabel("m (examples)")
        ax.set_ylabel("n_x (features)")
        ax.set_title(f"{name} vs {BASELINE}")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=f"speedup over {BASELINE} (x)")
    fig.suptitle(
        "Speedup over two Python loops; contours at the note's 10x and 300x; hatched: not measured",
        y=1 - 0.3 / (4.0 * rows),
    )
    # The colorbar layout is set by hand above, so tight_layout is not used here.
    return _footer(fig, meta, setting_label(data), layout=False)


def plot_speedup_heatmaps(frame: pd.DataFrame, meta: dict[str, Any], out: Path) -> list[Path]:
    return _save(speedup_heatmaps_figure(frame, meta), out, "speedup_heatmap", bbox_tight=True)


def claims_figure(frame: pd.DataFrame, meta: dict[str, Any], course_shape: tuple[int, int]) -> Figure | None:
    """The note's "Speed Comparison" as bars: claimed beside measured (course shape, grid median)."""
    table = claims_table(frame, course_shape)
    if table["cells"].sum() == 0:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = np.arange(len(table))
    width = 0.27
    series = [
        ("claimed (the note)", "claimed", "0.7"),
        (
            f"measured at the course shape m={course_shape[0]}, n_x={course_shape[1]:,}",
            "course_shape",
            "C0",
        ),
        ("measured, median over the grid", "grid_median", "C2"),
    ]
    for k, (label, column, color) in enumerate(series):
        values = table[column].to_numpy(dtype=float)
        bars = ax.bar(x + (k - 1) * width, np.nan_to_num(values, nan=0.0), width, label=label, color=color)
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if not np.isfinite(value) else (f"{value:.2g}x" if value < 10 else f"{value:,.0f}x")
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                max(value, 1) if np.isfinite(value) else 1,
                text,
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_yscale("log")
    ax.set_ylim(0.1, None)
    ax.set_xticks(
        x,
        [f"{a}\n{n}" for a, n in zip(table["approach"], table["implementation"], strict=True)],
        fontsize=8,
    )
    ax.set_ylabel("speedup over two loops (x, log scale)")
    ax.axhline(1.0, color="0.3", lw=0.8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("The note's speed table: claimed against measured")
    return _footer(fig, meta, setting_label(headline(frame)))


def plot_claims(frame: pd.DataFrame, meta: dict[str, Any], out: Path, course_shape: tuple[int, int]) -> list[Path]:
    return _save(claims_figure(frame, meta, course_shape), out, "claims")


def _roofline_legend(
    meta: dict[str, Any],
    names: list[str],
    colors: dict[str, Any],
    threads: list[int],
    roof_styles: list[str],
    cell_roofs: bool = False,
) -> list[Line2D]:
    handles = [
        Line2D([], [], color=colors[n], marker=MARKERS[i % len(MARKERS)], ls="", label=n) for i, n in enumerate(names)
    ]
    handles += [
        Line2D(
            [], [], color="0.3", marker="o", ls="", markerfacecolor="0.3" if k == 0 else "none", label=f"{t} thread(s)"
        )
        for k, t in enumerate(threads)
    ]
    handles += [
        Line2D([], [], color="black", ls=roof_styles[k % 4], label=f"measured read bandwidth, {t} thread(s)")
        for k, t in enumerate(sorted({*threads, 1}))
        if curve_of(meta, t) is not None
    ]
    if cell_roofs:
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                marker="_",
                markersize=12,
                markeredgewidth=3,
                ls="",
                label="each out-of-cache cell's roof (best streaming rate there)",
            )
        )
    handles.append(Line2D([], [], color="0.6", ls=":", label="measured cache capacities (1 thread)"))
    return handles


def roofline_figure(frame: pd.DataFrame, meta: dict[str, Any], cell_roofs: pd.DataFrame | None = None) -> Figure | None:
    """Achieved GB/s (bytes of X per step / time) per measured cell, under the measured bandwidth-vs-size roof.

    cell_roofs (Beyond's, beyond_roofs.csv): each out-of-cache cell's own roof, marked at its size.
    """
    ok = frame[(frame["status"] == STATUS_OK) & (frame["dtype"] == "float64") & frame["gbps"].notna()]
    if ok.empty:
        return None
    names = implementation_order(ok)
    colors = _colors(implementation_order(frame))
    layouts = sorted(set(ok["layout"]))
    threads = sorted(set(ok["threads"]))
    fig, axes = plt.subplots(1, len(layouts), figsize=(max(8.0, 6.4 * len(layouts)), 5.4), sharey=True, squeeze=False)
    roof_styles = ["-", "--", ":", "-."]
    for ax, layout in zip(axes[0], layouts, strict=True):
        for i, name in enumerate(names):
            for k, t in enumerate(threads):
                s = ok[(ok["implementation"] == name) & (ok["layout"] == layout) & (ok["threads"] == t)]
                if s.empty:
                    continue
                # One marker per cell, no lines: cells of different n_x at similar sizes are not a series.
                ax.scatter(
                    s["bytes_x"],
                    s["gbps"],
                    s=22,
                    marker=MARKERS[i % len(MARKERS)],
                    facecolors=colors[name] if k == 0 else "none",
                    edgecolors=colors[name],
                    linewidths=1.0,
                    alpha=0.85,
                    zorder=3,
                )
        for k, t in enumerate(sorted({*threads, 1})):
            curve = curve_of(meta, t)
            if curve is not None:
                ax.plot(curve.sizes, curve.gbps, roof_styles[k % 4], color="black", lw=1.2, zorder=2)
        if cell_roofs is not None and not cell_roofs.empty:
            mine = cell_roofs[(cell_roofs["layout"] == layout) & (cell_roofs["dtype"] == "float64")]
            ax.scatter(
                mine["m"] * mine["n_x"] * 8, mine["roof_gbps"], s=160, marker="_", linewidths=3, color="black", zorder=4
            )
        found = hierarchy_of(meta)
        for level in found.levels if found is not None else ():
            if level.capacity_bytes:
                ax.axvline(level.capacity_bytes, color="0.6", lw=0.8, ls=":", zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes of X per gradient step")
        ax.set_title(f"layout {layout} ({'features-major' if layout == 'C' else 'examples-major'})")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("achieved GB/s (bytes of X / median time)")
    handles = _roofline_legend(
        meta, names, colors, threads, roof_styles, cell_roofs is not None and not cell_roofs.empty
    )
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, 0.03))
    fig.suptitle("Roofline: each cell's achieved bandwidth\nunder the measured read bandwidth for its size")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return _footer(fig, meta, "float64, all thread counts", layout=False)


def plot_roofline(
    frame: pd.DataFrame, meta: dict[str, Any], out: Path, cell_roofs: pd.DataFrame | None = None
) -> list[Path]:
    return _save(roofline_figure(frame, meta, cell_roofs), out, "roofline")


def crossovers_figure(frame: pd.DataFrame, meta: dict[str, Any], table: pd.DataFrame) -> Figure | None:
    """Speedup over the baseline against n_x at a few m: the fitted model (lines) and the measured cells (points)."""
    if table.empty:
        return None
    data = headline(frame)
    names = list(dict.fromkeys(table["implementation"]))
    panels = _pick(sorted(int(m) for m in set(table["m"])), 3)
    colors = _colors(implementation_order(frame))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], panels, strict=True):
        for i, name in enumerate(names):
            mine = table[(table["implementation"] == name) & (table["m"] == m)]
            model = mine[mine["source"] == "model"]
            pts = mine[mine["source"] == "measured"]
            ax.plot(model["n_x"], model["speedup"], color=colors[name], lw=1.3)
            ax.scatter(pts["n_x"], pts["speedup"], color=colors[name], marker=MARKERS[i % len(MARKERS)], s=24, zorder=3)
        for level in (1.0, 10.0, 300.0):
            ax.axhline(level, color="0.4", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n_x (features)")
        ax.set_title(f"m = {m:,}")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(f"speedup over {BASELINE} (x); dashed: 1x, 10x, 300x")
    handles = [Line2D([], [], color=colors[n], marker=MARKERS[i % len(MARKERS)], label=n) for i, n in enumerate(names)]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.suptitle("Crossovers: the fitted cost model (lines) and the measured cells (points) at the same m")
    return _footer(fig, meta, setting_label(data))


def plot_crossovers(a: Analysis, out: Path) -> list[Path]:
    return _save(crossovers_figure(a.frame, a.meta, a.crossovers), out, "crossovers")


def drift_figure(frame: pd.DataFrame, meta: dict[str, Any]) -> Figure | None:
    """The canary's time over its quiet level through the run: median and slow rounds per window."""
    info = meta.get("stability") or {}
    windows = np.asarray(info.get("drift") or [], dtype=float)
    if windows.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    start = windows[:, 0]
    ax.plot(start, windows[:, 1], "o-", ms=3, label="median round in the window")
    ax.plot(start, windows[:, 2], "s--", ms=3, alpha=0.7, label="slow rounds (90th percentile)")
    limit = info.get("thresholds", {}).get("canary_slow")
    if limit:
        ax.axhline(limit, color="tab:red", lw=1, ls=":", label=f"disturbed above {limit:g}x")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("canary time / its quiet level")
    ax.set_ylim(bottom=min(0.9, float(windows[:, 1].min()) * 0.95))
    state = "noisy" if info.get("noisy") else "quiet"
    ax.set_title(f"How the machine's speed moved during the run ({state})")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _footer(fig, meta, "canary: 200 interpreted additions and a 256 KiB sum, timed in every round")


def plot_drift(frame: pd.DataFrame, meta: dict[str, Any], out: Path) -> list[Path]:
    return _save(drift_figure(frame, meta), out, "drift")


def draw_all(a: Analysis, out: Path) -> list[Path]:
    """Every plot the analysis supports; returns the files written."""
    frame, meta = a.frame, a.meta
    paths: list[Path] = []
    paths += plot_time_vs(frame, meta, out, "m")
    paths += plot_time_vs(frame, meta, out, "n_x")
    paths += plot_speedup_heatmaps(frame, meta, out)
    paths += plot_claims(frame, meta, out, COURSE_SHAPE)
    paths += plot_roofline(frame, meta, out, a.beyond.cell_roofs if a.beyond is not None else None)
    paths += plot_crossovers(a, out)
    paths += plot_drift(frame, meta, out)
    return paths
