"""What `pipebench sweep` shows: a progress bar over cells on stderr, the summary on stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipebench.export import value_text, write_data
from pipebench.report.progress_lines import ProgressLines
from pipebench.report.runview import show_table
from pipebench.tables import condensed


def cache_note(cells: int, cached: int, damaged: int) -> str:
    """What the cache held, in words: "12 cells: 5 in the cache, 7 to compute"."""
    note = f"{cells} cells: {cached} in the cache, {cells - cached} to compute"
    return note + (f" ({damaged} damaged entries among them)" if damaged else "")


@contextmanager
def sweep_progress(quiet: bool) -> Iterator[tuple[Callable | None, Callable | None]]:
    """(on_start, on_done) callbacks for `api.sweep`: a note, then one bar over cells with ETA
    on a terminal, or plain lines every few seconds and a last one otherwise (None with `quiet`)."""
    if quiet:
        yield None, None
        return
    if not sys.stderr.isatty():
        lines = ProgressLines("pipebench sweep")

        def note(cells: int, cached: int, damaged: int) -> None:
            print(f"pipebench sweep: {cache_note(cells, cached, damaged)}", file=sys.stderr)
            lines.add("cells", cells, cached)

        yield note, lambda: lines.advance("cells")
        if lines.counts:
            lines.print()
        return
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        speed_estimate_period=24 * 3600,  # cells take minutes: average over the whole sweep
    )
    task = []

    def start(cells: int, cached: int, damaged: int) -> None:
        console.print(cache_note(cells, cached, damaged))
        task.append(bar.add_task("cells", total=cells, completed=cached))

    with bar:
        yield start, lambda: bar.advance(task[0])


def digest(summary: pd.DataFrame, keys: list[str], has_target: bool) -> pd.DataFrame:
    """Per cell and schedule, the condensed view of `pipebench run`, led by the cell's values."""
    has_optimum = bool(summary["final_gap"].notna().any())
    parts = []
    for values, cell in summary.groupby(keys, sort=False, dropna=False):
        rows = condensed(cell, has_target, has_optimum)
        for position, (key, value) in enumerate(zip(keys, values, strict=True)):
            rows.insert(position, key, value_text(value))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def print_sweep(report, fmt: str) -> None:
    """The combined summary on stdout: full rows for csv/json, a digest per cell otherwise."""
    if fmt == "csv":  # the file's bytes: swept values exactly as written there
        sys.stdout.write((report.out_dir / "summary.csv").read_text(encoding="utf-8"))
        return
    if write_data(report.summary, fmt) or report.summary.empty:
        return
    plan = report.plan
    has_target = plan.base.scenario.target_loss is not None or "target_loss" in plan.keys
    table = digest(report.summary, plan.keys, has_target)
    done = report.done
    cells = len(plan.cells)
    caption = (
        f"{report.completed} of {cells} cells ({done.count('cached')} from the cache, "
        f"{done.count('computed')} computed); final values, mean ± std over seeds at each "
        f"schedule's selected lr. Results in {report.out_dir}, each cell's in {report.cache_dir}"
    )
    title = f"{plan.name}: sweep of {', '.join(plan.keys)}"
    show_table(table, title, caption, fmt)
