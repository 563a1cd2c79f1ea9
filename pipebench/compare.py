"""Comparisons of results: schedules side by side, and a baseline against a candidate.

Both read `summary.csv` files only, so they work on results from any
machine or version. Every metric they judge is one where lower is better;
a run that diverged or never reached the target counts as +inf, so it is
worse than any run that did.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipebench.errors import InputError, did_you_mean
from pipebench.schedules import PROGRAM_NAMES
from pipebench.tables import at_selected_lr, read_table

# The metrics `--fail-on` accepts: all lower-is-better columns of summary.csv.
METRICS = (
    "final_loss",
    "final_gap",
    "best_loss",
    "time_to_target",
    "auc",
    "max_delay",
    "steady_max_delay",
    "mean_delay",
    "bubble_fraction",
    "peak_versions",
    "wall_seconds",
)
# Judged when no `--fail-on` is given: the two a user asks about first.
DEFAULT_METRICS = ("final_loss", "time_to_target")
# Loss figures of a diverged run mean nothing: they count as +inf.
_DIVERGED_INF = ("final_loss", "final_gap", "auc")
_KEY = ["scenario", "label", "seed", "lr"]
# what every summary has: the columns that identify a run, and those side_by_side reads
_REQUIRED = [
    "scenario", "schedule", "label", "seed", "lr", "scenario_hash", "selected", "diverged",
    "final_loss", "final_gap", "time_to_target", "max_delay", "mean_delay", "bubble_fraction",
]  # fmt: skip


def read_summary(path: Path, role: str) -> pd.DataFrame:
    """The per-seed rows of a results folder's (or a file's) `summary.csv`.

    `role` names the argument in error messages (RESULTS, BASE, CANDIDATE).
    """
    path = Path(path)
    file = path / "summary.csv" if path.is_dir() else path
    if not file.is_file():
        what = "has no summary.csv" if path.is_dir() else "does not exist"
        raise InputError(role, f"{str(path)!r} {what}; give a results folder or a summary.csv")
    table = read_table(file, role, _REQUIRED)
    runs = table[table["seed"].notna()].copy()
    if runs.empty:
        raise InputError(role, f"{str(file)!r} holds no runs")
    runs["seed"] = runs["seed"].astype("int64")
    return runs.reset_index(drop=True)


# --- one results folder: schedules side by side --------------------------------------------


# The synchronous schedules speedups are measured against by default, in order of preference:
# 1f1b-flush trains as gpipe does with fewer activations in flight; naive has no pipelining;
# the programs (zero-bubble, interleaved, DualPipeV) are minibatch SGD as well.
REFERENCE_SCHEDULES = ("1f1b-flush", "gpipe", "naive", *PROGRAM_NAMES)


def _reference(labels: list[str], schedules: list[str], wanted: str | None) -> str:
    """The label speedups are measured against (see `side_by_side`)."""
    if wanted is None:
        for preferred in REFERENCE_SCHEDULES:
            if preferred in schedules:
                return labels[schedules.index(preferred)]
        return labels[0]
    if wanted in labels:
        return wanted
    by_name = [label for label, name in zip(labels, schedules, strict=True) if name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise InputError(
            "reference", f"{wanted!r} names several entries; give a label: {', '.join(by_name)}"
        )
    hint = did_you_mean(wanted, labels)
    raise InputError("reference", f"no schedule {wanted!r}{hint}; present: {', '.join(labels)}")


def side_by_side(runs: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Per scenario and schedule, at its selected lr: means and spreads over seeds.

    `time_to_target` is the mean over seeds when every seed reached the
    target (NaN otherwise; `reached` counts them), and `speedup` is the
    reference's time over this schedule's. The reference is `reference` (a
    label, or a schedule name present once), by default the first entry of
    the first of `REFERENCE_SCHEDULES` present, else the first schedule.
    """
    rows = []
    for (scenario, _), group in runs.groupby(["scenario", "scenario_hash"], sort=False):
        labels = list(dict.fromkeys(group["label"]))
        schedules = [group.loc[group["label"] == label, "schedule"].iloc[0] for label in labels]
        ref = _reference(labels, schedules, reference)
        mine = []
        for label in labels:
            chosen = at_selected_lr(group[group["label"] == label])
            reached = chosen["time_to_target"].notna()
            mine.append(
                {
                    "scenario": scenario,
                    "schedule": chosen["schedule"].iloc[0],
                    "label": label,
                    "reference": label == ref,
                    "lr": chosen["lr"].iloc[0],
                    "runs": len(chosen),
                    "final_loss": chosen["final_loss"].mean(),
                    "final_loss_std": _std(chosen["final_loss"]),
                    "final_gap": chosen["final_gap"].mean(),
                    "final_gap_std": _std(chosen["final_gap"]),
                    "time_to_target": (
                        chosen["time_to_target"].mean() if reached.all() else math.nan
                    ),
                    "reached": int(reached.sum()),
                    "speedup": math.nan,
                    "max_delay": chosen["max_delay"].max(),
                    "mean_delay": chosen["mean_delay"].mean(),
                    "bubble_fraction": chosen["bubble_fraction"].mean(),
                    "diverged": int(chosen["diverged"].sum()),
                }
            )
        ref_time = next(row["time_to_target"] for row in mine if row["reference"])
        for row in mine:
            row["speedup"] = ref_time / row["time_to_target"]  # NaN unless both reached
        rows += mine
    return pd.DataFrame(rows)


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


# --- two results: baseline against candidate --------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """`METRIC:N%` (relative to the baseline) or `METRIC:N` (absolute)."""

    metric: str
    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> Threshold:
        metric, sep, amount = text.partition(":")
        if metric not in METRICS:
            hint = did_you_mean(metric, list(METRICS))
            raise InputError(
                "fail-on", f"unknown metric {metric!r}{hint}; known: {', '.join(METRICS)}"
            )
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*", amount)
        if not sep or match is None:
            raise InputError(
                "fail-on",
                f"METRIC:THRESHOLD with THRESHOLD a number >= 0 or a percentage "
                f"(final_loss:5%, time_to_target:0.02), got {text!r}",
            )
        value = float(match.group(1))
        relative = match.group(2) == "%"
        return cls(metric, value / 100 if relative else value, relative)

    def __str__(self) -> str:
        return (
            f"{self.metric}:{self.value * 100:g}%"
            if self.relative
            else f"{self.metric}:{self.value:g}"
        )

    def judge(self, base: float, candidate: float) -> int:
        """+1 if the candidate is worse by more than the threshold, -1 if better, else 0."""
        if base == candidate:  # covers inf == inf
            return 0
        if math.isinf(candidate) or math.isinf(base):
            return 1 if math.isinf(candidate) else -1
        tolerance = self.value * abs(base) if self.relative else self.value
        diff = candidate - base
        return 1 if diff > tolerance else -1 if -diff > tolerance else 0


def _judged_values(runs: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric with NaN (never reached) and divergence as +inf."""
    values = runs[metric].to_numpy(dtype=float, na_value=np.nan).copy()
    if metric in _DIVERGED_INF:
        values[runs["diverged"].to_numpy()] = np.inf
    values[np.isnan(values)] = np.inf
    return values


def _change(base: float, candidate: float) -> float:
    """Relative change when the baseline is finite and non-zero, else NaN."""
    if not (math.isfinite(base) and math.isfinite(candidate)) or base == 0:
        return math.nan
    return (candidate - base) / abs(base)


STATUSES = ("worse", "better", "unchanged", "new", "missing", "not comparable")


@dataclass(frozen=True)
class Comparison:
    """Baseline against candidate, one row per run (`table`), and what crossed a threshold."""

    table: pd.DataFrame
    thresholds: tuple[Threshold, ...]
    failed: bool  # a --fail-on threshold was crossed

    def counts(self) -> dict[str, int]:
        found = self.table["status"].value_counts()
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def headline(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        judged = ", ".join(map(str, self.thresholds))
        verdict = "FAIL: a threshold was crossed" if self.failed else "pass"
        return f"{counts}; judged on {judged}: {verdict}"


def against_baseline(
    base: pd.DataFrame, candidate: pd.DataFrame, fail_on: list[Threshold]
) -> Comparison:
    """Match runs by scenario, schedule label, seed and lr, and judge each matched pair.

    A pair whose scenario hashes differ is `not comparable` (the scenario
    changed). With no `fail_on`, rows are judged on `DEFAULT_METRICS` with a
    zero threshold and nothing fails.
    """
    thresholds = tuple(fail_on) or tuple(Threshold(m, 0.0, False) for m in DEFAULT_METRICS)
    metrics = list(dict.fromkeys(t.metric for t in thresholds))
    for side, runs in (("BASE", base), ("CANDIDATE", candidate)):
        absent = [m for m in metrics if m not in runs.columns]
        if absent:
            raise InputError(side, f"summary has no column {', '.join(absent)}")
    merged = pd.merge(
        _side(base, metrics),
        _side(candidate, metrics),
        on=_KEY,
        how="outer",
        suffixes=("_base", "_candidate"),
        sort=False,
        indicator=True,
    )
    # base order (scenario order of entries, seeds, lrs), then the candidate's new rows
    merged = merged.sort_values(["_order_base", "_order_candidate"], kind="stable")
    merged = merged.reset_index(drop=True)
    comparable = (merged["_merge"] == "both") & (
        merged["scenario_hash_base"] == merged["scenario_hash_candidate"]
    )
    if not comparable.any():
        raise InputError(
            "CANDIDATE",
            "nothing to match: no run has the same scenario (name and hash), schedule, "
            f"seed and lr in both; baseline has {_scenarios(base)}, candidate has "
            f"{_scenarios(candidate)}",
        )
    verdicts = np.zeros(len(merged), dtype=int)
    crossed = [""] * len(merged)
    for i in np.flatnonzero(comparable.to_numpy()):
        votes = [
            t.judge(merged.at[i, f"{t.metric}_base"], merged.at[i, f"{t.metric}_candidate"])
            for t in thresholds
        ]
        crossed[i] = " ".join(str(t) for t, v in zip(thresholds, votes, strict=True) if v > 0)
        verdicts[i] = 1 if max(votes) > 0 else -1 if min(votes) < 0 else 0
    status = np.where(
        merged["_merge"] == "left_only",
        "missing",
        np.where(
            merged["_merge"] == "right_only",
            "new",
            np.where(
                ~comparable,
                "not comparable",
                np.select([verdicts > 0, verdicts < 0], ["worse", "better"], "unchanged"),
            ),
        ),
    )
    table = merged[_KEY].copy()
    table["schedule"] = merged["schedule_base"].fillna(merged["schedule_candidate"])
    table["status"] = status
    for m in metrics:
        table[f"{m}_base"] = merged[f"{m}_base"]
        table[f"{m}_candidate"] = merged[f"{m}_candidate"]
        table[f"{m}_change"] = [
            _change(b, c)
            for b, c in zip(merged[f"{m}_base"], merged[f"{m}_candidate"], strict=True)
        ]
    table["crossed"] = crossed
    table = table[["scenario", "schedule", "label", "seed", "lr", "status", *table.columns[6:]]]
    table["seed"] = table["seed"].astype("int64")
    return Comparison(table, thresholds, bool(fail_on) and (status == "worse").any())


def _side(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    side = runs[[*_KEY, "schedule", "scenario_hash"]].copy()
    side["_order"] = np.arange(len(side))
    for m in metrics:
        side[m] = _judged_values(runs, m)
    return side


def _scenarios(runs: pd.DataFrame) -> str:
    pairs = runs[["scenario", "scenario_hash"]].drop_duplicates()
    return ", ".join(f"{s} ({h})" for s, h in pairs.itertuples(index=False))
