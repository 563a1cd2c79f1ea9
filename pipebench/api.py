"""What the command line calls, and what users can call from Python.

Each function imports the machinery it needs when called (the engine and
numba, pandas, the sweep executors), so that a command loads only its own.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipebench import __version__
from pipebench.errors import InputError
from pipebench.outfolder import check_folder, replaced_folder

if TYPE_CHECKING:
    import pandas as pd

    from pipebench.compare import Comparison
    from pipebench.experiment import Entry, Experiment
    from pipebench.runner import Outcome
    from pipebench.scenario.hardware import Machine
    from pipebench.sweep.cache import CellCache
    from pipebench.sweep.execute import CellsDone
    from pipebench.sweep.plan import SweepPlan
    from pipebench.timeline import CostModel, RpdPlan, TimelineStats, Trace
    from pipebench.timeline.memory import MemoryProfile


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


def schedule_memory(
    timeline: Trace | RpdPlan, machine: Machine, optimizer: str = "adamw", picture: bool = False
) -> MemoryProfile:
    """Bytes per rank of a simulated schedule whose costs came from `machine` (rpd: of its
    pd clock), trained by `optimizer`; with `picture`, sampled over its Gantt chart's window."""
    from pipebench.experiment import chunk_bytes
    from pipebench.optim import OPTIMIZERS
    from pipebench.timeline.memory import memory_profile

    if optimizer not in OPTIMIZERS:
        raise InputError(
            "optimizer", f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}"
        )
    chunks = chunk_bytes(machine, optimizer)
    if not picture:
        return memory_profile(timeline.clock, chunks)
    from pipebench.report.memory_plot import profile_for_picture

    return profile_for_picture(timeline.clock, chunks)


def schedule_options(name: str, stages: int, given: dict[str, object]) -> dict[str, object]:
    """Every option schedule `name` runs with on `stages`: `given` over its defaults.

    rpd's delay bound `auto` is given as the number it stands for; an option
    left unset (None: localsgd's `outer` and `quantize`) is not listed.
    """
    from pipebench.timeline import get_schedule, resolve_options
    from pipebench.timeline.schedule import auto_delta

    options = resolve_options(get_schedule(name), stages, given)
    options = {key: value for key, value in options.items() if value is not None}
    if options.get("delta") == "auto":
        options["delta"] = auto_delta(stages)
    return options


def load_experiment(
    path: str | Path,
    overrides: list[str] | tuple = (),
    seeds: int | None = None,
    *,
    make: bool = True,
) -> Experiment:
    """Load, validate and resolve a scenario; raises `ScenarioError`/`InputError` if it is bad.

    `make=False`: the objective's data is made when first read where no check needs it
    (see `experiment.resolve`)."""
    from pipebench.experiment import resolve
    from pipebench.scenario import load_scenario

    return resolve(load_scenario(path, overrides), seeds, make=make)


@dataclass(frozen=True)
class RunReport:
    experiment: Experiment
    summary: pd.DataFrame
    curves: pd.DataFrame
    out_dir: Path
    interrupted: bool


def default_out_dir(exp: Experiment) -> Path:
    """results/<scenario name, made safe for a file name>."""
    from pipebench.export import file_name

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

    The folder is checked and locked before the runs start, and replaced as
    a whole once every file is written (see `outfolder`).
    """
    from pipebench.export import write_files
    from pipebench.objectives import loss_label
    from pipebench.results import run_meta, tabulate
    from pipebench.runner import run_experiment

    out_dir = default_out_dir(exp) if out_dir is None else out_dir
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    with replaced_folder(out_dir, "out") as folder:
        outcomes, interrupted = run_experiment(exp, workers, on_prepared, on_done)
        tables = tabulate(exp, outcomes)
        meta = run_meta(
            exp, workers, started, time.perf_counter() - clock, len(outcomes), interrupted,
            ["pipebench", *sys.argv[1:]],
        )  # fmt: skip
        write_files(folder, tables.files(meta, exp.loaded.text))
        if plots and not tables.summary.empty:
            from pipebench.report.plots import draw_results  # matplotlib: only when drawing

            draw_results(
                folder, tables.summary, tables.curves, tables.delays, tables.timeline,
                loss_label(exp.objective.kind),
            )  # fmt: skip
            if exp.machine is not None:
                from pipebench.report.memory_plot import run_memory_pngs

                run_memory_pngs(folder, outcomes, exp.machine.hardware.memory_gb * 1e9)
    return RunReport(exp, tables.summary, tables.curves, out_dir, interrupted)


def plot_results(results: str | Path) -> list[Path]:
    """Redraw the pictures of a results folder from its tables; returns the files written."""
    from pipebench.objectives import loss_label
    from pipebench.report.plots import draw_results
    from pipebench.tablecells import RESULT_TABLES
    from pipebench.tables import read_table

    folder = Path(results)
    if not folder.is_dir():
        raise InputError("RESULTS", f"{str(folder)!r} is not a results folder")
    missing = [name for name in RESULT_TABLES if not (folder / name).is_file()]
    if missing:
        raise InputError("RESULTS", f"{str(folder)!r} has no {', '.join(missing)}")
    check_folder(folder, "RESULTS")
    # every table is read and checked before anything is drawn
    tables = [
        read_table(folder / name, "RESULTS", columns) for name, columns in RESULT_TABLES.items()
    ]
    label = loss_label(objective_kind(folder / "meta.json"))
    # Drawn aside, then renamed in: a failure leaves the old pictures, not a mix.
    aside = Path(tempfile.mkdtemp(prefix=".plot-", dir=folder))
    try:
        drawn = draw_results(aside, *tables, label)
        for path in drawn:
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return [folder / path.name for path in drawn]


def objective_kind(meta_text: str | Path) -> str | None:
    """The objective kind a results folder's `meta.json` (its path, or its text) names, if any.

    Folders written before the kind was recorded have none.
    """
    import json  # here: `validate` loads this module and needs no JSON

    try:
        text = meta_text.read_text(encoding="utf-8") if isinstance(meta_text, Path) else meta_text
        return json.loads(text)["objective"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compare_schedules(results: str | Path, reference: str | None = None) -> pd.DataFrame:
    """Schedules of one results folder (or `summary.csv`) side by side; see `side_by_side`."""
    import pandas as pd

    from pipebench.compare import read_summary, side_by_side

    return pd.DataFrame(side_by_side(read_summary(Path(results), "RESULTS"), reference))


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
    is true. The results folder is replaced as a whole (the cache inside it
    carried across), as `run_scenario` does.
    """
    from pipebench.export import file_name
    from pipebench.sweep.cache import CellCache

    if out_dir is None:
        out_dir = Path("results") / f"{file_name(plan.name, 'run')}-sweep"
    cache = CellCache(out_dir / "cells" if cache_dir is None else cache_dir, __version__)
    keep = _entry_within(cache.root, out_dir)
    with replaced_folder(out_dir, "out", keep) as folder:
        check_folder(cache.root, "cache")
        return _sweep_into(
            folder, plan, out_dir, cache, executor, workers, scheduler, on_start, on_done, plots
        )


def _entry_within(inner: Path, outer: Path) -> str | None:
    """The entry of `outer` that holds `inner`, if `inner` lies inside `outer`."""
    inner, outer = Path(os.path.abspath(inner)), Path(os.path.abspath(outer))
    if inner == outer:
        raise InputError(
            "cache",
            f"{str(inner)!r} is the results folder itself; give a folder inside or beside it",
        )
    if outer not in inner.parents:
        return None
    return inner.relative_to(outer).parts[0]


def _sweep_into(
    folder: Path,
    plan: SweepPlan,
    out_dir: Path,
    cache: CellCache,
    executor: str,
    workers: int,
    scheduler: str | None,
    on_start: Callable[[int, int, int], None] | None,
    on_done: Callable[[], None] | None,
    plots: bool,
) -> SweepReport:
    """The work of `sweep`, its tables written into `folder` (swapped in for `out_dir` later)."""
    from pipebench.export import meta_json, write_files
    from pipebench.objectives import loss_label
    from pipebench.report.sweep_plot import draw_sweep  # matplotlib: only for sweeps
    from pipebench.results import sweep_meta
    from pipebench.sweep.combine import combined_csv
    from pipebench.sweep.execute import run_cells
    from pipebench.tablecells import CURVE_COLUMNS, SUMMARY_COLUMNS
    from pipebench.tables import read_table

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
    meta = sweep_meta(
        plan, done, finished, command, executor, scheduler, workers, cache.root, started,
        time.perf_counter() - clock,
    )  # fmt: skip
    write_files(folder, {**tables, "meta.json": meta_json(meta), "scenario.yaml": plan.base.text})
    summary = read_table(folder / "summary.csv", "OUT")
    if plots and finished:
        kind = objective_kind(loaded[0][1]["meta.json"])  # every cell trains the same kind
        draw_sweep(folder, summary, plan.keys, loss_label(kind))
    return SweepReport(plan, summary, out_dir, cache.root, done)


# ---------------------------------------------------------------- reproductions


@dataclass(frozen=True)
class ReproductionReport:
    findings: pd.DataFrame  # the comparison table, as written to reproductions.csv
    seconds: dict[str, float]  # wall time of each reproduction
    out_dir: Path


def reproduce(
    names: list[str],
    out_dir: Path | None = None,
    workers: int = 1,
    plots: bool = True,
    on_start: Callable[[str], None] | None = None,
) -> ReproductionReport:
    """Run the named reproductions (`pipebench reproduce`), each into `OUT/<name>`, and
    write the comparison with the papers to `OUT/reproductions.csv` and `.md`."""
    from pipebench.export import csv_text, markdown_table, write_files
    from pipebench.reproduce import findings, findings_table, get_reproduction
    from pipebench.scenario import load_scenario

    out_dir = Path("results") / "reproductions" if out_dir is None else out_dir
    chosen = [get_reproduction(name) for name in names]  # all names checked before running
    rows, seconds = [], {}
    for repro in chosen:
        if on_start is not None:
            on_start(repro.name)
        clock = time.perf_counter()
        here = out_dir / repro.name
        if load_scenario(repro.path()).scenario.sweep:
            report = sweep(plan_sweep(repro.path(), [], []), here, "local", workers, plots=plots)
        else:
            report = run_scenario(load_experiment(repro.path()), here, workers, plots=plots)
        seconds[repro.name] = time.perf_counter() - clock
        rows += findings(repro, report.summary)
    table = findings_table(rows)
    lines = [f"- {name}: {t:.0f} s" for name, t in seconds.items()]
    text = "\n".join(["Wall time:", "", *lines, "", markdown_table(table)])
    write_files(out_dir, {"reproductions.csv": csv_text(table), "reproductions.md": text})
    return ReproductionReport(table, seconds, out_dir)
