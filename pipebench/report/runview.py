"""What `pipebench run` shows: a progress bar on stderr, the summary on stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pipebench.export import Rows, markdown_table, write_data
from pipebench.report.progress_lines import ProgressLines

if TYPE_CHECKING:  # `compare` prints its tables here without pandas (rich: as a table only)
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from pipebench.export import Table as Cells


@contextmanager
def progress_bar(exp, quiet: bool) -> Iterator[tuple[Callable | None, Callable | None]]:
    """Callbacks for the runner that show progress on stderr (None with `quiet`).

    A rich progress bar on a terminal; plain lines every few seconds and a
    last one otherwise (a log, a CI job).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if quiet:
        yield None, None
        return
    if not sys.stderr.isatty():
        lines = ProgressLines("pipebench run")
        lines.add("timelines", len(exp.entries))
        lines.add("runs", exp.runs)
        yield (lambda entry: lines.advance("timelines")), (lambda outcome: lines.advance("runs"))
        lines.print()
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        timelines = bar.add_task("timelines", total=len(exp.entries))
        runs = bar.add_task("runs", total=exp.runs)
        yield (lambda entry: bar.advance(timelines)), (lambda outcome: bar.advance(runs))


def print_summary(report, fmt: str) -> None:
    """The summary in the chosen format on stdout: full rows for csv/json, a digest otherwise.

    The digest comes with its caption and, under it, the winners and the
    learning rates at the edge of their grid.
    """
    from pipebench.report.verdict import lr_edge_lines, winner_lines
    from pipebench.tables import condensed

    if write_data(report.summary, fmt):
        return
    exp = report.experiment
    f_star = exp.objective.f_star
    has_target = exp.target_loss is not None
    digest = condensed(report.summary, has_target, f_star is not None)
    title = f"{exp.name}: {exp.objective.description}, S={exp.costs.stages}"
    caption = (f"f* = {f_star:.6g}; " if f_star is not None else "f* unknown; ") + (
        f"final values, mean ± std over {len(exp.seeds)} seed(s) at each schedule's selected lr; "
        "target: simulated time to reach target_loss; delay: steady-state max, in block "
        "updates; "
        f"div: diverged runs. Results in {report.out_dir}"
    )
    notes = []
    if not report.summary.empty:
        notes = winner_lines(report.summary, has_target) + lr_edge_lines(report.summary)
    show_table(digest, title, caption, fmt, notes)


def oom_warnings(summary: pd.DataFrame, gpu: str, memory_gb: float) -> list[str]:
    """One line per schedule whose peak memory exceeds the GPU's (simulated all the same)."""
    if "oom" not in summary:
        return []
    runs = summary[summary["seed"].notna() & summary["oom"]]
    return [
        f"pipebench run: warning: {label} needs {group['peak_memory_gb'].max():.1f} GB on a "
        f"rank, more than the {memory_gb:g} GB of one {gpu}: out of memory (simulated anyway, "
        "oom in summary.csv)"
        for label, group in runs.groupby("label", sort=False)
    ]


def show_table(
    text: Cells, title: str, caption: str, fmt: str, notes: list[str] | None = None
) -> None:
    """A table of strings on stdout with its title, caption and notes, as a table or Markdown."""
    notes = notes or []
    if fmt == "markdown":  # blocks apart, and from whatever is appended after (CI summaries)
        blocks = [f"**{title}**", markdown_table(text).rstrip("\n"), caption]
        if notes:
            blocks.append("\n".join(f"- {note}" for note in notes))
        sys.stdout.write("\n\n".join(blocks) + "\n\n")
        return
    print_table(text, title, caption)
    for note in notes:
        print(note)


TEXT_COLUMNS = (
    *("scenario", "schedule", "status", "crossed"),
    *("reproduction", "paper", "figure", "quantity", "source", "verdict"),
)


def print_table(text: Cells, title: str, caption: str) -> None:
    """A table of strings on stdout, text columns left and numbers right."""
    from rich.console import Console

    # a terminal wraps at its width; a file or pipe gets whole rows
    console = Console(width=None if sys.stdout.isatty() else 1000)
    console.print(rich_table(Rows.of(text), title, caption, console))


def rich_table(text: Rows, title: str, caption: str, console: Console) -> Table:
    """`print_table`'s rich table. Its rows are drawn as one row of whole columns, a line
    per row (rich lays out each cell: a third of a second for 200 rows), unless a cell
    spans lines: the same text either way."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for column in text.columns:
        left = column in TEXT_COLUMNS
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    rows = [[str(value) for value in row] for row in text.rows]
    if any("\n" in cell for row in rows for cell in row):
        for row in rows:
            table.add_row(*row)
    elif rows:
        columns = zip(*rows, strict=True)
        table.add_row(
            *(
                Text("\n").join(console.render_str(c, highlight=False) for c in cells)
                for cells in columns
            )
        )
    return table
