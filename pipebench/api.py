"""What the command line calls, and what users can call from Python."""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from pipebench import __version__
from pipebench.compare import Comparison, Threshold, against_baseline, read_summary, side_by_side
from pipebench.errors import InputError
from pipebench.experiment import Entry, Experiment, resolve
from pipebench.report.export import csv_text, file_name, meta_json, write_files
from pipebench.report.tables import (
    curves_table,
    delays_table,
    read_table,
    summary_table,
    timeline_table,
)
from pipebench.runner import Outcome, run_experiment
from pipebench.scenario import load_scenario
from pipebench.timeline import CostModel, RpdPlan, TimelineStats, Trace, build_timeline, stats_of


def schedule_timeline(
    name: str, costs: CostModel, microbatches: int, **options: object
) -> tuple[Trace | RpdPlan, TimelineStats]:
    """Simulate one schedule without training; returns its timeline and statistics.

    `costs` comes from `CostModel.build(stages, ...)`. Raises `InputError`
    for anything out of range, naming the argument.
    """
    timeline = build_timeline(name, costs, microbatches, **options)
    return timeline, stats_of(timeline)


def load_experiment(
    path: str | Path, overrides: list[str] | tuple = (), seeds: int | None = None
) -> Experiment:
    """Load, validate and resolve a scenario; raises `ScenarioError`/`InputError` if it is bad."""
    return resolve(load_scenario(path, overrides), seeds)


@dataclass(frozen=True)
class RunReport:
    experiment: Experiment
    summary: pd.DataFrame
    curves: pd.DataFrame
    out_dir: Path
    interrupted: bool


def default_out_dir(exp: Experiment) -> Path:
    """results/<scenario name, made safe for a file name>."""
    return Path("results") / file_name(exp.name, "run")


def run_scenario(
    exp: Experiment,
    out_dir: Path | None = None,
    workers: int = 1,
    on_prepared: Callable[[Entry], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    plots: bool = True,
) -> RunReport:
    """Run every schedule x seed x lr of `exp` and write its results to `out_dir`.

    Writes `summary.csv`, `curves.csv`, `delays.csv` (delay histograms),
    `timeline.csv` (the operations of each schedule's first rounds),
    `meta.json`, `scenario.yaml` (the file as given; `meta.json` lists the
    `--set` overrides) and, with `plots`, the pictures of `draw_results`.
    After Ctrl-C, the completed runs are written and `interrupted` is true.
    """
    out_dir = default_out_dir(exp) if out_dir is None else out_dir
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    outcomes, interrupted = run_experiment(exp, workers, on_prepared, on_done)
    scenario_hash = exp.loaded.content_hash()
    summary = summary_table(exp, scenario_hash, outcomes)
    curves = curves_table(exp, outcomes)
    meta = {
        "pipebench": __version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "scenario": exp.name,
        "scenario_file": str(exp.loaded.path),
        "scenario_hash": scenario_hash,
        "overrides": exp.loaded.overrides,
        "seeds": exp.seeds,
        "command": ["pipebench", *sys.argv[1:]],
        "workers": workers,
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - clock, 3),
        "runs": {"planned": exp.runs, "completed": len(outcomes)},
        "interrupted": interrupted,
        "objective": {
            "description": exp.objective.description,
            "examples": exp.objective.examples,
            "dim": exp.objective.dim,
            "smoothness": exp.objective.smoothness,
            "f_star": exp.objective.f_star,
        },
    }
    delays = delays_table(exp, outcomes)
    timeline = timeline_table(exp, outcomes)
    write_files(
        out_dir,
        {
            "summary.csv": csv_text(summary),
            "curves.csv": csv_text(curves),
            "delays.csv": csv_text(delays),
            "timeline.csv": csv_text(timeline),
            "meta.json": meta_json(meta),
            "scenario.yaml": exp.loaded.text,
        },
    )
    if plots and not summary.empty:
        from pipebench.report.plots import draw_results  # matplotlib: only when drawing

        draw_results(out_dir, summary, curves, delays, timeline)
    return RunReport(exp, summary, curves, out_dir, interrupted)


RESULT_TABLES = ("summary.csv", "curves.csv", "delays.csv", "timeline.csv")


def plot_results(results: str | Path) -> list[Path]:
    """Redraw the pictures of a results folder from its tables; returns the files written."""
    from pipebench.report.plots import draw_results

    folder = Path(results)
    if not folder.is_dir():
        raise InputError("RESULTS", f"{str(folder)!r} is not a results folder")
    missing = [name for name in RESULT_TABLES if not (folder / name).is_file()]
    if missing:
        raise InputError("RESULTS", f"{str(folder)!r} has no {', '.join(missing)}")
    tables = [read_table(folder / name, "RESULTS") for name in RESULT_TABLES]
    return draw_results(folder, *tables)


def compare_schedules(results: str | Path, reference: str | None = None) -> pd.DataFrame:
    """Schedules of one results folder (or `summary.csv`) side by side; see `side_by_side`."""
    return side_by_side(read_summary(Path(results), "RESULTS"), reference)


def compare_runs(
    base: str | Path, candidate: str | Path, fail_on: list[str] | tuple = ()
) -> Comparison:
    """Baseline against candidate, run by run; `fail_on` holds `METRIC:THRESHOLD` strings."""
    thresholds = [Threshold.parse(text) for text in fail_on]
    return against_baseline(
        read_summary(Path(base), "BASE"), read_summary(Path(candidate), "CANDIDATE"), thresholds
    )
