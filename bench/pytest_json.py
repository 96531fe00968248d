"""pytest-benchmark's JSON as the suite's tidy table, so the same plot and report code draws it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.base.errors import BenchError
from bench.base.results import COLUMNS, STATUS_OK


def load_pytest_json(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows from each benchmark's extra_info (implementation, m, n_x, ...) and its stats."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"no pytest-benchmark file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"corrupt pytest-benchmark file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchError(f"corrupt pytest-benchmark file {path}: no 'benchmarks' list")
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        if "implementation" not in info:
            continue  # a benchmark of something else
        try:
            nbytes = int(info["bytes_x"])
            median = float(stats["median"])
            rows.append(
                {
                    "implementation": str(info["implementation"]),
                    "m": int(info["m"]),
                    "n_x": int(info["n_x"]),
                    "dtype": str(info["dtype"]),
                    "layout": str(info["layout"]),
                    "threads": int(info["threads"]),
                    "status": STATUS_OK,
                    "median_s": median,
                    "iqr_s": float(stats["iqr"]),
                    "min_s": float(stats["min"]),
                    "rounds": int(stats["rounds"]),
                    "loops": int(stats.get("iterations", 1)),
                    "compile_s": info.get("compile_s"),
                    "predicted_s": None,
                    "bytes_x": nbytes,
                    "gbps": nbytes / median / 1e9,
                    "bw_fraction": None,
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"corrupt pytest-benchmark file {path}: benchmark {bench.get('name')}: {exc}") from None
    if not rows:
        raise BenchError(f"{path} holds no benchmarks of this suite (none with extra_info.implementation)")
    machine = data.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    meta = {
        "machine": {
            "cpu": cpu.get("brand_raw") or machine.get("processor") or "unknown CPU",
            "cores": cpu.get("count", "?"),
            "python": machine.get("python_version"),
            "date": data.get("datetime"),
            "git_commit": (data.get("commit_info") or {}).get("id", "unknown"),
        },
        "profile": f"pytest-benchmark ({path.name})",
        "source": "pytest-benchmark",
    }
    return pd.DataFrame(rows, columns=list(COLUMNS)), meta
