"""Functions from outside the registry: resolve `file.py:function`, `package.module:function` and entry points.

A target is a registered name, the name of an installed entry point in the group ENTRY_POINT_GROUP,
or a spec with a colon. A function may follow the course's convention, `grads, cost = propagate(w, b, X, Y)`
with grads["dw"] and grads["db"], or return the suite's Gradients; either way it becomes an Implementation
whose timed step is the call alone, with the conversion to Gradients in Prepared.gradients (untimed).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.base.errors import BenchError
from implementations import REGISTRY, Gradients, Implementation, Prepared
from implementations.interface import FloatArray

ENTRY_POINT_GROUP = "logreg_vecbench.implementations"
EXPECTED = "(grads, cost) with grads['dw'] and grads['db'] as in the course, or Gradients(dw, db, cost)"


def is_spec(target: str) -> bool:
    """A function named by where it lives (a colon), rather than a registered or installed name."""
    return ":" in target


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed implementations by name; registered names win over an entry point of the same name."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in found if ep.name not in REGISTRY}


def known_names() -> list[str]:
    return [*REGISTRY, *entry_points()]


def parse_targets(text: str) -> tuple[str, ...]:
    """Comma-separated targets, checked for form only (argparse type): names must be known, specs need a function."""
    import argparse

    targets = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not targets:
        raise argparse.ArgumentTypeError(f"no implementation in {text!r}")
    names = known_names()
    for target in targets:
        if is_spec(target):
            where, _, function = target.rpartition(":")
            if not where or not function:
                raise argparse.ArgumentTypeError(
                    f"{target!r} is not path/to/file.py:function or package.module:function"
                )
        elif target not in names:
            raise argparse.ArgumentTypeError(
                f"unknown implementation {target!r}; choose from {', '.join(names)}, "
                "or give your own as path/to/file.py:function or package.module:function"
            )
    return targets


def _where(exc: BaseException, path: Path | None = None) -> str:
    """' (file.py, line N)' for the innermost frame in the user's file, or of a SyntaxError."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" ({Path(exc.filename or '?').name}, line {exc.lineno})"
    numpy_dir = Path(np.__file__).resolve().parent
    frames = inspect.getinnerframes(exc.__traceback__) if exc.__traceback__ else []
    for frame in reversed(frames):
        file = Path(frame.filename).resolve()
        # The line of the user's code that raised, not the line inside NumPy that noticed.
        if (path is None and numpy_dir not in file.parents) or file == path:
            return f" ({file.name}, line {frame.lineno})"
    return ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: Path, spec: str) -> Any:
    if path.suffix != ".py":
        raise BenchError(f"{spec!r}: {path} is not a .py file")
    if not path.is_file():
        raise BenchError(f"{spec!r}: no file {path}")
    path = path.resolve()
    # One module name per file, so loading it twice (check, then run) gives the same module.
    name = f"_logreg_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise BenchError(f"{spec!r}: cannot load {path} as a module")
    module = importlib.util.module_from_spec(module_spec)
    # As when the file is run as a script: its folder is importable, for helpers beside it.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise BenchError(f"cannot import {path.name}: {_one_line(exc)}{_where(exc, path)}") from None
    return module


def _import_module(dotted: str, spec: str) -> Any:
    if not all(part.isidentifier() for part in dotted.split(".")):
        raise BenchError(f"{spec!r}: {dotted!r} is neither a .py file nor a dotted module name")
    try:
        return importlib.import_module(dotted)
    except (Exception, SystemExit) as exc:
        raise BenchError(f"cannot import module {dotted!r}: {_one_line(exc)}{_where(exc)}") from None


def load_function(spec: str) -> Callable[..., Any]:
    """The callable a spec names: path/to/file.py:function or package.module:function (BenchError if not)."""
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute:
        raise BenchError(f"{spec!r} is not path/to/file.py:function or package.module:function")
    looks_like_file = where.endswith(".py") or "/" in where or "\\" in where
    module = _import_file(Path(where).expanduser(), spec) if looks_like_file else _import_module(where, spec)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            defined = sorted(
                n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__
            )
            hint = f" (it defines: {', '.join(defined)})" if defined else ""
            raise BenchError(f"{where} has no function {attribute!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj) and not isinstance(obj, Implementation):
        raise BenchError(f"{spec!r} is not a function (it is of type {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def default_label(spec: str) -> str:
    """`stem.function` for a file, `module.function` for a module (last part of the dotted name)."""
    where, _, attribute = spec.rpartition(":")
    stem = Path(where).stem if (where.endswith(".py") or "/" in where) else where.rsplit(".", 1)[-1]
    return f"{stem}.{attribute}"


def _number(name: str, value: Any) -> float:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is a {type(value).__name__}, expected a number") from None
    if array.size != 1:
        raise ValueError(f"{name} has shape {array.shape}, expected a single number")
    return float(array.reshape(()))


def to_gradients(result: object) -> Gradients:
    """A user function's answer as Gradients: the course's (grads, cost), a (dw, db, cost) tuple or Gradients.

    dw keeps the shape it came with, so the check can say when it is not (n_x, 1).
    """
    if isinstance(result, Gradients):
        return Gradients(dw=np.asarray(result.dw), db=_number("db", result.db), cost=_number("cost", result.cost))
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping):
        grads, cost = result
        missing = [k for k in ("dw", "db") if k not in grads]
        if missing:
            raise ValueError(f"grads has no {' or '.join(map(repr, missing))} (keys: {', '.join(map(str, grads))})")
        dw, db = grads["dw"], grads["db"]
    elif isinstance(result, tuple) and len(result) == 3:
        dw, db, cost = result
    else:
        kind = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
        raise ValueError(f"returned {kind}; expected {EXPECTED}")
    dw_array = np.asarray(dw)
    if not np.issubdtype(dw_array.dtype, np.number):
        raise ValueError(f"dw is an array of {dw_array.dtype}, expected numbers")
    return Gradients(dw=dw_array, db=_number("db", db), cost=_number("cost", cost))


def _is_jit(fn: Callable[..., Any]) -> bool:
    # A numba dispatcher compiles on its first call for each new signature: time that apart.
    return type(fn).__module__.startswith("numba")


def from_function(fn: Callable[..., Any] | Implementation, label: str, source: str | None = None) -> Implementation:
    """An Implementation around a propagate-like function (or an Implementation renamed to label)."""
    if isinstance(fn, Implementation):
        return dataclasses.replace(fn, name=label, source=source or fn.source)

    def setup(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Prepared:
        # The timed step is the user's call and nothing else; conversion happens in to_gradients, untimed.
        return Prepared(step=functools.partial(fn, w, b, X, Y), gradients=to_gradients)

    def propagate(w: FloatArray, b: float, X: FloatArray, Y: FloatArray) -> Gradients:
        return to_gradients(fn(w, b, X, Y))

    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    return Implementation(
        name=label,
        propagate=propagate,
        summary=doc[0] if doc else f"{label}: your own propagate",
        threading="blas",  # NumPy code may use BLAS threads; measured at each thread count like fully_vectorized
        jit=_is_jit(fn),
        setup_fn=setup,
        source=source or label,
    )


def _check_label(label: str) -> str:
    if not label or "," in label or label != label.strip():
        raise BenchError(f"label {label!r} must be non-empty, without commas or surrounding spaces")
    if label in REGISTRY:
        raise BenchError(f"label {label!r} is a registered implementation's name; choose another with --label")
    return label


def resolve(targets: Sequence[str], labels: Sequence[str] = ()) -> tuple[Implementation, ...]:
    """Implementations for the targets, in order; labels name the spec targets (those with a colon), in order."""
    specs = [t for t in targets if is_spec(t)]
    if labels and len(labels) != len(specs):
        raise BenchError(
            f"--label gives {len(labels)} label(s) for {len(specs)} function target(s) "
            "(one label per path/to/file.py:function or package.module:function, in order)"
        )
    spec_labels = dict(zip(specs, labels, strict=False)) if labels else {}
    installed = entry_points()
    resolved: list[Implementation] = []
    for target in targets:
        if target in REGISTRY:
            resolved.append(REGISTRY[target])
        elif is_spec(target):
            label = _check_label(spec_labels.get(target) or default_label(target))
            resolved.append(from_function(load_function(target), label, source=target))
        elif target in installed:
            ep = installed[target]
            try:
                loaded = ep.load()
            except (Exception, SystemExit) as exc:
                raise BenchError(f"cannot load entry point {target!r} ({ep.value}): {_one_line(exc)}") from None
            if not callable(loaded) and not isinstance(loaded, Implementation):
                raise BenchError(f"entry point {target!r} ({ep.value}) is a {type(loaded).__name__}, not a function")
            resolved.append(from_function(loaded, target, source=f"entry point {ep.value}"))
        else:
            raise BenchError(f"unknown implementation {target!r}; choose from {', '.join(known_names())}")
    names = [impl.name for impl in resolved]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise BenchError(f"two implementations are labelled {clashes[0]!r}; set distinct names with --label")
    return tuple(resolved)
