"""The result tables: `summary.csv`, `curves.csv`, and the condensed view printed after a run.

Column names are part of the interface (DESIGN.md): new columns are added
at the end, never renamed. Rows come in scenario order (schedule entry,
seed, learning rate), so the same scenario and seed give the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipebench.errors import InputError, clip, shorten
from pipebench.export import is_missing

if TYPE_CHECKING:  # reading tables (compare, plot) loads neither the engine nor pandas
    import pandas as pd

    from pipebench.experiment import Experiment
    from pipebench.runner import Outcome

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


def read_table(path: Path, role: str, required: list[str] | tuple = ()) -> pd.DataFrame:
    """`read_columns` as a DataFrame (`seed` in pandas' nullable integers, NA on aggregate rows)."""
    import pandas as pd

    columns = read_columns(path, role, required)
    return pd.DataFrame(
        {
            c: pd.Series(cells, dtype="Int64" if c == "seed" else None)
            for c, cells in columns.items()
        }
    )


def _time_to_target(curve, target: float | None) -> float:
    import numpy as np

    if target is None:
        return np.nan
    hit = np.flatnonzero(curve.loss <= target)
    return float(curve.times[hit[0]]) if len(hit) else np.nan


def _area(curve) -> float:
    """Integral of the loss over simulated time (trapezoids); inf once diverged."""
    import numpy as np

    if curve.diverged_at is not None:
        return np.inf
    t, f = curve.times, curve.loss
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(t)))


def _run_row(exp: Experiment, scenario_hash: str, o: Outcome) -> dict:
    import numpy as np

    f_star = exp.objective.f_star
    final = float(o.curve.loss[-1])
    diverged = o.curve.diverged_at is not None
    return {
        "scenario": exp.name,
        "schedule": o.entry.schedule,
        "label": o.entry.label,
        "seed": o.seed,
        "stages": exp.costs.stages,
        "lr": o.lr,
        "final_loss": final,
        "final_gap": final - f_star if f_star is not None else np.nan,
        "best_loss": float(np.nanmin(o.curve.loss)) if not np.isnan(o.curve.loss).all() else final,
        "time_to_target": _time_to_target(o.curve, exp.target_loss),
        "sim_time": o.until,
        "microbatches": o.curve.microbatches,
        "updates": o.curve.block_updates,
        "max_delay": o.stats.max_delay,
        "steady_max_delay": o.stats.steady_max_delay,
        "mean_delay": o.stats.mean_delay,
        "bubble_fraction": o.stats.bubble_fraction,
        "peak_versions": max(o.stats.peak_versions),
        "diverged": diverged,
        "wall_seconds": round(o.wall_seconds, 4),
        "scenario_hash": scenario_hash,
        "optimizer": o.entry.optimizer,
        "selected": False,
        "runs": 1,
        "auc": _area(o.curve),
        "diverged_at": o.curve.diverged_at if diverged else np.nan,
        "mean_block_delay": o.stats.mean_block_delay,
    } | (_machine_fields(exp, o) if exp.machine is not None else {})


def clock_unit(summary: pd.DataFrame) -> str:
    """What the clock counts: seconds when the costs came from a model on a GPU."""
    return "seconds" if MACHINE_COLUMNS[0] in summary.columns else "cost units"


def _machine_fields(exp: Experiment, o: Outcome) -> dict:
    """Tokens of the big model per second of its clock, and its FLOPs over all GPUs' peak."""
    tokens_per_second = o.curve.microbatches * exp.machine.tokens_per_microbatch / o.until
    gpus = exp.costs.stages * o.first_rounds.replicas
    peak = float(o.memory.peak.max())
    return {
        "tokens_per_second": tokens_per_second,
        "mfu": exp.machine.mfu(tokens_per_second, gpus),
        "peak_memory_gb": peak / 1e9,
        "oom": peak > exp.machine.hardware.memory_gb * 1e9,
    }


_MEAN = ["final_loss", "final_gap", "best_loss", "auc", "sim_time", "microbatches", "updates",
         "mean_delay", "bubble_fraction", "mean_block_delay"]  # fmt: skip
_MAX = ["max_delay", "steady_max_delay", "peak_versions"]
_MACHINE_MEAN = ["tokens_per_second", "mfu"]
_MACHINE_MAX = ["peak_memory_gb"]


def _aggregate(group: pd.DataFrame) -> dict:
    """The row over seeds: means, worst cases, and a time to target only if every seed got there."""
    import numpy as np
    import pandas as pd

    row = group.iloc[0].to_dict()
    row.update({c: group[c].mean() for c in _MEAN + _MACHINE_MEAN if c in group})
    row.update({c: group[c].max() for c in _MAX + _MACHINE_MAX if c in group})
    reached = group["time_to_target"]
    row["time_to_target"] = reached.mean() if reached.notna().all() else np.nan
    row["diverged"] = bool(group["diverged"].any())
    if "oom" in group:
        row["oom"] = bool(group["oom"].any())
    row["diverged_at"] = group["diverged_at"].min()
    row["wall_seconds"] = round(group["wall_seconds"].sum(), 4)
    row["seed"] = pd.NA
    row["runs"] = len(group)
    return row


_CRITERION = {"final": "final_loss", "best": "best_loss", "auc": "auc"}


def summary_table(exp: Experiment, scenario_hash: str, outcomes: list[Outcome]) -> pd.DataFrame:
    """One row per schedule x seed x lr, then one aggregate row per schedule x lr (seed empty).

    `selected` marks, per schedule, the learning rate whose mean over seeds is
    best by the entry's `select` criterion; diverged learning rates are never
    selected.
    """
    import pandas as pd

    columns = SUMMARY_COLUMNS + (MACHINE_COLUMNS if exp.machine is not None else [])
    runs = pd.DataFrame([_run_row(exp, scenario_hash, o) for o in outcomes], columns=columns)
    if runs.empty:
        return runs
    runs["seed"] = runs["seed"].astype("Int64")
    aggregates = [
        _aggregate(group) for _, group in runs.groupby(["label", "lr"], sort=False, dropna=False)
    ]
    table = pd.concat([runs, pd.DataFrame(aggregates, columns=columns)], ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    for entry in exp.entries:
        mine = table[(table["label"] == entry.label) & table["seed"].isna() & ~table["diverged"]]
        if mine.empty:
            continue
        best_lr = mine.loc[mine[_CRITERION[entry.select]].idxmin(), "lr"]
        table.loc[(table["label"] == entry.label) & (table["lr"] == best_lr), "selected"] = True
    order = {e.label: e.index for e in exp.entries}
    table["_entry"] = table["label"].map(order)
    table["_agg"] = table["seed"].isna()
    table = table.sort_values(["_entry", "_agg", "seed", "lr"], kind="stable")
    table = table.drop(columns=["_entry", "_agg"]).reset_index(drop=True)
    for column in _COUNTS:  # counts print as integers; a mean over seeds may not be one
        table[column] = [_as_count(v) for v in table[column]]
    return table


_COUNTS = ["microbatches", "updates", "max_delay", "steady_max_delay", "peak_versions"]


def _as_count(value: object) -> object:
    import pandas as pd

    if is_missing(value):
        return pd.NA
    return int(value) if float(value).is_integer() else float(value)


def _blocks(
    exp: Experiment, outcomes: list[Outcome], columns: list[str], key, fields
) -> pd.DataFrame:
    """A long table: rows `fields(o)` for the first outcome `o` of each distinct `key(o)`."""
    import pandas as pd

    parts, seen = [], set()
    for o in outcomes:
        if key(o) in seen:
            continue
        seen.add(key(o))
        names = {"scenario": exp.name, "schedule": o.entry.schedule, "label": o.entry.label}
        parts.append(pd.DataFrame(names | fields(o), columns=columns))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def curves_table(exp: Experiment, outcomes: list[Outcome]) -> pd.DataFrame:
    """Long format: one row per loss sample of every run."""
    import numpy as np

    f_star = exp.objective.f_star

    def fields(o: Outcome) -> dict:
        c = o.curve
        return {
            "seed": o.seed,
            "lr": o.lr,
            "sim_time": c.times,
            "updates": c.updates,
            "loss": c.loss,
            "gap": c.loss - f_star if f_star is not None else np.nan,
        }

    return _blocks(exp, outcomes, CURVE_COLUMNS, lambda o: (o.entry.label, o.seed, o.lr), fields)


def delays_table(exp: Experiment, outcomes: list[Outcome]) -> pd.DataFrame:
    """The delay histogram of each schedule and seed: block updates per delay (those > 0).

    The timeline does not depend on the lr, so each schedule x seed appears once.
    """
    import numpy as np

    def fields(o: Outcome) -> dict:
        counts = o.stats.delay_counts
        delay = np.flatnonzero(counts)
        return {"seed": o.seed, "delay": delay, "updates": counts[delay]}

    return _blocks(exp, outcomes, DELAY_COLUMNS, lambda o: (o.entry.label, o.seed), fields)


def timeline_table(exp: Experiment, outcomes: list[Outcome]) -> pd.DataFrame:
    """The operations of each schedule's first rounds (rpd: its pd clock): its Gantt chart."""
    import numpy as np

    from pipebench.timeline.trace import KIND_NAMES

    def fields(o: Outcome) -> dict:
        t = o.first_rounds
        return {
            "kind": np.asarray(KIND_NAMES)[t.kind],
            **{f: getattr(t, f) for f in TIMELINE_COLUMNS[4:]},
        }

    return _blocks(exp, outcomes, TIMELINE_COLUMNS, lambda o: o.entry.label, fields)


def selected_lr(selected: list[bool], lrs: list[float]) -> list[bool]:
    """Which of one schedule's runs are at its selected lr; at the smallest if every lr diverged."""
    if any(selected):
        return [bool(x) for x in selected]
    least = min((lr for lr in lrs if lr == lr), default=math.nan)
    return [lr == least for lr in lrs]


def at_selected_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """`selected_lr` of a DataFrame's rows."""
    return runs.loc[selected_lr(list(runs["selected"]), list(runs["lr"]))]


def condensed(summary: pd.DataFrame, has_target: bool, has_optimum: bool) -> pd.DataFrame:
    """Per schedule, at its selected learning rate: mean +- std over seeds, as printed.

    Shows f - f* when the optimum is known, else the loss.
    """
    import pandas as pd

    rows = []
    for label, group in summary.groupby("label", sort=False):
        runs = group[group["seed"].notna()]
        chosen = at_selected_lr(runs)
        first = chosen.iloc[0]
        rows.append(
            {
                "schedule": label,
                "lr": f"{first['lr']:.3g}",
                **(
                    {"f - f*": _mean_std(chosen["final_gap"])}
                    if has_optimum
                    else {"loss": _mean_std(chosen["final_loss"])}
                ),
                "target": _reached(chosen["time_to_target"]) if has_target else "-",
                "updates": f"{chosen['updates'].mean():.0f}",
                # the papers' measure; the whole-run maximum is in the CSV
                "delay": fmt_number(
                    first["max_delay"]
                    if is_missing(first["steady_max_delay"])
                    else first["steady_max_delay"]
                ),
                "bubble": f"{chosen['bubble_fraction'].mean():.3f}",
                **(
                    {
                        "tokens/s": f"{chosen['tokens_per_second'].mean():,.0f}",
                        "mfu": f"{chosen['mfu'].mean():.1%}",
                        "memory": _memory(chosen),
                    }
                    if MACHINE_COLUMNS[0] in chosen
                    else {}
                ),
                "div": f"{int(chosen['diverged'].sum())}/{len(chosen)}",
            }
        )
    return pd.DataFrame(rows)


def _memory(runs: pd.DataFrame) -> str:
    """The highest rank's peak in GB, marked when it exceeds the GPU's memory."""
    return f"{runs['peak_memory_gb'].max():.1f} GB" + (" OOM" if runs["oom"].any() else "")


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


def _mean_std(values: pd.Series) -> str:
    import numpy as np

    spread = values.std(ddof=1) if len(values) > 1 else np.nan
    return mean_std_text(values.mean(), spread)


def _reached(times: pd.Series) -> str:
    hit = times.notna().sum()
    if hit == 0:
        return "never"
    shown = fmt_number(times.mean())
    return shown if hit == len(times) else f"{shown} ({hit}/{len(times)})"
