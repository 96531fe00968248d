"""`python -m bench check`: is a propagate right? Compared with a careful reference on small cases, with a diagnosis.

The cases: the course's own test case, then random data with m = 1, n_x = 1, float32, Fortran
order and a square X (where a transposed product gives no shape error), and one with very
large |z|. On a mismatch the report says what differs (dw, db or cost), where, by how much,
and the likely cause where it is recognisable, by comparing the answer with what the usual
mistakes would give on the same data. Every case also checks that no input was changed.

At very large |z| the course's textbook cost, np.log(A), takes log(0) once A rounds to 1:
that case only ever warns.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from bench.base.errors import BenchError
from implementations import Gradients, Implementation, validate_inputs

Array = NDArray[Any]
RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-3}

# The likely causes, each in the words a learner can act on.
FORMULAS = {"dw": "dw = X @ dZ.T / m", "db": "db = np.sum(dZ) / m", "cost": "cost = -np.sum(...) / m"}
CAUSE_MISSING_M = "{what} is m = {m} times too large: the 1/m is missing ({formula})"
CAUSE_TWICE_M = "{what} is m = {m} times too small: divided by m twice"
CAUSE_SIGN = "{what} has the wrong sign: dZ = Y - A instead of A - Y, or the cost's leading minus is missing"
CAUSE_N_X = "{what} is divided by n_x = X.shape[0] instead of m = X.shape[1]"
CAUSE_SIGMOID = "the sigmoid is 1 / (1 + exp(z)): it needs exp(-z)"
CAUSE_TRANSPOSED_Z = "Z uses X transposed (examples as rows): Z = w.T @ X + b with X of shape (n_x, m)"
CAUSE_TRANSPOSED_DW = "dw uses X transposed: dw = X @ dZ.T / m with X of shape (n_x, m)"
CAUSE_SWAPPED_LOG = "log(A) and log(1 - A) are swapped in the cost: -(Y log A + (1 - Y) log(1 - A))"
CAUSE_BROADCAST = (
    "a (1, m) array met an (m,) or (m, 1) one and broadcast to (m, m): keep A, Y and dZ all of shape (1, m)"
)
CAUSE_PRODUCT = (
    "a product has its operands in the wrong order or one not transposed: "
    "with X (n_x, m) and w (n_x, 1), Z = w.T @ X + b and dw = X @ dZ.T / m"
)
CAUSE_INPLACE = (
    "an input was changed in place (X -= ..., X /= 255, Y[...] = ... or an out= argument on an input); "
    "propagate must leave w, X and Y as it found them: write X = X / 255 or work on a copy"
)


@dataclass(frozen=True)
class Case:
    """One input the function must get right; warn_only for inputs where textbook formulas lose precision."""

    name: str
    w: Array
    b: float
    X: Array
    Y: Array
    warn_only: bool = False

    @property
    def where(self) -> str:
        layout = "F" if self.X.flags.f_contiguous and not self.X.flags.c_contiguous else "C"
        return f"m={self.X.shape[1]}, n_x={self.X.shape[0]}, {self.X.dtype}, layout {layout}"


def course_case() -> Case:
    """The assignment's test case, with its integer labels converted as every entry point converts them."""
    w, b, X, Y = validate_inputs(
        np.array([[1.0], [2.0]]), 2.0, np.array([[1.0, 2.0, -1.0], [3.0, 4.0, -3.2]]), np.array([[1, 0, 1]])
    )
    return Case("the course's test case", w, b, X, Y)


def _random(name: str, m: int, n_x: int, seed: int, dtype: str = "float64", order: str = "C", z: float = 1.0) -> Case:
    rng = np.random.default_rng([seed, m, n_x])
    X = rng.standard_normal((n_x, m))
    w = rng.standard_normal((n_x, 1)) * z / math.sqrt(n_x)
    b = float(rng.standard_normal() * 0.1)
    Y = (rng.random((1, m)) < 0.5).astype(np.float64)
    X = np.asarray(X, dtype=dtype, order="F" if order == "F" else "C")
    return Case(name, w.astype(dtype), b, X, Y.astype(dtype), warn_only=z > 1.0)


def cases(seed: int = 2024) -> list[Case]:
    """The course's case first, then random shapes; the large-|z| case last (warnings only)."""
    return [
        course_case(),
        _random("m = 1", 1, 3, seed),
        _random("n_x = 1", 6, 1, seed),
        _random("float32", 9, 4, seed, dtype="float32"),
        _random("Fortran-order X", 7, 5, seed, order="F"),
        _random("square X (m = n_x = 4)", 4, 4, seed),
        _random("very large |z|", 8, 3, seed, z=60.0),
    ]


def reference(w: Array, b: float, X: Array, Y: Array, flip_sigmoid: bool = False) -> Gradients:
    """dw, db and cost in float64 with exactly rounded sums (math.fsum) and the overflow-free logistic forms.

    Independent of the suite's implementations, so that built-ins can be checked against it too.
    flip_sigmoid gives what a sigmoid of -z would: one of the mistakes the diagnosis looks for.
    """
    w64, X64, Y64 = (np.asarray(a, dtype=np.float64) for a in (w, X, Y))
    n_x, m = X64.shape
    dz: list[float] = []
    losses: list[float] = []
    for i in range(m):
        z = float(b) + math.fsum(float(w64[j, 0] * X64[j, i]) for j in range(n_x))
        z = -z if flip_sigmoid else z
        e = math.exp(-abs(z))
        a = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
        y = float(Y64[0, i])
        # -(y log a + (1 - y) log(1 - a)) without forming log(0): softplus of (1 - 2y) z.
        s = (1.0 - 2.0 * y) * z
        losses.append(max(s, 0.0) + math.log1p(e))
        dz.append(a - y)
    dw = np.array([math.fsum(X64[j, i] * dz[i] for i in range(m)) / m for j in range(n_x)]).reshape(n_x, 1)
    return Gradients(dw=dw, db=math.fsum(dz) / m, cost=math.fsum(losses) / m)


@dataclass(frozen=True)
class Finding:
    """What went wrong on one case: the component, how, and the likely cause if recognised."""

    case: Case
    what: str  # "dw", "db", "cost", "raised", "inputs", "returned"
    detail: str
    cause: str | None = None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _error_text(got: float, want: float) -> str:
    """How far: relative to the expected value, or absolute where that is 0."""
    if not math.isfinite(got):
        return "not finite"
    if want == 0:
        return f"absolute error {_fmt(abs(got - want))}"
    return f"relative error {abs(got - want) / abs(want):.3g}"


def _matches(got: Array, want: Array, rtol: float) -> bool:
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return False
    scale = max(float(np.max(np.abs(want))), 1e-12)
    return float(np.max(np.abs(got - want))) <= 10 * rtol * scale


def _candidates(case: Case, ref: Gradients) -> list[tuple[str, Gradients]]:
    """What the usual mistakes give on this case, with the cause each stands for (most specific first)."""
    n_x, m = case.X.shape
    out: list[tuple[str, Gradients]] = []
    if m > 1:
        out.append((CAUSE_MISSING_M, Gradients(ref.dw * m, ref.db * m, ref.cost * m)))
        out.append((CAUSE_TWICE_M, Gradients(ref.dw / m, ref.db / m, ref.cost / m)))
    out.append((CAUSE_SIGN, Gradients(-ref.dw, -ref.db, -ref.cost)))
    if n_x != m:
        out.append((CAUSE_N_X, Gradients(ref.dw * m / n_x, ref.db * m / n_x, ref.cost * m / n_x)))
    flipped = reference(case.w, case.b, case.X, case.Y, flip_sigmoid=True)
    out.append((CAUSE_SIGMOID, flipped))
    out.append((CAUSE_SWAPPED_LOG, Gradients(ref.dw, ref.db, flipped.cost)))
    if n_x == m:
        XT = np.ascontiguousarray(case.X.T)
        out.append((CAUSE_TRANSPOSED_Z, reference(case.w, case.b, XT, case.Y)))
        out.append((CAUSE_TRANSPOSED_DW, Gradients(XT.astype(np.float64) @ _dz(case).T / m, ref.db, ref.cost)))
    return out


def _dz(case: Case) -> Array:
    """A - Y as (1, m) float64, with the stable sigmoid."""
    X64 = case.X.astype(np.float64)
    z = case.w.astype(np.float64).T @ X64 + case.b
    e = np.exp(-np.abs(z))
    A = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return A - case.Y.astype(np.float64)


def _cause(what: str, got: Gradients, case: Case, ref: Gradients, rtol: float) -> str | None:
    for text, wrong in _candidates(case, ref):
        if _matches(np.asarray(getattr(got, what), dtype=np.float64), np.asarray(getattr(wrong, what)), rtol):
            return text.format(what=what, m=case.X.shape[1], formula=FORMULAS[what])
    return None


def _dw_shape_finding(case: Case, got: Array, ref: Gradients, rtol: float) -> Finding:
    n_x, m = case.X.shape
    detail = f"dw has shape {got.shape}, expected ({n_x}, 1) like w"
    if got.size == n_x and _matches(got.reshape(n_x, 1).astype(np.float64), ref.dw, rtol):
        if got.shape == (1, n_x):
            return Finding(case, "dw", detail, "dw is a row: dZ @ X.T / m gives (1, n_x); X @ dZ.T / m gives (n_x, 1)")
        return Finding(case, "dw", detail + "; its values are right", "keep dw 2-D: dw = X @ dZ.T / m, or reshape")
    if m > 1 and m in got.shape:
        return Finding(case, "dw", detail, CAUSE_BROADCAST)
    return Finding(case, "dw", detail, None)


def _compare(case: Case, got: Gradients) -> list[Finding]:
    ref = reference(case.w, case.b, case.X, case.Y)
    rtol = RTOL[case.X.dtype]
    findings: list[Finding] = []
    dw = np.asarray(got.dw)
    if dw.shape != ref.dw.shape:
        findings.append(_dw_shape_finding(case, dw, ref, rtol))
    else:
        dw64 = dw.astype(np.float64)
        # Scales: the size of the terms each sum adds up, so a sum that cancels to ~0 is not held to 0's precision.
        dz = np.abs(_dz(case))
        dw_scale = np.maximum(np.abs(ref.dw), (np.abs(case.X.astype(np.float64)) @ dz.T) / case.X.shape[1])
        err = np.abs(dw64 - ref.dw) / np.maximum(dw_scale, 1e-300)
        err = np.where(np.isfinite(dw64), err, np.inf)
        j = int(np.argmax(err))
        if err.flat[j] > rtol:
            findings.append(
                Finding(
                    case,
                    "dw",
                    f"dw[{j}, 0] is {_fmt(float(dw64.flat[j]))}, expected {_fmt(float(ref.dw.flat[j]))} "
                    f"({_error_text(float(dw64.flat[j]), float(ref.dw.flat[j]))})",
                    _cause("dw", got, case, ref, rtol),
                )
            )
    db_scale = max(abs(ref.db), float(np.mean(np.abs(_dz(case)))), 1e-300)
    for what, value, want, scale in (
        ("db", got.db, ref.db, db_scale),
        ("cost", got.cost, ref.cost, max(abs(ref.cost), 1e-300)),
    ):
        error = abs(value - want) / scale if math.isfinite(value) else math.inf
        if error > rtol:
            findings.append(
                Finding(
                    case,
                    what,
                    f"{what} is {_fmt(value)}, expected {_fmt(want)} ({_error_text(value, want)})",
                    _cause(what, got, case, ref, rtol),
                )
            )
    return findings


def _exception_finding(case: Case, exc: Exception, source: str | None) -> Finding:
    from bench.measure.user import _one_line, _where

    path = Path(source.rpartition(":")[0]).resolve() if source and source.rpartition(":")[0].endswith(".py") else None
    text = str(exc)
    cause = None
    if "could not be broadcast" in text:
        cause = CAUSE_BROADCAST
    elif any(k in text for k in ("matmul", "not aligned", "core dimension")):
        cause = CAUSE_PRODUCT
    elif "expected a single number" in text and case.X.shape[1] > 1 and f"{case.X.shape[1]}" in text:
        cause = CAUSE_BROADCAST
    return Finding(case, "raised", f"raised {_one_line(exc)}{_where(exc, path)}", cause)


def describe_failure(exc: Exception) -> str:
    """One line for the reason column: a gate's mismatch as it stands, any other exception with where it came from."""
    from bench.base.errors import GateError
    from bench.measure.user import _one_line, _where

    if isinstance(exc, GateError):
        return str(exc)
    return f"raised {_one_line(exc)}{_where(exc)}"


def run_case(impl: Implementation, case: Case) -> list[Finding]:
    """The implementation on one case, through its set-up step as a run would call it; findings if wrong."""
    w, X, Y = case.w.copy(order="K"), case.X.copy(order="K"), case.Y.copy(order="K")
    try:
        # User code may overflow (exp), divide by zero or take log(0): NumPy's warnings are not
        # errors here (the test suite turns RuntimeWarning into an error), the answer is judged instead.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = impl.setup(w, case.b, X, Y)
            got = prepared.gradients(prepared.step())
    except Exception as exc:
        return [_exception_finding(case, exc, impl.source)]
    changed = [n for n, a, a0 in (("w", w, case.w), ("X", X, case.X), ("Y", Y, case.Y)) if not np.array_equal(a, a0)]
    findings = []
    if changed:
        findings.append(Finding(case, "inputs", f"{' and '.join(changed)} changed by the call", CAUSE_INPLACE))
    with np.errstate(all="ignore"):
        findings += _compare(case, got)
    return findings


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one implementation: a one-line summary (for results.csv) and a few lines for people."""

    label: str
    passed: bool
    summary: str
    lines: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())


def _large_z_warning(finding: Finding) -> str:
    return (
        f"warning: at very large |z| ({finding.case.where}) {finding.detail}: the textbook np.log(A) takes log(0) "
        "once A rounds to 1, so training on such data shows nan costs. Not a failure; "
        "the suite's cost uses log1p(exp(-|z|)) instead"
    )


def check_implementation(impl: Implementation, case_list: Sequence[Case] | None = None) -> CheckResult:
    """Run every case; the first failing case is described in full, the others named."""
    if impl.unavailable is not None:  # a missing package is not a wrong answer
        line = f"skip {impl.name}: {impl.unavailable}"
        return CheckResult(label=impl.name, passed=True, summary=line, lines=(line,))
    failing: list[tuple[Case, list[Finding]]] = []
    warns: list[str] = []
    all_cases = list(case_list) if case_list is not None else cases()
    for case in all_cases:
        findings = run_case(impl, case)
        if case.warn_only:
            # Only the cost may lose precision at large |z|: the textbook dw and db stay exact there.
            warns += [_large_z_warning(f) for f in findings if f.what == "cost"]
            findings = [f for f in findings if f.what != "cost"]
        if findings:
            failing.append((case, findings))
    origin = f" ({impl.source})" if impl.source and impl.source != impl.name else ""
    if not failing:
        line = f"ok   {impl.name}{origin}: matches the reference on {len(all_cases)} cases"
        return CheckResult(impl.name, True, "", (line, *(f"  {w}" for w in warns)), tuple(warns))
    case, findings = failing[0]
    first = findings[0]
    lines = [f"FAIL {impl.name}{origin}"]
    lines.append(f"  on {case.name} ({case.where}): {first.detail}")
    others = [f.what for f in findings[1:] if f.what != first.what]
    if others:
        lines.append(f"  also differs there: {', '.join(dict.fromkeys(others))}")
    cause = first.cause or next((f.cause for f in findings if f.cause), None)
    if cause:
        lines.append(f"  likely cause: {cause}")
    passed_names = [c.name for c in all_cases if all(c is not fc for fc, _ in failing)]
    lines.append(
        f"  fails {len(failing)} of {len(all_cases)} cases"
        + (f"; right on: {', '.join(passed_names)}" if passed_names else "")
    )
    summary = f"{first.detail} on {case.name}" + (f"; likely cause: {cause}" if cause else "")
    return CheckResult(impl.name, False, summary, tuple(lines), tuple(warns))


def check_before_run(implementations: Sequence[Implementation], stream: TextIO | None = None) -> dict[str, str]:
    """Check the functions from outside the registry before a run; returns {name: summary} of those that fail.

    Registered implementations are checked by the test suite against a 50-digit reference, and
    each cell of a run gates them against fully_vectorized, so they are not checked again here.
    """
    failed: dict[str, str] = {}
    for impl in implementations:
        if impl.source is None:
            continue
        result = check_implementation(impl)
        print("\n".join(result.lines), file=stream or sys.stderr, flush=True)
        if not result.passed:
            failed[impl.name] = result.summary
    return failed


def add_check_command(sub: Any, handler: Callable[[argparse.Namespace], int] | None = None) -> None:
    """The `check` subcommand, for the CLI's subparsers."""
    cmd = sub.add_parser(
        "check",
        help="check functions against the reference on the course's test case and random data (no timing)",
        description="Check each target (a registered name, path/to/file.py:function or package.module:function) "
        "on the course's test case and random data of several shapes; say what differs and the likely cause.",
    )
    cmd.add_argument("targets", nargs="+", metavar="TARGET", help="what to check")
    cmd.add_argument("--label", action="append", default=[], help="a name for each function target, in order")
    cmd.set_defaults(handler=handler or _cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    from bench.measure.user import parse_targets, resolve

    try:
        targets = tuple(t for text in args.targets for t in parse_targets(text))
    except argparse.ArgumentTypeError as exc:
        raise BenchError(str(exc)) from None
    labels = [label for text in args.label for label in text.split(",")]
    results = [check_implementation(impl) for impl in resolve(targets, labels)]
    for result in results:
        print("\n".join(result.lines), flush=True)
    failed = [r.label for r in results if not r.passed]
    if failed:
        print(f"{len(failed)} of {len(results)} failed the check: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
