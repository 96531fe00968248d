"""The machine a run was measured on, in one line (plot footers, reports, comparisons)."""

from __future__ import annotations

from typing import Any


def machine_line(meta: dict[str, Any]) -> str:
    """One line naming the machine and date, for plot footers and the report."""
    machine = meta.get("machine", meta)
    cpu = machine.get("cpu", "unknown CPU")
    cores = machine.get("cores", "?")
    mem = machine.get("memory_gib", "?")
    numpy_version = machine.get("versions", {}).get("numpy", "?")
    # threadpoolctl lists OpenMP runtimes and other packages' BLAS beside NumPy's (a framework may
    # load its own first): NumPy's where the run marked it.
    pools = [b for b in machine.get("blas", []) if b.get("internal_api") and b.get("internal_api") != "openmp"]
    pools.sort(key=lambda b: not b.get("numpy", False))
    blas: dict[str, Any] = pools[0] if pools else {}
    blas_name = f"{blas.get('internal_api', '?')} {blas.get('version') or ''}".strip()
    date = str(machine.get("date", "?"))[:10]
    return f"{cpu}, {cores} cores, {mem} GiB; NumPy {numpy_version} ({blas_name}); {date}"
