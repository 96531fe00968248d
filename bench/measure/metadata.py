"""What machine and software a run measured on, stored beside its results."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numba
import numpy
import psutil
from threadpoolctl import threadpool_info

from bench.measure.timing import available_cores

PACKAGES = ("numpy", "numba", "llvmlite", "pandas", "matplotlib", "scipy", "threadpoolctl")


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            # Generated output (results/, plots/) does not make the code dirty.
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!results",
                ":!plots",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _numpys(library: str) -> bool:
    """Whether a loaded library ships with NumPy (numpy/, numpy.libs/ or numpy/.dylibs/ beside it)."""
    site = Path(numpy.__file__).resolve().parent.parent
    path = Path(library).resolve()
    return path.is_relative_to(site) and path.relative_to(site).parts[0] in ("numpy", "numpy.libs")


def numba_threading() -> dict[str, Any]:
    """Numba's threading layer as this process chose it, and what was asked for.

    Numba picks its layer (omp, tbb or workqueue) when its thread pool first starts, so `layer`
    is None until then; a run starts it in the memory sweep's roof read, before this is called.
    numba_parallel and the roof's read run on that pool: how it wakes its threads moves both.
    """
    try:
        layer: str | None = numba.threading_layer()  # type: ignore[attr-defined]
    except ValueError:  # the pool has not started in this process
        layer = None
    config: Any = numba.config  # set from the environment at import: not typed
    return {"layer": layer, "requested": str(config.THREADING_LAYER), "threads": int(config.NUMBA_NUM_THREADS)}


def collect_metadata() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, package versions, BLAS as threadpoolctl sees it, Numba's threading
    layer, commit, date."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    blas = [
        {
            **{k: info.get(k) for k in ("internal_api", "version", "threading_layer", "architecture", "num_threads")},
            # NumPy's own BLAS, among the libraries other packages (frameworks, SciPy) load beside it
            "numpy": _numpys(str(info.get("filepath", ""))),
        }
        for info in threadpool_info()
    ]
    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "blas": blas,
        "numba_threading": numba_threading(),
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pid_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
