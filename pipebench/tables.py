"""The result tables: `summary.csv`, `curves.csv`, and the condensed view printed after a run.

Column names are part of the interface (DESIGN.md): new columns are added
at the end, never renamed. Rows come in scenario order (schedule entry,
seed, learning rate), so the same scenario and seed give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipebench.errors import InputError, clip, shorten
from pipebench.timeline.trace import KIND_NAMES

if TYPE_CHECKING:  # reading tables (compare, plot) does not load the engine
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
MACHINE_COLUMNS = ["tokens_per_second", "mfu"]
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
BOOL_COLUMNS = ("selected", "diverged")
_KNOWN = {*SUMMARY_COLUMNS, *CURVE_COLUMNS, *DELAY_COLUMNS, *TIMELINE_COLUMNS}
_INFINITIES = ("inf", "-inf", "+inf")


# Read the floats written back to the last bit: pandas 3 does by default (and deprecates
# asking), pandas 2 parses to within an ulp unless asked.
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_table(path: Path, role: str, required: list[str] | tuple = ()) -> pd.DataFrame:
    """A table this module wrote, read back with the same types (an empty field is NaN).

    Text columns stay text ('nan' is a label like any other), flags become
    booleans, `seed` an integer column with NA on aggregate rows, every other
    column numbers (inf as written for diverged runs). A file that is not such
    a table (unreadable, a `required` column missing, a cell that is not of its
    column's type) is an `InputError` on `role` (the argument), naming the file,
    the column and the line.
    """
    try:  # the columns pipebench writes as text, to be checked; others (swept keys) inferred
        raw = pd.read_csv(
            path,
            dtype=dict.fromkeys(_KNOWN, str),
            keep_default_na=False,
            na_values=[""],
            **_EXACT_FLOATS,
        )
    except (ValueError, TypeError, UnicodeDecodeError, OSError) as error:  # pandas' too
        first = (str(error).strip().splitlines() or ["empty file"])[0]
        raise InputError(role, f"{str(path)!r} is not a pipebench table: {clip(first)}") from None
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(
            role,
            f"{str(path)!r} is not a pipebench table: no column {', '.join(missing[:3])}"
            + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""),
        )
    typed = {c: _typed(raw[c].fillna(""), c, path, role) if c in _KNOWN else raw[c] for c in raw}
    return pd.DataFrame(typed, index=raw.index)


def _typed(cells: pd.Series, column: str, path: Path, role: str) -> pd.Series:
    """One column's cells (text as written) with the column's type; InputError on a bad cell."""
    empty = cells == ""
    if column in TEXT_COLUMNS:
        return cells.where(~empty, np.nan)
    lower = cells.str.strip().str.lower()
    if column in BOOL_COLUMNS:
        bad = ~lower.isin(("true", "false", ""))
        expected = "true, false or empty"
        typed = lower == "true"
    else:
        typed = pd.to_numeric(cells.where(~empty, np.nan), errors="coerce")
        # a number as pipebench writes it: finite, or 'inf' (never 'nan' nor 1e400)
        bad = ~empty & (typed.isna() | (np.isinf(typed) & ~lower.isin(_INFINITIES)))
        expected = "a number (or inf, or empty)"
        if column == "seed":
            bad |= ~empty & typed.notna() & (typed != np.floor(typed))
            expected = "an integer (or empty)"
            typed = typed.astype("Int64") if not bad.any() else typed
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            role, f"{str(path)!r}: column {column} holds {shorten(cells.iloc[row])} on line "
            f"{row + 2}; expected {expected}",
        )  # fmt: skip
    return typed


def _time_to_target(curve, target: float | None) -> float:
    if target is None:
        return np.nan
    hit = np.flatnonzero(curve.loss <= target)
    return float(curve.times[hit[0]]) if len(hit) else np.nan


def _area(curve) -> float:
    """Integral of the loss over simulated time (trapezoids); inf once diverged."""
    if curve.diverged_at is not None:
        return np.inf
    t, f = curve.times, curve.loss
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(t)))


def _run_row(exp: Experiment, scenario_hash: str, o: Outcome) -> dict:
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
    return {"tokens_per_second": tokens_per_second, "mfu": exp.machine.mfu(tokens_per_second, gpus)}


_MEAN = ["final_loss", "final_gap", "best_loss", "auc", "sim_time", "microbatches", "updates",
         "mean_delay", "bubble_fraction", "mean_block_delay"]  # fmt: skip
_MAX = ["max_delay", "steady_max_delay", "peak_versions"]


def _aggregate(group: pd.DataFrame) -> dict:
    """The row over seeds: means, worst cases, and a time to target only if every seed got there."""
    row = group.iloc[0].to_dict()
    row.update({c: group[c].mean() for c in _MEAN + MACHINE_COLUMNS if c in group})
    row.update({c: group[c].max() for c in _MAX})
    reached = group["time_to_target"]
    row["time_to_target"] = reached.mean() if reached.notna().all() else np.nan
    row["diverged"] = bool(group["diverged"].any())
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
    if value is None or pd.isna(value):
        return pd.NA
    return int(value) if float(value).is_integer() else float(value)


def _blocks(
    exp: Experiment, outcomes: list[Outcome], columns: list[str], key, fields
) -> pd.DataFrame:
    """A long table: rows `fields(o)` for the first outcome `o` of each distinct `key(o)`."""
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

    def fields(o: Outcome) -> dict:
        counts = o.stats.delay_counts
        delay = np.flatnonzero(counts)
        return {"seed": o.seed, "delay": delay, "updates": counts[delay]}

    return _blocks(exp, outcomes, DELAY_COLUMNS, lambda o: (o.entry.label, o.seed), fields)


def timeline_table(exp: Experiment, outcomes: list[Outcome]) -> pd.DataFrame:
    """The operations of each schedule's first rounds (rpd: its pd clock): its Gantt chart."""

    def fields(o: Outcome) -> dict:
        t = o.first_rounds
        return {
            "kind": np.asarray(KIND_NAMES)[t.kind],
            **{f: getattr(t, f) for f in TIMELINE_COLUMNS[4:]},
        }

    return _blocks(exp, outcomes, TIMELINE_COLUMNS, lambda o: o.entry.label, fields)


def at_selected_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """One schedule's runs at its selected lr; at the smallest lr if every lr diverged."""
    chosen = runs[runs["selected"]]
    return chosen if not chosen.empty else runs[runs["lr"] == runs["lr"].min()]


def condensed(summary: pd.DataFrame, has_target: bool, has_optimum: bool) -> pd.DataFrame:
    """Per schedule, at its selected learning rate: mean +- std over seeds, as printed.

    Shows f - f* when the optimum is known, else the loss.
    """
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
                    if pd.isna(first["steady_max_delay"])
                    else first["steady_max_delay"]
                ),
                "bubble": f"{chosen['bubble_fraction'].mean():.3f}",
                **(
                    {
                        "tokens/s": f"{chosen['tokens_per_second'].mean():,.0f}",
                        "mfu": f"{chosen['mfu'].mean():.1%}",
                    }
                    if MACHINE_COLUMNS[0] in chosen
                    else {}
                ),
                "div": f"{int(chosen['diverged'].sum())}/{len(chosen)}",
            }
        )
    return pd.DataFrame(rows)


def fmt_number(value: float) -> str:
    """4 significant digits, "-" for a missing value."""
    if pd.isna(value):
        return "-"
    return f"{value:.4g}"


def mean_std_text(mean: float, std: float) -> str:
    """`mean±std` as printed (just the mean when there is no spread to show)."""
    return fmt_number(mean) if pd.isna(std) or pd.isna(mean) else f"{fmt_number(mean)}±{std:.2g}"


def _mean_std(values: pd.Series) -> str:
    spread = values.std(ddof=1) if len(values) > 1 else np.nan
    return mean_std_text(values.mean(), spread)


def _reached(times: pd.Series) -> str:
    hit = times.notna().sum()
    if hit == 0:
        return "never"
    shown = fmt_number(times.mean())
    return shown if hit == len(times) else f"{shown} ({hit}/{len(times)})"
