"""What the command line calls, and what users can call from Python.

Each function imports the machinery it needs when called (the engine and
numba, pandas, the sweep executors), so that a command loads only its own.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipebench import __version__
from pipebench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from pipebench.compare import Comparison
    from pipebench.experiment import Entry, Experiment
    from pipebench.runner import Outcome
    from pipebench.sweep.execute import CellsDone
    from pipebench.sweep.plan import SweepPlan
    from pipebench.timeline import CostModel, RpdPlan, TimelineStats, Trace


def schedule_timeline(
    name: str, costs: CostModel, microbatches: int, **options: object
) -> tuple[Trace | RpdPlan, TimelineStats]:
    """Simulate one schedule without training; returns its timeline and statistics.

    `costs` comes from `CostModel.build(stages, ...)`. Raises `InputError`
    for anything out of range, naming the argument.
    """
    from pipebench.timeline import build_timeline, stats_of

    timeline = build_timeline(name, costs, microbatches, **options)
    return timeline, stats_of(timeline)


def load_experiment(
    path: str | Path, overrides: list[str] | tuple = (), seeds: int | None = None
) -> Experiment:
    """Load, validate and resolve a scenario; raises `ScenarioError`/`InputError` if it is bad."""
    from pipebench.experiment import resolve
    from pipebench.scenario import load_scenario

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
    from pipebench.report.export import file_name

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
    from pipebench.report.export import write_files
    from pipebench.results import run_meta, tabulate
    from pipebench.runner import run_experiment

    out_dir = default_out_dir(exp) if out_dir is None else out_dir
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    outcomes, interrupted = run_experiment(exp, workers, on_prepared, on_done)
    tables = tabulate(exp, outcomes)
    meta = run_meta(
        exp, workers, started, time.perf_counter() - clock, len(outcomes), interrupted,
        ["pipebench", *sys.argv[1:]],
    )  # fmt: skip
    write_files(out_dir, tables.files(meta, exp.loaded.text))
    if plots and not tables.summary.empty:
        from pipebench.report.plots import draw_results  # matplotlib: only when drawing

        draw_results(out_dir, tables.summary, tables.curves, tables.delays, tables.timeline)
    return RunReport(exp, tables.summary, tables.curves, out_dir, interrupted)


RESULT_TABLES = ("summary.csv", "curves.csv", "delays.csv", "timeline.csv")


def plot_results(results: str | Path) -> list[Path]:
    """Redraw the pictures of a results folder from its tables; returns the files written."""
    from pipebench.report.plots import draw_results
    from pipebench.report.tables import read_table

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
    from pipebench.compare import read_summary, side_by_side

    return side_by_side(read_summary(Path(results), "RESULTS"), reference)


def compare_runs(
    base: str | Path, candidate: str | Path, fail_on: list[str] | tuple = ()
) -> Comparison:
    """Baseline against candidate, run by run; `fail_on` holds `METRIC:THRESHOLD` strings."""
    from pipebench.compare import Threshold, against_baseline, read_summary

    thresholds = [Threshold.parse(text) for text in fail_on]
    return against_baseline(
        read_summary(Path(base), "BASE"), read_summary(Path(candidate), "CANDIDATE"), thresholds
    )


# ---------------------------------------------------------------- sweeps


def plan_sweep(
    path: str | Path,
    grid: list[str] | tuple = (),
    overrides: list[str] | tuple = (),
    seeds: int | None = None,
) -> SweepPlan:
    """`pipebench.sweep.plan.plan_sweep`, imported when called."""
    from pipebench.sweep.plan import plan_sweep

    return plan_sweep(path, grid, overrides, seeds)


@dataclass(frozen=True)
class SweepReport:
    plan: SweepPlan
    summary: pd.DataFrame  # the combined summary.csv, as written
    out_dir: Path
    cache_dir: Path
    done: CellsDone

    @property
    def completed(self) -> int:
        """Cells with results (cells with equal keys count once each)."""
        return sum(cell.key in self.done.source for cell in self.plan.cells)


def sweep(
    plan: SweepPlan,
    out_dir: Path | None = None,
    executor: str = "local",
    workers: int = 1,
    scheduler: str | None = None,
    cache_dir: Path | None = None,
    on_start: Callable[[int, int, int], None] | None = None,
    on_done: Callable[[], None] | None = None,
    plots: bool = True,
) -> SweepReport:
    """Run the cells of `plan` missing from the cache and write the combined results.

    `out_dir` (default `results/<name>-sweep`) gets `summary.csv` and
    `curves.csv` with one column per swept key in front, `meta.json`, the
    scenario and, with `plots`, one `sweep-<key>.png` per key. Each cell's
    own results folder is in `cache_dir` (default `OUT/cells`), named by its
    key. After Ctrl-C the finished cells are written and `done.interrupted`
    is true.
    """
    from pipebench.report.export import file_name, meta_json, write_files
    from pipebench.report.sweep_plot import draw_sweep  # matplotlib: only for sweeps
    from pipebench.report.tables import CURVE_COLUMNS, SUMMARY_COLUMNS, read_table
    from pipebench.results import versions
    from pipebench.sweep.cache import CellCache
    from pipebench.sweep.combine import combined_csv
    from pipebench.sweep.execute import run_cells

    if out_dir is None:
        out_dir = Path("results") / f"{file_name(plan.name, 'run')}-sweep"
    cache = CellCache(out_dir / "cells" if cache_dir is None else cache_dir, __version__)
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    command = ["pipebench", *sys.argv[1:]]
    done = run_cells(plan, cache, executor, workers, scheduler, command, on_start, on_done)
    finished = [cell for cell in plan.cells if cell.key in done.source]
    loaded = [(cell, cache.load(cell.key)) for cell in finished]
    lost = [cell for cell, files in loaded if files is None]
    if lost:  # changed under our feet (another sweep sharing the cache, a full disk)
        raise InputError("cache", f"the entry {cache.path(lost[0].key)} went bad during the sweep")
    tables = {
        name: combined_csv(
            plan.keys, [(cell.values, files[name]) for cell, files in loaded], columns
        )
        for name, columns in (("summary.csv", SUMMARY_COLUMNS), ("curves.csv", CURVE_COLUMNS))
    }
    meta = {
        **versions(),
        "scenario": plan.name,
        "scenario_file": str(plan.base.path),
        "overrides": list(plan.overrides),
        "sweep": {axis.key: list(axis.values) for axis in plan.axes},
        "seeds": plan.seeds,
        "command": command,
        "executor": executor,
        "scheduler": scheduler,
        "workers": workers,
        "cache": str(cache.root),
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - clock, 3),
        "cells": {
            "planned": len(plan.cells),
            "completed": len(finished),
            "cached": done.count("cached"),
            "computed": done.count("computed"),
            "damaged": done.damaged,
        },
        "interrupted": done.interrupted,
        "cell_list": [
            {
                "values": dict(cell.values),
                "key": cell.key,
                "source": done.source.get(cell.key, "not run"),
            }
            for cell in plan.cells
        ],
    }
    write_files(out_dir, {**tables, "meta.json": meta_json(meta), "scenario.yaml": plan.base.text})
    summary = read_table(out_dir / "summary.csv", "OUT")
    if plots and finished:
        draw_sweep(out_dir, summary, plan.keys)
    return SweepReport(plan, summary, out_dir, cache.root, done)
