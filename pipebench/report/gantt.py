"""The ASCII Gantt chart of `pipebench schedule`: one row per stage, one cell per time quantum.

Each operation's first cell carries its kind and micro-batch (`F3`, `B12`),
later cells of a long operation show `─`; idle time shows `·`. Colours help on
a terminal, but the letters carry the meaning, so piped output stays readable.
Beyond `max_rows` stages the middle ones are elided; beyond the terminal
width the chart shows the start of the run and says how much it left out.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text

from pipebench.timeline.trace import (
    AVERAGE,
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    PAIR_BACKWARD,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
    Trace,
)

STYLES = {
    FORWARD: "bold cyan",
    BACKWARD: "bold magenta",
    UPDATE: "yellow",
    AVERAGE: "bold green",
    INPUT_GRAD: "bold red",
    WEIGHT_GRAD: "bold blue",
    PAIR_FORWARD: "bold white on dark_green",
}
# The letter of each kind in a cell; an F&B pair shows as X with its forward's chunk and
# micro-batch (its backward half, a row of the same span, is not drawn again).
LETTERS = {FORWARD: "F", BACKWARD: "B", UPDATE: "U", AVERAGE: "A", INPUT_GRAD: "I",
           WEIGHT_GRAD: "W", PAIR_FORWARD: "X"}  # fmt: skip
_LABEL = "stage {:>3} "
_RANK_LABEL = "rank {:>4} "
_TICK_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _quantum(trace: Trace, sample: int = 4000) -> tuple[float, bool]:
    """Time per cell: the shortest of the first forwards and backwards, halved (at
    most 4 times) until their boundaries fall on cell edges, so that link
    latencies of half an operation do not make operations collide."""
    kind, start, end = trace.kind[:sample], trace.start[:sample], trace.end[:sample]
    fb = (kind != UPDATE) & (kind != AVERAGE)
    q = float((end[fb] - start[fb]).min())
    edges = np.concatenate([start, end])
    for halvings in range(5):
        size = q / 2**halvings
        cells = edges / size
        if np.allclose(cells, np.rint(cells), rtol=0, atol=1e-6):
            return size, True
    return q, False  # jittered costs never align: keep one cell per shortest operation


def _shown_stages(stages: int, max_rows: int) -> list[int | None]:
    """Stage rows to draw; None marks the elided middle."""
    if stages <= max_rows:
        return list(range(stages))
    half = max_rows // 2
    return [*range(half), None, *range(stages - half, stages)]


def gantt_text(trace: Trace, width: int = 100, max_rows: int = 16) -> Text:
    """Render `trace` as rich Text fitting in `width` columns.

    One row per rank; where chunks share ranks (programs), cells name the chunk
    too: `7F3` is the forward of micro-batch 3 through chunk 7.
    """
    q, exact = _quantum(trace)
    total_cells = max(int(np.ceil(trace.makespan / q - 1e-9)), 1)
    chunked = trace.chunk_rank is not None
    row_label = _RANK_LABEL if chunked else _LABEL
    label_width = len(row_label.format(0))
    # Rows are in start order, so the chart only needs those starting in view.
    in_view = np.searchsorted(trace.start, (width - label_width) // 3 * q + q)
    kind, stage, mb = trace.kind[:in_view], trace.rank[:in_view], trace.mb[:in_view]
    chunk = trace.chunk[:in_view]
    cell_of_start = np.floor(trace.start[:in_view] / q + 0.5).astype(np.int64)
    cell_of_end = np.floor(trace.end[:in_view] / q + 0.5).astype(np.int64)
    cell_of_end = np.maximum(cell_of_end, cell_of_start + 1)
    # Size cells for the largest micro-batch id the chart can show, then trim.
    n_cells = min(max((width - label_width) // 3, 1), total_cells)
    digits = len(str(max(int(mb[cell_of_start < n_cells].max()), 0)))
    if chunked:
        digits += len(str(len(trace.chunk_rank) - 1))
    cell_w = digits + 2  # (chunk,) kind letter, micro-batch, a space
    n_cells = min(max((width - label_width) // cell_w, 1), total_cells)
    visible = cell_of_start < n_cells
    # Zero-length operations (U or AVG with zero cost) take no cell.
    computes = (kind != UPDATE) & (kind != AVERAGE)
    visible &= (trace.end[:in_view] > trace.start[:in_view]) | computes
    visible &= kind != PAIR_BACKWARD

    grid: dict[int, list[tuple[str, str]]] = {}
    idle = ("·".ljust(cell_w), "dim")
    rows = _shown_stages(trace.ranks, max_rows)
    for s in rows:
        if s is not None:
            grid[s] = [idle] * n_cells
    for i in np.flatnonzero(visible):
        k = int(kind[i])
        stages = rows if k == AVERAGE else [int(stage[i])]
        first = int(cell_of_start[i])
        last = min(int(cell_of_end[i]), n_cells)
        label = LETTERS[k] + ("" if k == AVERAGE else str(int(mb[i])))
        if chunked and k != AVERAGE:
            label = str(int(chunk[i])) + label
        # A long operation's label runs into its continuation cells: "B3──────".
        label = label.ljust(cell_w, "─" if last > first + 1 else " ")
        for s in stages:
            if s is None or s not in grid:
                continue
            grid[s][first] = (label, STYLES[k])
            for c in range(first + 1, last):
                grid[s][c] = ("─" * cell_w, STYLES[k])

    text = Text()
    text.append(_axis(n_cells, cell_w, q, label_width) + "\n", style="dim")
    for s in rows:
        if s is None:
            hidden = trace.ranks - (len(rows) - 1)
            what = "ranks" if chunked else "stages"
            text.append(f"{'⋮':>{label_width - 1}}  ({hidden} {what} not shown)\n", style="dim")
            continue
        text.append(row_label.format(s), style="bold")
        for label, style in grid[s]:
            text.append(label, style=style)
        text.append("\n")
    shown_until = n_cells * q
    if n_cells < total_cells:
        text.append(
            f"showing t < {shown_until:g} of makespan {trace.makespan:g} "
            f"({100 * shown_until / trace.makespan:.0f}%); use --png for the whole run\n",
            style="dim",
        )
    kinds = set(np.unique(kind).tolist())
    legend = "F forward, B backward, U step, A average; "
    if kinds & {INPUT_GRAD, WEIGHT_GRAD, PAIR_FORWARD}:
        legend = "F forward, B backward, I input grad, W weight grad, X F&B pair, U step; "
    text.append(legend, "dim")
    text.append(f"cell = {q:.3g} time", style="dim")
    text.append("\n" if exact else " (durations rounded to cells; --png is exact)\n", style="dim")
    return text


def _axis(n_cells: int, cell_w: int, q: float, label_width: int) -> str:
    """A time axis with labels every few cells, never overlapping."""
    line = [" "] * (label_width + n_cells * cell_w)
    line[: len("time")] = "time"
    step = next(n for n in _TICK_STEPS if n * cell_w >= 6)
    for c in range(0, n_cells, step):
        tick = f"{c * q:.4g}"
        pos = label_width + c * cell_w
        if pos + len(tick) <= len(line):
            line[pos : pos + len(tick)] = tick
    return "".join(line).rstrip()
