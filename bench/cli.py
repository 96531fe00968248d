"""Command line: `python -m bench run | check | robustness | estimate | plot | report | compare | predict | kernels`.

Bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bench.base.constants import DEFAULT_SEED, STEADY_MEMORY
from bench.base.errors import BenchError, GateError
from bench.base.results import RESULTS_CSV, ensure_writable_dir
from bench.measure.check import add_check_command
from bench.measure.data import DTYPES, LAYOUTS
from bench.measure.profiles import PROFILES
from bench.measure.timing import WARMUP_S
from bench.measure.user import parse_targets
from implementations import REGISTRY, with_goals

if TYPE_CHECKING:  # pandas is imported only by the commands that read tables
    import pandas as pd

    from bench.measure.runner import RunConfig

MAX_SIZE = 2**40


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_ints(text: str) -> tuple[int, ...]:
    values = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not an integer") from None
        if not 1 <= value <= MAX_SIZE:
            raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {value}")
        values.append(value)
    return tuple(dict.fromkeys(values))


def _seed(text: str) -> int:
    """A non-negative integer, as NumPy's generators take it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {value}")
    return value


def _threads(text: str) -> tuple[str, ...]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if part != "all" and not (part.isdigit() and int(part) >= 1):
            raise argparse.ArgumentTypeError(f"thread count must be a positive integer or 'all', got {part!r}")
        values.append(part)
    return tuple(values)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"a percentage must be 0 or more, got {text}")
    return value


def _choices(known: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; choose from {', '.join(known)}"
            )
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m bench",
        description="Time logistic-regression gradient steps across sizes, plot the speedups, "
        "and report where the course note's ~10x and ~300x hold on this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_run(sub)
    add_check_command(sub)
    _add_robustness(sub)
    _add_estimate(sub)
    _add_plot_and_report(sub)
    _add_compare(sub)
    _add_predict(sub)
    _add_kernels(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    run = sub.add_parser("run", help="time the grid and write results.csv + metadata.json")
    run.add_argument(
        "--profile",
        default="default",
        choices=list(PROFILES),
        help="grid profile: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()),
    )
    run.add_argument(
        "--implementations",
        type=parse_targets,
        help=f"comma-separated subset of: {', '.join(REGISTRY)} (default: all), installed entry points, "
        "and your own functions as path/to/file.py:function or package.module:function",
    )
    run.add_argument(
        "--label",
        action="append",
        default=[],
        help="names for your own functions in the results, one per function target, in order (comma-separated)",
    )
    run.add_argument("--m", type=_positive_ints, help="comma-separated m values replacing the profile's")
    run.add_argument("--n-x", type=_positive_ints, help="comma-separated n_x values replacing the profile's")
    run.add_argument(
        "--threads",
        type=_threads,
        help="BLAS/Numba threads for implementations that use them: N, 'all' or a list "
        "like 1,all (default: the profile's; others always run on 1)",
    )
    run.add_argument("--dtypes", type=_choices(DTYPES, "dtype"), help="comma-separated: float64,float32")
    run.add_argument(
        "--layouts",
        type=_choices(LAYOUTS, "layout"),
        help="C (features-major, the course's array) and/or F (examples-major)",
    )
    run.add_argument("--seed", type=_seed, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    run.add_argument(
        "--out",
        type=Path,
        default=Path("results/local"),
        help="output folder (default results/local); an earlier run there is moved to OUT/previous/<date>_<commit>/; "
        "one run at a time per folder",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --out: keep its rows and time only the missing ones",
    )
    run.add_argument("--no-lecture", action="store_true", help="skip the lecture's dot-product demo")
    run.set_defaults(handler=_cmd_run)


def _add_robustness(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    robust = sub.add_parser(
        "robustness",
        help="measure how much the allocator, power-of-two sizes, the baseline's style and the process move "
        "a timing, and write robustness.csv",
    )
    robust.add_argument(
        "--out", type=Path, default=Path("results/local"), help="folder for robustness.csv (default results/local)"
    )
    robust.add_argument("--seed", type=_seed, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    robust.add_argument(
        "--processes", type=int, default=3, help="fresh processes for the run-to-run spread (3 or more; default 3)"
    )
    robust.set_defaults(handler=_cmd_robustness)


def _add_estimate(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    again = sub.add_parser(
        "estimate",
        help="derive a run's rows, speedups and stability again from its rounds.csv and canary.csv (no timing)",
    )
    again.add_argument(
        "--results", type=Path, default=Path("results/local"), help="a run's folder (default results/local)"
    )
    again.set_defaults(handler=_cmd_estimate)


def _add_plot_and_report(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    for name, helptext in (
        ("plot", "draw the plots from a results file (no timing)"),
        ("report", "write REPORT.md and REPORT.html from a results file (no timing)"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        source = cmd.add_mutually_exclusive_group()
        source.add_argument(
            "--results",
            type=Path,
            default=Path("results/local"),
            help=f"a run's {RESULTS_CSV} or its folder (default results/local)",
        )
        source.add_argument(
            "--from-pytest-json",
            type=Path,
            metavar="FILE",
            help="a pytest-benchmark JSON file (make pytest-bench) instead of a run",
        )
        cmd.add_argument("--out", type=Path, help="output folder (default: plots/<run> or the results folder)")
        if name == "report":
            cmd.add_argument("--plots", type=Path, help="folder of the plots the report links to (default --out)")
            cmd.add_argument(
                "--readme",
                type=Path,
                help="also rewrite the findings between the markers in this README from the same run",
            )
        cmd.set_defaults(handler=_cmd_plot if name == "plot" else _cmd_report)


def _add_compare(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    compare = sub.add_parser(
        "compare",
        help="compare runs side by side (any machines): COMPARE.md, its tables as CSV, plots",
        description="Align runs on (implementation, m, n_x, dtype, layout, threads) and compare their times and "
        "speedups; the first run is the one the others are compared with.",
    )
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="a run's folder (or its results.csv)")
    compare.add_argument("--out", type=Path, help="output folder (default results/compare/<A>_vs_<B>)")
    compare.add_argument(
        "--fail-if-slower",
        type=_percent,
        metavar="PCT",
        help="exit 1 if an implementation is more than PCT%% slower than in the first run, beyond noise (for CI)",
    )
    compare.set_defaults(handler=_cmd_compare)


def _add_predict(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    predict = sub.add_parser(
        "predict",
        help="predict seconds per gradient step at sizes a run did not measure, from its cost models",
        description="Each implementation's cost model, fitted on the run's grid (float64, C order, 1 thread), "
        "predicts one step at every m x n_x asked for; the range is the model's worst error on cells it never saw.",
    )
    predict.add_argument(
        "--results", type=Path, default=Path("results/local"), help="a run's folder (default results/local)"
    )
    predict.add_argument("--m", type=_positive_ints, required=True, help="comma-separated m values (examples)")
    predict.add_argument("--n-x", type=_positive_ints, required=True, help="comma-separated n_x values (features)")
    predict.add_argument("--implementations", help="comma-separated subset (default: every one the run measured)")
    predict.add_argument(
        "--iterations", type=_positive_int, default=1, help="gradient steps to price as well (e.g. 2000; default 1)"
    )
    predict.add_argument("--out", type=Path, help="also write the predictions to this CSV file")
    predict.set_defaults(handler=_cmd_predict)


# `bench kernels`' default shape: 512 MiB of float64, far out of any cache, where the goals are set.
KERNELS_SHAPE = (16_384, 4_096)  # m, n_x


def _add_kernels(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    kernels = sub.add_parser(
        "kernels",
        help="time each compiled kernel's goal against fully_vectorized at one shape, by hand "
        f"(default m = {KERNELS_SHAPE[0]:,}, n_x = {KERNELS_SHAPE[1]:,}: 512 MiB of X, a minute or two)",
        description="Each kernel with a goal, the reference and a one-pass read of the same X, in blocks of "
        f"consecutive calls after {WARMUP_S * 1e3:g} ms of untimed ones, in a fresh random order per repetition; "
        "the speedup within each repetition, the spreads, the share of the roof, and each goal met or missed; "
        f"a line where the read's speed changed by more than {STEADY_MEMORY:g}x between repetitions (the machine "
        "changed speed).",
    )
    kernels.add_argument("--m", type=_positive_int, default=KERNELS_SHAPE[0], help="examples (default %(default)s)")
    kernels.add_argument("--n-x", type=_positive_int, default=KERNELS_SHAPE[1], help="features (default %(default)s)")
    kernels.add_argument(
        "--layouts", type=_choices(LAYOUTS, "layout"), default=("F", "C"), help="F and/or C (default both)"
    )
    kernels.add_argument("--reps", type=_positive_int, default=6, help="repetitions (default %(default)s)")
    kernels.add_argument(
        "--calls", type=_positive_int, default=15, help="timed calls per block, 2 or more (default %(default)s)"
    )
    kernels.add_argument("--seed", type=_seed, default=DEFAULT_SEED, help=f"data seed (default {DEFAULT_SEED})")
    kernels.add_argument("--out", type=Path, help="also write the table to this CSV file")
    kernels.set_defaults(handler=_cmd_kernels)


def _cmd_kernels(args: argparse.Namespace) -> int:
    import psutil

    from bench.base.results import write_csv_atomic
    from bench.measure.by_hand import Settings, time_kernels
    from bench.measure.metadata import collect_metadata
    from bench.measure.rundir import benchmark_processes, other_runs
    from bench.present.by_hand_report import kernels_text

    if args.calls < 2:
        raise BenchError(f"--calls must be 2 or more (a spread needs two calls), got {args.calls}")
    # X as made, and one copy in the other layout, at a time; the reference's temporaries are small beside them.
    need, free = 2 * args.m * args.n_x * 8, psutil.virtual_memory().available
    if need > 0.8 * free:
        raise BenchError(
            f"m = {args.m:,} x n_x = {args.n_x:,} needs about {need / 2**30:,.1f} GiB of memory, "
            f"{free / 2**30:,.1f} GiB is free; choose smaller --m or --n-x"
        )
    if args.out is not None:  # before anything is timed: an unwritable path is one line
        ensure_writable_dir(args.out.parent)
    for other in [o.describe() for o in other_runs()] + benchmark_processes():
        print(f"warning: another benchmark is running on this machine ({other}); timings will be disturbed",
              file=sys.stderr)  # fmt: skip
    settings = Settings(m=args.m, n_x=args.n_x, layouts=args.layouts, reps=args.reps, calls=args.calls, seed=args.seed)
    table, interrupted = time_kernels(settings)
    if not table.empty:
        print(kernels_text(table, collect_metadata(), args.m, args.n_x))
    if args.out is not None and not table.empty:
        try:
            write_csv_atomic(args.out, table)
        except OSError as exc:
            raise BenchError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}", file=sys.stderr)
    if interrupted:
        print(
            f"interrupted: {len(table)} of {len(settings.layouts) * len(with_goals())} kernels timed", file=sys.stderr
        )
        return 130
    return 0


def _positive_int(text: str) -> int:
    if "," in text:
        raise argparse.ArgumentTypeError(f"one positive integer, got {text!r}")
    return _positive_ints(text)[0]


def _cmd_predict(args: argparse.Namespace) -> int:
    from bench.analyse.analysis import analyse
    from bench.analyse.predict import predictions
    from bench.base.results import load_metadata, load_results, write_csv_atomic
    from bench.present.predict_report import predictions_text

    if args.out is not None:  # before anything is computed: an unwritable path is one line
        ensure_writable_dir(args.out.parent)
    frame, meta = load_results(args.results), load_metadata(args.results)
    a = analyse(frame, meta)
    names = [n.strip() for n in args.implementations.split(",") if n.strip()] if args.implementations else None
    cells = [(m, n) for m in args.m for n in args.n_x]
    table = predictions(a.models, a.model_table, cells, names, args.iterations, largest=a.largest_fitted)
    print(predictions_text(table, a.meta))
    if args.out is not None:
        try:
            write_csv_atomic(args.out, table)
        except OSError as exc:
            raise BenchError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _no_cells_message(args: argparse.Namespace) -> str:
    profile = PROFILES[args.profile]
    m, n_x = min(args.m or profile.m), min(args.n_x or profile.n_x)
    return (
        f"no cell left to time: every m x n_x asked for is above the {profile.name} profile's limit of "
        f"{profile.max_elements:,} elements (the smallest, m={m:,} x n_x={n_x:,}, has {m * n_x:,}); "
        "choose smaller --m or --n-x"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.measure.rundir import claimed, why_nothing_timed
    from bench.measure.runner import run

    profile = PROFILES[args.profile]
    cells = profile.cells(args.m, args.n_x)
    if not cells:  # before anything is written or moved
        raise BenchError(_no_cells_message(args))
    config = _run_config(args, cells)  # imports the user's functions: a bad target fails before the folder is touched
    with claimed(args.out, resume=args.resume):
        summary = run(config)
        if not summary.interrupted and args.m is None and args.n_x is None:
            summary = _locate(config, profile.locate_rounds, summary)
    verb = "interrupted after" if summary.interrupted else "done:"
    why = ""
    if summary.timed == 0 and not summary.interrupted:
        why = f" (nothing timed: {why_nothing_timed(summary.results, summary.reused)})"
    print(
        f"{verb} {summary.timed} rows timed{why}, {summary.skipped} skipped (cut-off, memory or a missing package), "
        f"{summary.reused} kept from before; results in {summary.results}",
        file=sys.stderr,
    )
    if summary.noisy:
        print(summary.noisy, file=sys.stderr)
    if summary.interrupted:
        print("run again with --resume to finish without re-timing finished rows", file=sys.stderr)
        return 130
    if summary.failed:
        print(
            f"{len(summary.failed)} implementation(s) failed the check (rows marked failed_check, "
            f"why in the reason column): {', '.join(summary.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


# Re-measuring groups in doubt after a locating round: a short budget, the sweep had its own.
LOCATE_REMEASURE_S = 10.0


def _locate(config: RunConfig, rounds: int, summary: Any) -> Any:
    """Rounds of cells between the grid's sizes where a verdict's threshold is not yet within 1.5x of a cell."""
    from dataclasses import replace

    from bench.analyse.locate import locate_run
    from bench.base.results import load_metadata, load_results
    from bench.measure.runner import run

    # The spread goals' groups had their passes after the sweep; a locating round adds none.
    profile = replace(config.profile, remeasure_s=min(config.profile.remeasure_s, LOCATE_REMEASURE_S), spread_s=0.0)
    for k in range(rounds):
        cells = locate_run(load_results(config.out), load_metadata(config.out))
        if not cells:
            break
        shown = "; ".join(f"{m:,} x {n:,}" for m, n in cells)
        print(f"locating the verdicts' thresholds, round {k + 1}: {shown}", file=sys.stderr, flush=True)
        config = replace(config, located=(*config.located, *cells), resume=True, profile=profile)
        more = run(config)
        summary.timed += more.timed
        summary.skipped += more.skipped
        summary.noisy = more.noisy or summary.noisy
        if more.interrupted:
            summary.interrupted = True
            break
    return summary


def _run_config(args: argparse.Namespace, cells: list[tuple[int, int]]) -> RunConfig:
    from bench.measure.runner import RunConfig
    from bench.measure.timing import resolve_threads
    from bench.measure.user import resolve

    profile = PROFILES[args.profile]
    return RunConfig(
        profile=profile,
        implementations=resolve(args.implementations or tuple(REGISTRY), [x for t in args.label for x in t.split(",")]),
        cells=tuple(cells),
        dtypes=args.dtypes or profile.dtypes,
        layouts=args.layouts or profile.layouts,
        threads=tuple(dict.fromkeys(resolve_threads(t) for t in (args.threads or profile.threads))),
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        size_for_cache=args.m is None and args.n_x is None,
        lecture=not args.no_lecture,
        off_grid=profile.off_grid if args.m is None and args.n_x is None else (),
    )


def _cmd_estimate(args: argparse.Namespace) -> int:
    from bench.base.results import results_path
    from bench.measure.estimates import noisy_line
    from bench.measure.rundir import claimed
    from bench.measure.runner import reestimate

    folder = results_path(args.results).parent  # a missing run is one line, before any lock is taken
    with claimed(folder, resume=True):  # one writer per folder; nothing of the run moves
        stability = reestimate(folder)
    print(
        f"derived again from the rounds: {stability['unstable_rows']} unstable row(s), "
        f"{stability['uncertain_claim_cells']} uncertain claim cell(s); run `bench report` to rewrite the report",
        file=sys.stderr,
    )
    line = noisy_line(stability)
    if line:
        print(line, file=sys.stderr)
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from bench.measure.robustness import StudySettings, default_plan, run_study

    if args.processes < 3:
        raise BenchError(f"--processes must be 3 or more, got {args.processes}")
    from bench.measure.rundir import claimed

    # The study writes into a run's folder: the same one-writer lock, and nothing of the run moves.
    with claimed(args.out, resume=True):
        out = ensure_writable_dir(args.out)
        path = run_study(out, default_plan(args.processes), StudySettings(seed=args.seed))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame | None, Path]:
    from bench.base.results import load_lecture, load_metadata, load_results
    from bench.pytest_json import load_pytest_json

    if args.from_pytest_json is not None:
        frame, meta = load_pytest_json(args.from_pytest_json)
        return frame, meta, None, args.from_pytest_json.parent
    return (
        load_results(args.results),
        load_metadata(args.results),
        load_lecture(args.results),
        (args.results if args.results.is_dir() else args.results.parent),
    )


def _cmd_plot(args: argparse.Namespace) -> int:
    from bench.analyse.analysis import analyse
    from bench.present.plots import draw_all

    frame, meta, lecture, source = _load(args)
    out = ensure_writable_dir(args.out or Path("plots") / source.name)
    paths = draw_all(analyse(frame, meta, lecture, source), out)
    print(f"wrote {len(paths)} files to {out}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.analyse.analysis import analyse
    from bench.present.report import write_report

    if args.readme is not None and not args.readme.is_file():  # before anything is written
        raise BenchError(f"no README at {args.readme}")
    frame, meta, lecture, source = _load(args)
    out = ensure_writable_dir(args.out or source)
    analysis = analyse(frame, meta, lecture, source)
    # The plots `bench plot` draws by default for this run: plots/<run folder's name>.
    path = write_report(analysis, out, plots=args.plots or Path("plots") / source.name)
    print(f"wrote {path}", file=sys.stderr)
    if args.readme is not None:
        from bench.present.report import findings_markdown, profiles_markdown, update_readme

        blocks = {"findings": findings_markdown(analysis, out, args.readme), "profiles": profiles_markdown()}
        update_readme(args.readme, blocks)
        print(f"updated the findings in {args.readme}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.analyse.compare import compare_runs, default_out, slower_than
    from bench.present.compare_report import write_comparison

    comparison = compare_runs(args.runs)
    out = ensure_writable_dir(args.out or default_out(comparison))
    paths = write_comparison(comparison, out)
    sys.stdout.write(paths[0].read_text(encoding="utf-8"))
    print(f"wrote {len(paths)} files to {out}", file=sys.stderr)
    if args.fail_if_slower is not None:
        slower = slower_than(comparison, args.fail_if_slower)
        for line in slower:
            print(f"slower: {line}", file=sys.stderr)
        if slower:
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GateError as exc:
        print(f"error: correctness gate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code
