"""The peers (JAX, PyTorch): lazy imports, scoped float64, no copies, thread pools fixed per row.

The registry-wide tests (test_propagate, test_optimize, test_properties, ...) check their
answers against the mpmath reference; these check what is particular to them. Tests that
need a peer's package skip with the reason when it is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bench.cli
import bench.measure.runner
import bench.measure.user
from bench.cli import main
from bench.measure.data import make_problem
from bench.measure.isolated import cores_for, time_isolated
from bench.measure.timing import thread_limits
from implementations import REGISTRY
from tests.helpers import assert_matches_reference, flat_memory
from tests.reference import reference_gradients

PEERS = [n for n, impl in REGISTRY.items() if impl.requirements]


def test_importing_the_registry_imports_no_peer_package() -> None:
    code = "import sys, implementations; print(json.dumps(sorted({'jax', 'torch'} & set(sys.modules))))"
    done = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("name", PEERS)
def test_peers_declare_requirements_and_say_what_is_missing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    impl = REGISTRY[name]
    assert impl.setup_fn is not None, "a peer converts its inputs in set-up, outside timing"
    monkeypatch.setattr("importlib.util.find_spec", lambda module: None)
    reason = impl.unavailable
    assert reason is not None and impl.requirements[0] in reason and ".[peers]" in reason


def test_thread_limits_enter_and_restore_an_implementations_own_pool() -> None:
    seen: list[str] = []

    @contextmanager
    def hook(threads: int) -> Iterator[None]:
        seen.append(f"enter {threads}")
        yield
        seen.append("exit")

    with thread_limits(1, hook):
        assert seen == ["enter 1"]
    assert seen == ["enter 1", "exit"]


def test_runner_times_isolated_implementations_in_a_pinned_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # feature_vectorized marked isolate: the worker (a fresh process) times the real one.
    registry = dict(REGISTRY, feature_vectorized=replace(REGISTRY["feature_vectorized"], isolate=True))
    monkeypatch.setattr(bench.measure.runner, "REGISTRY", registry)
    monkeypatch.setattr(bench.cli, "REGISTRY", registry)
    monkeypatch.setattr(bench.measure.user, "REGISTRY", registry)
    calls: list[Any] = []
    original = time_isolated

    def spy(*args: Any) -> Any:
        result = original(*args)
        calls.append(result)
        return result

    monkeypatch.setattr("bench.measure.runner.time_isolated", spy)
    monkeypatch.setattr(bench.measure.runner, "measure_hierarchy", flat_memory)
    args = ["run", "--profile", "quick", "--m", "8", "--n-x", "3", "--no-lecture", "--layouts", "C"]
    code = main(
        [*args, "--threads", "1", "--implementations", "fully_vectorized,feature_vectorized", "--out", str(tmp_path)]
    )
    assert code == 0, capsys.readouterr().err
    assert len(calls) == 1
    worker_result, note = calls[0]
    assert worker_result.cores == cores_for(1) and len(worker_result.cores) == 1 and note is None
    frame = pd.read_csv(tmp_path / "results.csv").set_index("implementation")
    row = frame.loc["feature_vectorized"]
    assert row["status"] == "ok" and row["threads"] == 1 and row["median_s"] == worker_result.median_s


def test_cores_for_takes_the_first_allowed_cores() -> None:
    assert len(cores_for(1)) == 1
    assert len(cores_for(10_000)) == len(cores_for(10_000)) >= 1


# --- JAX ---------------------------------------------------------------------------------


def test_jax_float64_is_scoped_and_stays_float64() -> None:
    jax = pytest.importorskip("jax")
    p = make_problem(23, 7, seed=4)
    assert not jax.config.jax_enable_x64
    prepared = REGISTRY["jax_jit"].setup(p.w, p.b, p.X, p.Y)
    grads = prepared.gradients(prepared.step())
    assert not jax.config.jax_enable_x64, "set-up or step left float64 enabled for the whole process"
    # float64 to 1e-9 of the 50-digit reference: a float32 computation would miss by ~1e-7.
    assert_matches_reference(grads, reference_gradients(p.w, p.b, p.X, p.Y), "float64", where="jax_jit")


def test_jax_step_returns_device_arrays_and_the_dtype_is_checked() -> None:
    pytest.importorskip("jax")
    p = make_problem(5, 2, seed=1)
    prepared = REGISTRY["jax_jit"].setup(p.w, p.b, p.X, p.Y)
    result = prepared.step()
    assert all(type(r).__module__.startswith("jax") for r in result)  # type: ignore[attr-defined]
    as_float32 = tuple(np.asarray(r, dtype=np.float32) for r in result)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="float32, not float64"):
        prepared.gradients(as_float32)


# --- PyTorch -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["C", "F"])
def test_torch_wraps_the_arrays_without_copying(layout: str) -> None:
    torch = pytest.importorskip("torch")
    p = make_problem(9, 4, seed=3, layout=layout)  # type: ignore[arg-type]
    prepared = REGISTRY["torch_eager"].setup(p.w, p.b, p.X, p.Y)
    cells = prepared.step.__closure__ or ()
    tensors = [c.cell_contents for c in cells if isinstance(c.cell_contents, torch.Tensor)]
    assert tensors, "the timed step holds no tensors"
    x_tensor = next(t for t in tensors if tuple(t.shape) == p.X.shape)
    assert x_tensor.data_ptr() == p.X.ctypes.data, "X was copied in set-up"
    assert not any(isinstance(c.cell_contents, np.ndarray) for c in cells)


def test_torch_threads_are_set_per_row_and_restored() -> None:
    torch = pytest.importorskip("torch")
    impl = REGISTRY["torch_eager"]
    before = torch.get_num_threads()
    with thread_limits(1, impl.thread_hook):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
