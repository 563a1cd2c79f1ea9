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

from pipebench.export import is_missing
from pipebench.tablecells import (
    CURVE_COLUMNS,
    DELAY_COLUMNS,
    MACHINE_COLUMNS,
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    fmt_number,
    mean_std_text,
    read_columns,
    selected_lr,
)
from pipebench.timeline.trace import KIND_NAMES

if TYPE_CHECKING:
    from pipebench.experiment import Experiment
    from pipebench.runner import Outcome


def read_table(path: Path, role: str, required: list[str] | tuple = ()) -> pd.DataFrame:
    """`read_columns` as a DataFrame (`seed` in pandas' nullable integers, NA on aggregate rows)."""

    columns = read_columns(path, role, required)
    return pd.DataFrame(
        {
            c: pd.Series(cells, dtype="Int64" if c == "seed" else None)
            for c, cells in columns.items()
        }
    )


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

    if is_missing(value):
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
    """`selected_lr` of a DataFrame's rows."""
    return runs.loc[selected_lr(list(runs["selected"]), list(runs["lr"]))]


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


def _mean_std(values: pd.Series) -> str:

    spread = values.std(ddof=1) if len(values) > 1 else np.nan
    return mean_std_text(values.mean(), spread)


def _reached(times: pd.Series) -> str:
    hit = times.notna().sum()
    if hit == 0:
        return "never"
    shown = fmt_number(times.mean())
    return shown if hit == len(times) else f"{shown} ({hit}/{len(times)})"
