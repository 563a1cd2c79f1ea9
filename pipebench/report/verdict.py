"""Which schedule wins a run, and which learning rates to distrust: the lines under its table.

The lines read the summary only, through the same side-by-side view as
`pipebench compare RESULTS`, so both name the same winner and reference.
"""

from __future__ import annotations

import math

import pandas as pd

from pipebench.compare import REFERENCE_SCHEDULES, side_by_side
from pipebench.tablecells import fmt_number
from pipebench.tables import clock_unit


def _names(rows: pd.DataFrame, column: str, unit: str = "") -> str:
    """The labels of the rows with the least `column`, and that value: "a, b (tied, 3.2)"."""
    best = rows[column].min()
    labels = list(rows.loc[rows[column] == best, "label"])
    tie = "tied, " if len(labels) > 1 else ""
    return f"{', '.join(labels)} ({tie}{fmt_number(best)}{unit})"


def winner_lines(summary: pd.DataFrame, has_target: bool) -> list[str]:
    """Lowest final loss (or f - f*), and fastest to the target with its speedup.

    Each schedule at its selected lr, means over seeds; a schedule with a
    diverged run there is out of the running, and only a schedule that
    reached the target in every seed has a time. The speedup is against
    the reference of `compare.side_by_side` (1f1b-flush, else gpipe, else
    naive, else the first schedule), which the line names.
    """
    side = pd.DataFrame(side_by_side(summary[summary["seed"].notna()].to_dict("records")))
    sound = side[side["diverged"] == 0]
    if sound.empty:
        return ["every schedule diverged at every learning rate"]
    column, what = (
        ("final_gap", "final f − f*")
        if side["final_gap"].notna().any()
        else ("final_loss", "final loss")
    )
    lines = [f"lowest {what}: {_names(sound, column)}"]
    if not has_target:
        return lines
    reached = sound[sound["time_to_target"].notna()]
    if reached.empty:
        return [*lines, "fastest to target: no schedule reached target_loss in every seed"]
    ref = side[side["reference"]].iloc[0]
    kind = (
        "the synchronous reference"
        if ref["schedule"] in REFERENCE_SCHEDULES
        else "the first schedule (no synchronous one to compare with)"
    )
    fastest = reached[reached["time_to_target"] == reached["time_to_target"].min()]
    unit = " s" if clock_unit(summary) == "seconds" else " time units"
    line = f"fastest to target: {_names(reached, 'time_to_target', unit)}"
    if math.isnan(ref["time_to_target"]):
        line += f"; {kind} {ref['label']} did not reach it in every seed"
    elif bool(fastest["reference"].any()):
        line += f"; {ref['label']} is {kind}"
    else:
        speedup = float(fastest["speedup"].iloc[0])
        line += (
            f", {speedup:.2f}x faster than {kind} {ref['label']} "
            f"({fmt_number(ref['time_to_target'])})"
        )
    return [*lines, line]


def lr_edge_lines(summary: pd.DataFrame) -> list[str]:
    """A warning naming each schedule whose selected lr is the lowest or highest of its grid.

    The best learning rate may then lie outside the grid, so the comparison
    may be unfair to that schedule. Grids of one value are not searched and
    raise no warning; nor does a schedule whose every lr diverged.
    """
    aggregates = summary[summary["seed"].isna()]
    found = []
    for label, rows in aggregates.groupby("label", sort=False):
        chosen = rows.loc[rows["selected"], "lr"]
        lrs = rows["lr"]
        if chosen.empty or lrs.nunique() < 2:
            continue
        lr = chosen.iloc[0]
        if lr == lrs.max():
            found.append(f"{label} (highest, {lr:.3g})")
        elif lr == lrs.min():
            found.append(f"{label} (lowest, {lr:.3g})")
    if not found:
        return []
    return [
        f"warning: selected lr at the edge of its grid for {', '.join(found)}: "
        "the best lr may lie beyond it; extend the grid past that end"
    ]
