"""The comparison's plots: speedup against speedup per cell, and the note's claims per run (PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.analyse.compare import Comparison, speedup_points
from bench.analyse.views import implementation_order
from bench.present.plots import FORMATS


def _save(fig: Figure, comparison: Comparison, out: Path, stem: str) -> list[Path]:
    """Footer naming every run's machine (one line each); PNG and SVG side by side."""
    footer = [
        f"{run}: {machine}"
        for run, machine in zip(comparison.machines["run"], comparison.machines["machine"], strict=True)
    ]
    fig.text(0.01, 0.005, "\n".join(footer), fontsize=7, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.025 * (len(footer) + 1), 1, 1))
    paths = []
    for fmt in FORMATS:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_speedup_vs_speedup(comparison: Comparison, out: Path) -> list[Path]:
    """One point per cell and implementation: speedup in the first run (x) against another run (y), log-log."""
    others = [run.label for run in comparison.runs[1:]]
    points = {label: speedup_points(comparison, label) for label in others}
    if all(p.empty for p in points.values()):
        return []
    # Colours by registry order over every run, so an implementation keeps its colour from plot to plot.
    names = implementation_order(pd.concat([run.rows for run in comparison.runs]))
    cmap = plt.get_cmap("tab10")
    colors = {name: cmap(i % 10) for i, name in enumerate(names)}
    first = comparison.runs[0].label
    fig, axes = plt.subplots(1, len(others), figsize=(5.2 * len(others), 5.0), squeeze=False)
    for ax, label in zip(axes[0], others, strict=True):
        data = points[label]
        values = np.concatenate([data["speedup_a"].to_numpy(float), data["speedup_b"].to_numpy(float)])
        values = values[np.isfinite(values) & (values > 0)]
        if values.size == 0:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"no speedups to compare:\n{label} and {first} share no two-loop baseline", ha="center")
            continue
        low, high = values.min() / 2, values.max() * 2
        ax.plot([low, high], [low, high], color="0.4", lw=1, ls="--", label="same speedup")
        for name in [n for n in names if n in set(data["implementation"])]:
            rows = data[data["implementation"] == name]
            ax.scatter(rows["speedup_a"], rows["speedup_b"], s=22, color=colors[name], label=name, alpha=0.85)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_xlabel(f"speedup over two loops in {first} (x)")
        ax.set_ylabel(f"speedup over two loops in {label} (x)")
        ax.set_title(f"{label} against {first}: one point per cell", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, comparison, out, "compare_speedups")


def plot_claims_per_run(comparison: Comparison, out: Path) -> list[Path]:
    """The note's speed table as bars per run: median over the compared cells, range as whiskers, claim as a tick."""
    claims = comparison.claims
    if claims["cells"].sum() == 0:
        return []
    approaches = list(dict.fromkeys(claims["approach"]))
    runs = [run.label for run in comparison.runs]
    fig, ax = plt.subplots(figsize=(max(7.5, 2.4 * len(approaches) * len(runs) / 2), 4.8))
    x = np.arange(len(approaches))
    width = 0.8 / len(runs)
    for k, label in enumerate(runs):
        table = claims[claims["run"] == label].set_index("approach").reindex(approaches)
        median = table["grid_median"].to_numpy(float)
        low = np.nan_to_num(median - table["grid_min"].to_numpy(float), nan=0.0)
        high = np.nan_to_num(table["grid_max"].to_numpy(float) - median, nan=0.0)
        offset = (k - (len(runs) - 1) / 2) * width
        ax.bar(x + offset, np.nan_to_num(median, nan=0.0), width, label=f"{label}: median over the cells")
        ax.errorbar(x + offset, median, yerr=[low, high], fmt="none", ecolor="0.25", capsize=3, lw=0.8)
    claimed = claims.drop_duplicates("approach").set_index("approach").reindex(approaches)["claimed"]
    ax.hlines(claimed.to_numpy(float), x - 0.45, x + 0.45, colors="black", lw=2, zorder=3, label="claimed (the note)")
    ax.set_yscale("log")
    ax.set_xticks(x, approaches, fontsize=8)
    ax.set_ylabel("speedup over two loops (x, log scale); whiskers: range")
    ax.axhline(1.0, color="0.3", lw=0.8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("The note's speed table, run by run (headline setting, compared cells)")
    return _save(fig, comparison, out, "compare_claims")


def draw_compare(comparison: Comparison, out: Path) -> list[Path]:
    return plot_speedup_vs_speedup(comparison, out) + plot_claims_per_run(comparison, out)
