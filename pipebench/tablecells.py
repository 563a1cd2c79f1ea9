"""The results tables' cells without pandas: their columns and types, a table read back,
and numbers as printed.

`compare` reads summaries and prints them through this module alone, so that it
starts without pandas or NumPy (benchmarks/perf/README.md, "Issue 16, sixth round:
compare"); `tables` builds and reads the same tables as DataFrames on top of it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from pipebench.errors import InputError, clip, shorten
from pipebench.export import is_missing

SUMMARY_COLUMNS = [
    # the columns of DESIGN.md, in its order
    "scenario", "schedule", "label", "seed", "stages", "lr", "final_loss", "final_gap",
    "best_loss", "time_to_target", "sim_time", "microbatches", "updates", "max_delay",
    "steady_max_delay", "mean_delay", "bubble_fraction", "peak_versions", "diverged",
    "wall_seconds",
    # added since
    "scenario_hash", "optimizer", "selected", "runs", "auc", "diverged_at", "mean_block_delay",
]  # fmt: skip
# Added to the summary after the others when the scenario gives a model and a GPU
MACHINE_COLUMNS = ["tokens_per_second", "mfu", "peak_memory_gb", "oom"]
CURVE_COLUMNS = [
    "scenario",
    "schedule",
    "label",
    "seed",
    "lr",
    "sim_time",
    "updates",
    "loss",
    "gap",
]

DELAY_COLUMNS = ["scenario", "schedule", "label", "seed", "delay", "updates"]
TIMELINE_COLUMNS = ["scenario", "schedule", "label", "kind", "stage", "mb", "replica", "start",
                    "end", "v_fwd", "v_bwd"]  # fmt: skip
# the tables of a results folder, with the columns `plot` reads
RESULT_TABLES = {
    "summary.csv": SUMMARY_COLUMNS,
    "curves.csv": CURVE_COLUMNS,
    "delays.csv": DELAY_COLUMNS,
    "timeline.csv": TIMELINE_COLUMNS,
}
TEXT_COLUMNS = ("scenario", "schedule", "label", "scenario_hash", "optimizer", "kind")
BOOL_COLUMNS = ("selected", "diverged", "oom")
_KNOWN = {*SUMMARY_COLUMNS, *MACHINE_COLUMNS, *CURVE_COLUMNS, *DELAY_COLUMNS, *TIMELINE_COLUMNS}
_INFINITIES = ("inf", "-inf", "+inf")
# a number as pandas' to_numeric reads it (pipebench writes ints, floats' repr, inf, -inf)
_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
_NUMBER = re.compile(
    r"\s*[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf(?:inity)?)\s*", re.IGNORECASE
)
_TRUE, _FALSE = ("True", "TRUE", "true"), ("False", "FALSE", "false")


def read_columns(path: Path, role: str, required: list[str] | tuple = ()) -> dict[str, list]:
    """A table this module wrote, read back without pandas: each column's cells, typed.

    Text columns stay text ('nan' is a label like any other), flags become
    booleans, `seed` integers, every other column numbers (inf as written
    for diverged runs): all ints when every cell is an integer, else floats.
    An empty cell is NaN (False for a flag). Other columns (a sweep's keys)
    are typed as the cells allow: integers, floats, booleans, else text. A
    file that is not such a table (unreadable, a `required` column missing,
    a cell that is not of its column's type) is an `InputError` on `role`
    (the argument), naming the file, the column and the line. `read_table`
    is the same table as a DataFrame.
    """
    try:
        header, rows = _cells(Path(path).read_bytes())
    except (ValueError, OSError) as error:
        first = (str(error).strip().splitlines() or ["empty file"])[0]
        raise InputError(role, f"{str(path)!r} is not a pipebench table: {clip(first)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            role,
            f"{str(path)!r} is not a pipebench table: no column {', '.join(missing[:3])}"
            + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""),
        )
    columns = {}
    for i, name in enumerate(header):
        cells = [row[i] if i < len(row) else "" for row in rows]
        typed = _typed(cells, name) if name in _KNOWN else _inferred(cells)
        if isinstance(typed, tuple):  # (line, expected): the first cell that is not of its type
            line, expected = typed
            raise InputError(
                role, f"{str(path)!r}: column {name} holds {shorten(cells[line])} on line "
                f"{line + 2}; expected {expected}",
            )  # fmt: skip
        columns[name] = typed
    return columns


def _cells(data: bytes) -> tuple[list[str], list[list[str]]]:
    """The header (names made unique as pandas does) and the rows of a CSV file, blank lines out.

    Errors are pandas' words for the same faults, so that a message reads
    the same whichever reads the file.
    """
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, start = [], 0
    try:
        for row in reader:
            if len(row) > 1 or (row and row[0].strip()):
                rows.append((reader.line_num, row))
            start = reader.line_num
    except csv.Error:
        message = f"Error tokenizing data. C error: EOF inside string starting at row {start}"
        raise ValueError(message) from None
    if not rows:
        raise ValueError("No columns to parse from file")
    for _, row in rows:
        for cell in row:
            cell.encode("utf-8", "surrogateescape").decode("utf-8")  # pandas decodes per cell
    header, seen = [], {}
    for i, name in enumerate(rows[0][1]):
        name = name or f"Unnamed: {i}"
        while name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen[name] = 0
        header.append(name)
    for line, row in rows[1:]:
        if len(row) > len(header):
            raise ValueError(
                f"Error tokenizing data. C error: Expected {len(header)} fields in line "
                f"{line}, saw {len(row)}"
            )
    return header, [row for _, row in rows[1:]]


def _typed(cells: list[str], column: str) -> list | tuple[int, str]:
    """One known column's cells with its type, or (row, expected) for the first bad cell."""
    if column in TEXT_COLUMNS:
        return [cell if cell else math.nan for cell in cells]
    if column in BOOL_COLUMNS:
        lower = [cell.strip().lower() for cell in cells]
        bad = next((i for i, x in enumerate(lower) if x not in ("true", "false", "")), None)
        return (bad, "true, false or empty") if bad is not None else [x == "true" for x in lower]
    expected = "an integer (or empty)" if column == "seed" else "a number (or inf, or empty)"
    for i, cell in enumerate(cells):
        # a number as pipebench writes it: finite, or 'inf' (never 'nan' nor 1e400)
        if cell and not (
            _NUMBER.fullmatch(cell)
            and (math.isfinite(float(cell)) or cell.strip().lower() in _INFINITIES)
            and (column != "seed" or float(cell).is_integer())
        ):
            return i, expected
    if column == "seed":
        return [_integer(cell) if cell else math.nan for cell in cells]
    return _numbers(cells)


def _integer(cell: str) -> int:
    return int(cell) if _INTEGER.fullmatch(cell) else int(float(cell))


def _numbers(cells: list[str]) -> list:
    """Numbers of valid cells: ints if every cell is an int64, else floats (empty: NaN)."""
    if all(_INTEGER.fullmatch(cell) and abs(int(cell)) < 2**63 for cell in cells):
        return [int(cell) for cell in cells]
    return [float(cell) if cell else math.nan for cell in cells]


def _inferred(cells: list[str]) -> list:
    """A column pipebench does not know, typed as pandas would read it."""
    filled = [cell for cell in cells if cell]
    if all(_NUMBER.fullmatch(cell) for cell in filled):
        return _numbers(cells)
    if filled == cells and all(cell in _TRUE or cell in _FALSE for cell in cells):
        return [cell in _TRUE for cell in cells]
    return [cell if cell else math.nan for cell in cells]


def selected_lr(selected: list[bool], lrs: list[float]) -> list[bool]:
    """Which of one schedule's runs are at its selected lr; at the smallest if every lr diverged."""
    if any(selected):
        return [bool(x) for x in selected]
    least = min((lr for lr in lrs if lr == lr), default=math.nan)
    return [lr == least for lr in lrs]


def fmt_number(value: float) -> str:
    """4 significant digits, "-" for a missing value."""
    if is_missing(value):
        return "-"
    return f"{value:.4g}"


def mean_std_text(mean: float, std: float) -> str:
    """`mean±std` as printed (just the mean when there is no spread to show)."""
    return (
        fmt_number(mean) if is_missing(std) or is_missing(mean) else f"{fmt_number(mean)}±{std:.2g}"
    )
