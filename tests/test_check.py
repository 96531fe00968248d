"""`check`: right functions pass, the usual mistakes are named, exceptions are one line, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.measure.check import cases, check_implementation, course_case, reference
from bench.measure.user import from_function, load_function, resolve
from implementations import REGISTRY
from tests.reference import reference_gradients

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FUNCTIONS = "tests.user_functions"


def _check(spec: str) -> tuple[bool, str, str]:
    result = check_implementation(resolve([spec])[0])
    return result.passed, "\n".join(result.lines), result.summary


def test_the_check_reference_agrees_with_the_50_digit_one() -> None:
    for case in cases():
        got = reference(case.w, case.b, case.X, case.Y)
        exact = reference_gradients(case.w, case.b, case.X, case.Y)
        np.testing.assert_allclose(got.dw, exact.dw, rtol=1e-12, atol=1e-15 * float(exact.dw_scale.max()))
        assert got.db == pytest.approx(exact.db, rel=1e-12, abs=1e-15)
        assert got.cost == pytest.approx(exact.cost, rel=1e-12)


def test_the_course_case_is_the_published_one() -> None:
    case = course_case()
    ref = reference(case.w, case.b, case.X, case.Y)
    np.testing.assert_allclose(ref.dw, [[0.99845601], [2.39507239]], atol=1e-8)
    assert ref.cost == pytest.approx(5.801545319394553, rel=1e-14)


@pytest.mark.parametrize("name", ["two_loop", "two_loop_lists", "feature_vectorized", "fully_vectorized"])
def test_registered_implementations_pass(name: str) -> None:
    result = check_implementation(REGISTRY[name])
    assert result.passed, result.lines
    assert result.warnings == (), "the suite's stable cost needs no warning at large |z|"


@pytest.mark.parametrize("spec", [f"{EXAMPLES}/course_propagate.py:propagate", f"{FUNCTIONS}:suite_style"])
def test_course_style_code_passes_with_a_warning_at_large_z(spec: str) -> None:
    # np.log(0) and exp overflow inside: pyproject turns RuntimeWarning into an error, so this
    # passing also shows the check keeps NumPy's warnings from user code to itself.
    result = check_implementation(resolve([spec])[0])
    assert result.passed, result.lines
    assert len(result.warnings) == 1 and "cost is nan" in result.warnings[0] and "log(0)" in result.warnings[0]


MISTAKES = {
    f"{EXAMPLES}/wrong_propagates.py:missing_one_over_m": ("db is 0.00436673, expected 0.00145558", "1/m is missing"),
    f"{EXAMPLES}/wrong_propagates.py:broadcast_mixup": ("dw has shape (2, 3), expected (2, 1)", "broadcast to (m, m)"),
    f"{EXAMPLES}/wrong_propagates.py:changes_its_input": ("Y changed by the call", "changed in place"),
    f"{EXAMPLES}/wrong_propagates.py:raises": ("raised ValueError: shapes (2,1) and (2,3) not aligned", "wrong order"),
    f"{FUNCTIONS}:sign_flipped": ("dw[", "wrong sign"),
    f"{FUNCTIONS}:sigmoid_of_plus_z": ("dw[", "it needs exp(-z)"),
    f"{FUNCTIONS}:dw_flat": ("dw has shape (2,), expected (2, 1) like w; its values are right", "keep dw 2-D"),
    f"{FUNCTIONS}:cost_without_m": ("cost is 17.4046, expected 5.80155 (relative error 2)", "cost is m = 3 times"),
    f"{FUNCTIONS}:returns_a_list": ("raised ValueError: returned a list; expected (grads, cost)", None),
}


@pytest.mark.parametrize("spec", list(MISTAKES))
def test_mistakes_are_named(spec: str) -> None:
    passed, text, summary = _check(spec)
    what, cause = MISTAKES[spec]
    assert not passed
    assert what in text and what in summary, text
    if cause is not None:
        assert f"likely cause: {cause}" in text or cause in text, text
    assert "Traceback" not in text and len(text.splitlines()) <= 5
    assert "\n" not in summary


def test_a_transposed_product_on_square_x_is_found_without_a_shape_error() -> None:
    impl = resolve([f"{FUNCTIONS}:dw_from_x_transposed"])[0]
    square = [c for c in cases() if c.X.shape[0] == c.X.shape[1]]
    result = check_implementation(impl, square)
    assert not result.passed and "dw[" in result.lines[1]
    assert "dw uses X transposed" in "\n".join(result.lines)


def test_the_diagnosis_line_names_the_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text("def propagate(w, b, X, Y):\n    return undefined_name\n")
    passed, text, _ = _check(f"{source}:propagate")
    assert not passed and "raised NameError: name 'undefined_name' is not defined (mine.py, line 2)" in text


def test_cli_check_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    good = f"{EXAMPLES}/course_propagate.py:propagate"
    assert main(["check", good, "fully_vectorized"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok   course_propagate.propagate") and "ok   fully_vectorized" in out
    assert main(["check", good, f"{EXAMPLES}/wrong_propagates.py:missing_one_over_m"]) == 1
    captured = capsys.readouterr()
    assert "FAIL wrong_propagates.missing_one_over_m" in captured.out
    assert captured.err.strip() == "1 of 2 failed the check: wrong_propagates.missing_one_over_m"


def _error_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    broken = tmp_path / "broken.py"
    broken.write_text("def propagate(w, b, X, Y)\n    return 1\n")
    raising = tmp_path / "raising.py"
    raising.write_text("import numpy as np\nraise RuntimeError('no data here')\n")
    return [
        (["check", f"{tmp_path}/missing.py:propagate"], "no file"),
        (["check", f"{broken}:propagate"], "cannot import broken.py: SyntaxError"),
        (
            ["check", f"{raising}:propagate"],
            "cannot import raising.py: RuntimeError: no data here (raising.py, line 2)",
        ),
        (["check", f"{EXAMPLES}/course_propagate.py:nope"], "has no function 'nope' (it defines: propagate"),
        (["check", "no_such_package_xyz.mod:propagate"], "cannot import module 'no_such_package_xyz.mod'"),
        (["check", "not a module:propagate"], "neither a .py file nor a dotted module name"),
        (["check", "nope"], "unknown implementation 'nope'"),
        (["check", ":propagate"], "is not path/to/file.py:function"),
        (["check", "tests.user_functions:NOT_A_FUNCTION"], "is not a function (it is of type int)"),
    ]


def test_bad_targets_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in _error_cases(tmp_path):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, args
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_check_in_a_fresh_process_prints_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "check", "examples/wrong_propagates.py:raises"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "line 59" in done.stdout or "wrong_propagates.py, line" in done.stdout


def test_load_function_reuses_the_module(tmp_path: Path) -> None:
    source = tmp_path / "twice.py"
    source.write_text("COUNT = []\nCOUNT.append(1)\ndef propagate(w, b, X, Y):\n    return COUNT\n")
    first, second = load_function(f"{source}:propagate"), load_function(f"{source}:propagate")
    assert first is second
    assert from_function(first, "x").source == "x"
