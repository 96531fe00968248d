"""bench.api: the table a run writes, from one call, and plots as Figures."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

import bench.measure.runner
from bench import api
from bench.base.errors import BenchError
from bench.base.results import COLUMNS, SPEEDUP_FIELDS
from tests.helpers import flat_memory
from tests.user_functions import course, sign_flipped


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    kernels: dict[str, api.Kernel] = {
        "mine": course,
        "flipped": sign_flipped,
        "two_loop": "two_loop",
        "vec": "fully_vectorized",
    }
    with pytest.MonkeyPatch.context() as patch:  # not about bandwidth: skip the seconds-long probe
        patch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
        return api.timings(kernels, sizes=[(2, 1), (2, 3), (5, 1), (5, 3)], threads=1)


def test_timings_returns_the_results_table(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == (*COLUMNS, *SPEEDUP_FIELDS)  # the table, with its paired speedups
    ok = frame[frame["status"] == "ok"]
    assert set(ok["implementation"]) == {"mine", "two_loop", "vec"} and len(ok) == 12
    assert (ok["median_s"] > 0).all() and set(frame["threads"]) == {1}
    assert frame.attrs["meta"]["sources"]["mine"] == "tests.user_functions.course"


def test_a_wrong_kernel_is_marked_and_not_timed(frame: pd.DataFrame) -> None:
    flipped = frame[frame["implementation"] == "flipped"]
    assert set(flipped["status"]) == {"failed_check"} and flipped["median_s"].isna().all()
    assert flipped["reason"].str.contains("wrong sign").all()


def test_figures_are_returned_not_saved(frame: pd.DataFrame) -> None:
    assert isinstance(api.speedup_figure(frame), Figure)
    assert isinstance(api.time_figure(frame, x="n_x"), Figure)
    assert isinstance(api.crossovers_figure(frame), Figure)
    with pytest.raises(BenchError, match="x must be 'm' or 'n_x'"):
        api.time_figure(frame, x="rows")


def test_bad_kernels_and_sizes_are_bench_errors() -> None:
    with pytest.raises(BenchError, match="unknown implementation 'nope'"):
        api.implementations({"a": "nope"})
    with pytest.raises(BenchError, match="sizes must be"):
        api.timings(["two_loop"], sizes=[(0, 3)])
    names = [impl.name for impl in api.implementations([course, "two_loop"])]
    assert names == ["course", "two_loop"]
    assert not api.check([sign_flipped], show=False)[0].passed
