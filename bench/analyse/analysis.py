"""One analysis per run: every verdict, fit, table and figure the report, plots and page show.

Built once from the results table, its metadata, the lecture demo and the robustness study;
present/ formats it and computes nothing. `Analysis.write` puts each of its tables beside the
report as CSV or JSON, so that what REPORT.md says can be read, compared and checked by tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analyse import explain
from bench.analyse.beyond import (
    BEYOND_CHECKS_CSV,
    BEYOND_CSV,
    BEYOND_ROOFS_CSV,
    BEYOND_SHARES_CSV,
    LAYOUTS_CSV,
    Beyond,
    beyond,
)
from bench.analyse.crossovers import crossover_table
from bench.analyse.model import CostModel, fit_models
from bench.analyse.peers import CSV_FILES as PEER_CSV_FILES
from bench.analyse.peers import baselines, peer_tables
from bench.analyse.robustness import IMPACTS_CSV, Robustness, robustness
from bench.analyse.stability import STABILITY_CSV, UNSTABLE_CSV, Stability, stability
from bench.analyse.verdicts import RULE_CHECKS_CSV, VERDICTS_JSON, Verdict, claim_verdicts, rule_checks
from bench.analyse.views import claims_table, headline, pair_table, split_cells, split_off_grid
from bench.base.constants import COURSE_SHAPE
from bench.base.errors import BenchError
from bench.base.hierarchy import Hierarchy, curve_of, hierarchy_of, out_of_cache_bytes
from bench.base.results import ROOFS_CSV, ROUNDS_CSV, STATUS_OK, load_beside, write_csv_atomic, write_json_list_atomic
from bench.measure.robustness import ROBUSTNESS_CSV, load_robustness

CLAIMS_CSV = "claims.csv"


@dataclass(frozen=True)
class Analysis:
    """Everything the report states about one run, each part a DataFrame or a small dataclass."""

    frame: pd.DataFrame
    meta: dict[str, Any]
    lecture: pd.DataFrame | None
    lecture_figures: explain.Lecture | None
    hierarchy: Hierarchy | None
    claims: pd.DataFrame  # the note's speed table, measured (views.claims_table)
    verdicts: list[Verdict]  # one per claim, over the note's baseline
    stability: Stability
    models: dict[str, CostModel]  # headline slice of the grid, fitted once
    model_table: pd.DataFrame  # errors per implementation: on the cells fitted, left out, off the grid
    parameter_table: pd.DataFrame  # every parameter of every model, with unit and source
    off_grid: pd.DataFrame  # rows of the cells between the grid's sizes: tested on, never fitted
    located: pd.DataFrame  # rows of the cells measured to locate the thresholds: in the fits and rules, not plots
    rule_checks: pd.DataFrame  # each verdict's rule against the off-grid cells
    largest_fitted: float  # the most elements of any cell the models saw: predictions beyond it extrapolate
    level_table: pd.DataFrame
    partial: explain.Partial | None
    full: explain.Full | None
    kernel_wins: pd.DataFrame
    predicted: pd.DataFrame  # cells the cut-off skipped, with its prediction
    crossovers: pd.DataFrame
    pairs: pd.DataFrame  # every row against each baseline of the page (views.pair_table)
    beyond: Beyond | None
    robustness: Robustness | None
    robustness_problem: str | None  # why there is no study to show (None: none was beside the run)
    peers: dict[str, pd.DataFrame]

    def tables(self) -> dict[str, pd.DataFrame]:
        """File name -> table, for every table the report shows (verdicts go to JSON apart)."""
        out = {
            CLAIMS_CSV: self.claims,
            explain.MODEL_CSV: self.parameter_table,
            explain.MODEL_ERRORS_CSV: self.model_table,
            RULE_CHECKS_CSV: self.rule_checks,
            explain.LEVELS_CSV: self.level_table,
            explain.KERNEL_WINS_CSV: self.kernel_wins,
            explain.PREDICTED_CSV: self.predicted,
            STABILITY_CSV: self.stability.summary,
            UNSTABLE_CSV: self.stability.unstable,
            **{PEER_CSV_FILES[key]: table for key, table in self.peers.items()},
        }
        if self.beyond is not None:
            out |= {
                BEYOND_CSV: self.beyond.table,
                BEYOND_CHECKS_CSV: self.beyond.checks,
                BEYOND_ROOFS_CSV: self.beyond.cell_roofs,
                BEYOND_SHARES_CSV: self.beyond.cell_shares,
                LAYOUTS_CSV: self.beyond.layouts,
            }
        if self.robustness is not None:
            out[IMPACTS_CSV] = self.robustness.table()
        return out

    def write(self, out: Path) -> list[Path]:
        """Every table as CSV and the verdicts as JSON in `out`, each file all or nothing."""
        paths = []
        for name, table in self.tables().items():
            write_csv_atomic(out / name, table)
            paths.append(out / name)
        write_json_list_atomic(out / VERDICTS_JSON, [v.to_json() for v in self.verdicts])
        return [*paths, out / VERDICTS_JSON]


def load_study(folder: Path | None) -> tuple[pd.DataFrame | None, str | None]:
    """The robustness study beside a run (its ok rows), or None with why; None, None when there is none."""
    path = folder / ROBUSTNESS_CSV if folder is not None else None
    if path is None or not path.is_file():
        return None, None
    try:
        study = load_robustness(path)
    except BenchError as exc:
        return None, f"The robustness study could not be read ({exc}); measure it again with `make robustness`."
    study = study[study["status"] == STATUS_OK]
    if study.empty:
        return None, f"`{ROBUSTNESS_CSV}` has no measured comparison; measure it again with `make robustness`."
    return study.reset_index(drop=True), None


def load_rounds(folder: Path | None) -> pd.DataFrame | None:
    """The run's every timed round (rounds.csv), or None where the run kept none or it cannot be read."""
    if folder is None:
        return None
    try:
        return load_beside(folder, ROUNDS_CSV, ("implementation", "m", "n_x", "dtype", "layout", "threads", "seconds"))
    except BenchError:
        return None  # the spreads are then not measured, and the report says so


def load_roofs(folder: Path | None) -> pd.DataFrame | None:
    """The one-pass read timed in the rounds of each cell out of cache (roofs.csv), or None where there is none."""
    if folder is None:
        return None
    try:
        return load_beside(folder, ROOFS_CSV, ("m", "n_x", "dtype", "layout", "threads", "seconds"))
    except BenchError:
        return None  # the shares then use the sweep's roof, and the report says which


def _other_verdicts(frame: pd.DataFrame) -> list[Verdict]:
    """The claims judged over every other baseline the run measured in the headline setting."""
    measured = set(headline(frame)["implementation"])
    return [v for b in baselines()[1:] if b in measured for v in claim_verdicts(frame, b)]


def analyse(
    frame: pd.DataFrame, meta: dict[str, Any], lecture: pd.DataFrame | None = None, study_folder: Path | None = None
) -> Analysis:
    """The run's analysis; the robustness study and the rounds are read from `study_folder` when they are there."""
    seen, off_grid = split_off_grid(frame, meta)
    frame, located = split_cells(seen, meta.get("located_cells"))
    data = headline(seen)  # the grid's cells and those measured to locate thresholds: what fits and rules see
    verdicts = claim_verdicts(seen)
    models = fit_models(data, curve_of(meta, 1), held_out=True)
    fitted = data[data["status"] == STATUS_OK]
    hierarchy = hierarchy_of(meta)
    study, problem = load_study(study_folder)
    return Analysis(
        frame=frame,
        meta=meta,
        lecture=lecture,
        lecture_figures=explain.lecture_figures(lecture),
        hierarchy=hierarchy,
        claims=claims_table(frame, COURSE_SHAPE),
        verdicts=verdicts,
        stability=stability(frame, meta),
        models=models,
        model_table=explain.model_table(models, data, headline(off_grid)),
        parameter_table=explain.parameter_table(models),
        off_grid=off_grid,
        located=located,
        rule_checks=rule_checks(verdicts, headline(off_grid)),
        largest_fitted=max((m * n for m, n in zip(fitted["m"], fitted["n_x"], strict=True)), default=0.0),
        level_table=explain.level_table(models),
        partial=explain.partial_figures(models, data, verdicts),
        full=explain.full_figures(models, meta, hierarchy, verdicts),
        kernel_wins=explain.kernel_wins(data, models),
        predicted=explain.predicted_cells(frame),
        crossovers=crossover_table(data, models),
        pairs=pair_table(frame),
        beyond=beyond(frame, meta, load_rounds(study_folder), load_roofs(study_folder)),
        robustness=robustness(study, frame, verdicts, _other_verdicts(frame)) if study is not None else None,
        robustness_problem=problem,
        peers=peer_tables(frame, out_of_cache_bytes(meta)),
    )
