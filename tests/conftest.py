"""Shared test settings: tolerances per dtype, and a small problem factory."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from implementations import REGISTRY

# Tolerances, relative to the size of the terms each sum adds up (see tests/reference.py):
# float64 must match the 50-digit reference to 1e-9. float32 carries about 7 digits and
# sums of up to a few hundred terms lose up to ~m * 6e-8 of the terms' size, so 1e-4.
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,  # the first call of a Numba kernel compiles for seconds
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def _skip_unavailable_implementations(request: pytest.FixtureRequest) -> None:
    """Tests parametrised over the registry skip, with the reason, an implementation whose package is missing."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("name") if callspec is not None else None
    if isinstance(name, str) and name in REGISTRY:
        reason = REGISTRY[name].unavailable
        if reason is not None:
            pytest.skip(f"{name} {reason}")


SMALL_SWEEP_BYTES = 8 * 2**20


@pytest.fixture(autouse=True)
def _small_memory_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs in tests sweep memory for real, but only to 8 MiB: the full sweep takes tens of seconds.

    The sweep and its knee finder are tested on their own in test_bandwidth.py.
    """
    import bench.measure.runner
    from bench.measure.bandwidth import measure_hierarchy

    def small(thread_counts: list[int], top: int | None = None) -> dict[str, object]:
        return measure_hierarchy(thread_counts, SMALL_SWEEP_BYTES)

    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", small)


@pytest.fixture(autouse=True)
def _own_run_registry(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs in tests register in a folder of their own, so a benchmark or another test suite running on
    the machine does not add its "another benchmark is running" warning to the output a test checks."""
    from bench.measure.rundir import REGISTRY_ENV

    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path_factory.mktemp("runs")))
