"""The suite from Python, for notebooks: time your own functions beside the suite's, check them, plot.

In the manner of perfplot: one call times every kernel on every size, after checking each
answer, and returns the tidy table of results.csv; the plots are matplotlib Figures.

    from bench import api
    frame = api.timings({"mine": propagate, "two_loop": "two_loop"}, sizes=[(8, 4), (64, 4), (8, 32), (64, 32)])
    api.speedup_figure(frame)
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.base.constants import DEFAULT_SEED
from bench.base.errors import BenchError
from bench.base.results import ensure_writable_dir, load_metadata, load_results
from bench.measure.check import CheckResult, check_implementation
from bench.measure.profiles import PROFILES
from bench.measure.rundir import claimed
from bench.measure.timing import resolve_threads
from bench.measure.user import from_function, is_spec, load_function
from implementations import REGISTRY, Implementation

Kernel = Callable[..., Any] | str | Implementation
Kernels = Mapping[str, Kernel] | Sequence[Kernel]


def _label(kernel: Kernel) -> str:
    if isinstance(kernel, Implementation):
        return kernel.name
    if isinstance(kernel, str):
        return kernel
    return str(getattr(kernel, "__name__", type(kernel).__name__))


def implementations(kernels: Kernels) -> tuple[Implementation, ...]:
    """Each kernel (a function, a registered name, a path/to/file.py:function spec) as an Implementation.

    A mapping gives the labels; a sequence uses each function's name. A registered name keeps
    its own label unless the mapping gives another.
    """
    items = kernels.items() if isinstance(kernels, Mapping) else ((_label(k), k) for k in kernels)
    resolved: list[Implementation] = []
    for label, kernel in items:
        if isinstance(kernel, str) and kernel in REGISTRY:
            impl = REGISTRY[kernel]
            resolved.append(impl if label == impl.name else dataclasses.replace(impl, name=label))
        elif isinstance(kernel, str) and is_spec(kernel):
            resolved.append(from_function(load_function(kernel), label, source=kernel))
        elif isinstance(kernel, str):
            raise BenchError(f"unknown implementation {kernel!r}; give a function, a registered name or file.py:fn")
        else:
            source = f"{getattr(kernel, '__module__', '?')}.{getattr(kernel, '__qualname__', label)}"
            resolved.append(from_function(kernel, label, source=source))
    names = [impl.name for impl in resolved]
    if len(set(names)) != len(names):
        raise BenchError(f"two kernels share a label: {names}")
    return tuple(resolved)


def check(kernels: Kernels, show: bool = True) -> list[CheckResult]:
    """Check each kernel on the course's test case and random data; print what differs (show); the verdicts."""
    results = [check_implementation(impl) for impl in implementations(kernels)]
    if show:
        for result in results:
            print("\n".join(result.lines))
    return results


def _threads(threads: int | str | Iterable[int | str]) -> tuple[int, ...]:
    values = [threads] if isinstance(threads, int | str) else list(threads)
    return tuple(dict.fromkeys(resolve_threads(t) for t in values))


def timings(
    kernels: Kernels,
    sizes: Sequence[tuple[int, int]],
    *,
    threads: int | str | Iterable[int | str] = 1,
    dtypes: Sequence[str] = ("float64",),
    layouts: Sequence[str] = ("C",),
    profile: str = "quick",
    seed: int = DEFAULT_SEED,
    out: str | Path | None = None,
    sweep: bool = True,
) -> pd.DataFrame:
    """Time every kernel on every (m, n_x) size: the table results.csv would hold, one row per measurement.

    Each function from outside the registry is checked first; a wrong one gets failed_check rows
    with the diagnosis in `reason`, and the rest is timed as usual (gate, cut-off, rounds of the
    profile). out keeps the run folder (results.csv, metadata.json) for `python -m bench plot/report`;
    by default it is a temporary folder. The run's metadata is in frame.attrs["meta"] for the plots.
    """
    from bench.measure.runner import RunConfig, run

    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    cells = sorted({(int(m), int(n_x)) for m, n_x in sizes}, key=lambda c: (c[0] * c[1], c[0]))
    if not cells or any(m < 1 or n_x < 1 for m, n_x in cells):
        raise BenchError(f"sizes must be (m, n_x) pairs of positive integers, got {list(sizes)}")
    with tempfile.TemporaryDirectory(prefix="logreg-vecbench-") as tmp, ExitStack() as held:
        folder = Path(out) if out is not None else Path(tmp)
        held.enter_context(claimed(folder, resume=False))
        folder = ensure_writable_dir(folder)
        config = RunConfig(
            profile=PROFILES[profile],
            implementations=implementations(kernels),
            cells=tuple(cells),
            dtypes=tuple(dtypes),
            layouts=tuple(layouts),
            threads=_threads(threads),
            seed=seed,
            out=folder,
            lecture=False,
            sweep=sweep,
        )
        summary = run(config)
        if summary.interrupted:
            raise KeyboardInterrupt
        frame = load_results(folder)
        frame.attrs["meta"] = load_metadata(folder)
    return frame


def _closed(fig: Figure | None) -> Figure | None:
    # Closed in pyplot, so a notebook shows the returned figure once, not again at the cell's end.
    if fig is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return fig


def time_figure(frame: pd.DataFrame, x: str = "m") -> Figure | None:
    """Seconds per step against m (or n_x), one panel per value of the other; None if nothing was timed."""
    from bench.present.plots import time_vs_figure

    if x not in ("m", "n_x"):
        raise BenchError(f"x must be 'm' or 'n_x', got {x!r}")
    return _closed(time_vs_figure(frame, frame.attrs.get("meta", {}), x))


def speedup_figure(frame: pd.DataFrame) -> Figure | None:
    """Speedup over two_loop on the (m, n_x) grid, one panel per kernel; needs two_loop and 2+ values of each."""
    from bench.present.plots import speedup_heatmaps_figure

    return _closed(speedup_heatmaps_figure(frame, frame.attrs.get("meta", {})))


def crossovers_figure(frame: pd.DataFrame) -> Figure | None:
    """Speedup over two_loop against n_x, fitted cost model beside the measured cells."""
    from bench.analyse.analysis import analyse
    from bench.present.plots import crossovers_figure as draw

    a = analyse(frame, frame.attrs.get("meta", {}))
    return _closed(draw(a.frame, a.meta, a.crossovers))


def predict(
    results: str | Path,
    m: int | Sequence[int],
    n_x: int | Sequence[int],
    implementations: Sequence[str] | None = None,
    iterations: int = 1,
) -> pd.DataFrame:
    """Predicted seconds per gradient step (and for `iterations` steps) at every m x n_x, from a run's models.

    The same table as `python -m bench predict`: implementation, m, n_x, predicted_s, low_s, high_s, the
    totals for `iterations` steps, the error that sets the range and where it was measured. Predicted,
    not measured: the range is the model's worst error on cells it never saw.
    """
    from bench.analyse.analysis import analyse
    from bench.analyse.predict import predictions

    ms = [m] if isinstance(m, int) else list(m)
    ns = [n_x] if isinstance(n_x, int) else list(n_x)
    if not ms or not ns or any(int(v) < 1 for v in [*ms, *ns]) or iterations < 1:
        raise BenchError(f"sizes and iterations must be positive integers, got m={ms}, n_x={ns}, {iterations}")
    folder = Path(results)
    a = analyse(load_results(folder), load_metadata(folder))
    cells = [(int(a_), int(b)) for a_ in ms for b in ns]
    return predictions(a.models, a.model_table, cells, implementations, iterations, largest=a.largest_fitted)
