"""Comparisons of results: schedules side by side, and a baseline against a candidate.

Both read `summary.csv` files only, so they work on results from any
machine or version. Every metric they judge is one where lower is better;
a run that diverged or never reached the target counts as +inf, so it is
worse than any run that did.

Rows are plain dicts and the arithmetic plain Python (means and spreads
summed as NumPy sums, so that they equal pandas' to the bit): `pipebench
compare` starts without pandas or NumPy. `api` hands Python users DataFrames.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipebench.errors import InputError, did_you_mean
from pipebench.export import Rows, is_missing
from pipebench.numsum import numpy_sum
from pipebench.schedules import PROGRAM_NAMES
from pipebench.tablecells import read_columns, selected_lr

if TYPE_CHECKING:
    import pandas as pd

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


def read_summary(path: Path, role: str) -> list[dict]:
    """The per-seed rows of a results folder's (or a file's) `summary.csv`, as dicts.

    `role` names the argument in error messages (RESULTS, BASE, CANDIDATE).
    """
    path = Path(path)
    file = path / "summary.csv" if path.is_dir() else path
    if not file.is_file():
        what = "has no summary.csv" if path.is_dir() else "does not exist"
        raise InputError(role, f"{str(path)!r} {what}; give a results folder or a summary.csv")
    columns = read_columns(file, role, _REQUIRED)
    rows = [dict(zip(columns, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]
    runs = [row for row in rows if not is_missing(row["seed"])]
    if not runs:
        raise InputError(role, f"{str(file)!r} holds no runs")
    return runs


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


def side_by_side(runs: list[dict], reference: str | None = None) -> list[dict]:
    """Per scenario and schedule, at its selected lr: means and spreads over seeds.

    `time_to_target` is the mean over seeds when every seed reached the
    target (NaN otherwise; `reached` counts them), and `speedup` is the
    reference's time over this schedule's. The reference is `reference` (a
    label, or a schedule name present once), by default the first entry of
    the first of `REFERENCE_SCHEDULES` present, else the first schedule.
    """
    scenarios: dict[tuple, list[dict]] = {}
    for run in runs:  # as pandas groups: a scenario without a name or hash is left out
        key = (run["scenario"], run["scenario_hash"])
        if not any(map(is_missing, key)):
            scenarios.setdefault(key, []).append(run)
    rows = []
    for (scenario, _), group in scenarios.items():
        labels = list(dict.fromkeys(run["label"] for run in group))
        entries = [[run for run in group if run["label"] == label] for label in labels]
        ref = _reference(labels, [entry[0]["schedule"] for entry in entries], reference)
        mine = []
        for label, entry in zip(labels, entries, strict=True):
            keep = selected_lr([run["selected"] for run in entry], [run["lr"] for run in entry])
            chosen = [run for run, kept in zip(entry, keep, strict=True) if kept]

            def values(column: str, chosen: list[dict] = chosen) -> list:
                return [run[column] for run in chosen]

            times = values("time_to_target")
            reached = sum(not is_missing(t) for t in times)
            mine.append(
                {
                    "scenario": scenario,
                    "schedule": chosen[0]["schedule"],
                    "label": label,
                    "reference": label == ref,
                    "lr": chosen[0]["lr"],
                    "runs": len(chosen),
                    "final_loss": _mean(values("final_loss")),
                    "final_loss_std": _std(values("final_loss")),
                    "final_gap": _mean(values("final_gap")),
                    "final_gap_std": _std(values("final_gap")),
                    "time_to_target": _mean(times) if reached == len(times) else math.nan,
                    "reached": reached,
                    "speedup": math.nan,
                    "max_delay": max(
                        (v for v in values("max_delay") if not is_missing(v)), default=math.nan
                    ),
                    "mean_delay": _mean(values("mean_delay")),
                    "bubble_fraction": _mean(values("bubble_fraction")),
                    "diverged": sum(values("diverged")),
                }
            )
        ref_time = next(row["time_to_target"] for row in mine if row["reference"])
        for row in mine:
            row["speedup"] = _ratio(ref_time, row["time_to_target"])  # NaN unless both reached
        rows += mine
    return rows


def _mean(values: list) -> float:
    """pandas' mean: NaN left out (summed as zero), NaN if no value."""
    count = sum(not is_missing(v) for v in values)
    filled = [0.0 if is_missing(v) else float(v) for v in values]
    return numpy_sum(filled) / count if count else math.nan


def _std(values: list) -> float:
    """pandas' sample standard deviation (ddof 1); NaN for fewer than two values."""
    count = sum(not is_missing(v) for v in values)
    if count < 2:
        return math.nan
    mean = numpy_sum([0.0 if is_missing(v) else float(v) for v in values]) / count
    squares = [0.0 if is_missing(v) else (mean - v) * (mean - v) for v in values]
    return math.sqrt(numpy_sum(squares) / (count - 1))


def _ratio(a: float, b: float) -> float:
    """a / b as NumPy divides: by zero, inf (NaN for 0 / 0) where Python raises."""
    if b == 0:
        return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1, b)
    return a / b


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


def _judged(run: dict, metric: str) -> float:
    """The metric with NaN (never reached) and divergence as +inf."""
    value = math.inf if metric in _DIVERGED_INF and run["diverged"] else float(run[metric])
    return math.inf if value != value else value


def _change(base: float, candidate: float) -> float:
    """Relative change when the baseline is finite and non-zero, else NaN."""
    if not (math.isfinite(base) and math.isfinite(candidate)) or base == 0:
        return math.nan
    return (candidate - base) / abs(base)


STATUSES = ("worse", "better", "unchanged", "new", "missing", "not comparable")


@dataclass(frozen=True)
class Comparison:
    """Baseline against candidate, one row per run, and what crossed a threshold."""

    rows: Rows
    thresholds: tuple[Threshold, ...]
    failed: bool  # a --fail-on threshold was crossed

    @property
    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows.rows, columns=self.rows.columns)

    def counts(self) -> dict[str, int]:
        found = [row[self.rows.columns.index("status")] for row in self.rows.rows]
        return {s: found.count(s) for s in STATUSES}

    def headline(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        judged = ", ".join(map(str, self.thresholds))
        verdict = "FAIL: a threshold was crossed" if self.failed else "pass"
        return f"{counts}; judged on {judged}: {verdict}"


def against_baseline(
    base: list[dict], candidate: list[dict], fail_on: list[Threshold]
) -> Comparison:
    """Match runs by scenario, schedule label, seed and lr, and judge each matched pair.

    A pair whose scenario hashes differ is `not comparable` (the scenario
    changed). With no `fail_on`, rows are judged on `DEFAULT_METRICS` with a
    zero threshold and nothing fails. Rows come in the baseline's order
    (each with its matches in the candidate's order), then the candidate's
    new runs.
    """
    thresholds = tuple(fail_on) or tuple(Threshold(m, 0.0, False) for m in DEFAULT_METRICS)
    metrics = list(dict.fromkeys(t.metric for t in thresholds))
    for side, runs in (("BASE", base), ("CANDIDATE", candidate)):
        absent = [m for m in metrics if m not in runs[0]]
        if absent:
            raise InputError(side, f"summary has no column {', '.join(absent)}")
    matches: dict[tuple, list[dict]] = {}
    for run in candidate:
        matches.setdefault(_key(run), []).append(run)
    pairs = [(run, match) for run in base for match in matches.get(_key(run), [None])]
    known = {_key(run) for run in base}
    pairs += [(None, run) for run in candidate if _key(run) not in known]
    comparable = [
        b is not None and c is not None and b["scenario_hash"] == c["scenario_hash"]
        for b, c in pairs
    ]
    if not any(comparable):
        raise InputError(
            "CANDIDATE",
            "nothing to match: no run has the same scenario (name and hash), schedule, "
            f"seed and lr in both; baseline has {_scenarios(base)}, candidate has "
            f"{_scenarios(candidate)}",
        )
    columns = ["scenario", "schedule", "label", "seed", "lr", "status"]
    columns += [f"{m}_{part}" for m in metrics for part in ("base", "candidate", "change")]
    rows = []
    for (b, c), judged in zip(pairs, comparable, strict=True):
        one = b if b is not None else c
        schedule = (
            b["schedule"] if b is not None and not is_missing(b["schedule"]) else c["schedule"]
        )
        values = {
            m: (_judged(b, m) if b else math.nan, _judged(c, m) if c else math.nan) for m in metrics
        }
        crossed = ""
        if b is None or c is None:
            status = "missing" if c is None else "new"
        elif not judged:
            status = "not comparable"
        else:
            votes = [t.judge(*values[t.metric]) for t in thresholds]
            crossed = " ".join(str(t) for t, v in zip(thresholds, votes, strict=True) if v > 0)
            status = "worse" if max(votes) > 0 else "better" if min(votes) < 0 else "unchanged"
        cells = [one["scenario"], schedule, one["label"], one["seed"], one["lr"], status]
        for m in metrics:
            cells += [*values[m], _change(*values[m])]
        rows.append((*cells, crossed))
    failed = bool(fail_on) and any(row[5] == "worse" for row in rows)
    return Comparison(Rows([*columns, "crossed"], rows), thresholds, failed)


def _key(run: dict) -> tuple:
    return tuple(run[k] for k in _KEY)


def _scenarios(runs: list[dict]) -> str:
    pairs = dict.fromkeys((run["scenario"], run["scenario_hash"]) for run in runs)
    return ", ".join(f"{s} ({h})" for s, h in pairs)
