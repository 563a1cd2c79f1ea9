"""What `pipebench compare` prints: the tables of `pipebench.compare`, as text.

csv and json carry the numbers unformatted; table and markdown carry the
same rows as short readable strings, markdown ready to paste into a pull
request.
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from pipebench.compare import Comparison
from pipebench.export import markdown_table, write_data
from pipebench.report.runview import print_table, show_table
from pipebench.tables import fmt_number, mean_std_text


def side_by_side_text(table: pd.DataFrame) -> pd.DataFrame:
    """The printable form of `compare.side_by_side` for one scenario."""
    show_gap = table["final_gap"].notna().any()
    rows = []
    for r in table.itertuples(index=False):
        if r.time_to_target == r.time_to_target:  # every seed reached the target
            target = fmt_number(r.time_to_target)
        else:
            target = "never" if r.reached == 0 else f"{r.reached}/{r.runs} seeds"
        rows.append(
            {
                "schedule": r.label,
                "lr": f"{r.lr:.3g}",
                ("f - f*" if show_gap else "loss"): (
                    mean_std_text(r.final_gap, r.final_gap_std)
                    if show_gap
                    else mean_std_text(r.final_loss, r.final_loss_std)
                ),
                "time to target": target,
                "speedup": "ref" if r.reference else _speedup(r.speedup),
                "delay max": fmt_number(r.max_delay),
                "delay mean": fmt_number(r.mean_delay),
                "bubble": f"{r.bubble_fraction:.3f}",
                "diverged": f"{r.diverged}/{r.runs}",
            }
        )
    return pd.DataFrame(rows)


def _speedup(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}x"


def _value(metric: str, value: float) -> str:
    if math.isinf(value):
        return "never" if metric == "time_to_target" else "diverged"
    return fmt_number(value)


def _change_text(change: float, base: float, candidate: float) -> str:
    if base == candidate:
        return "="
    if pd.isna(change):
        return ""
    return f"{change * 100:+.2f}%"


def comparison_text(comparison: Comparison, table: pd.DataFrame) -> pd.DataFrame:
    """The printable form of rows of a baseline-vs-candidate comparison (columns even if none)."""
    metrics = list(dict.fromkeys(t.metric for t in comparison.thresholds))
    columns = ["scenario", "schedule", "seed", "lr", "status", *metrics, "crossed"]
    rows = []
    for r in table.to_dict("records"):
        row = {
            "scenario": r["scenario"],
            "schedule": r["label"],
            "seed": str(r["seed"]),
            "lr": f"{r['lr']:.3g}",
            "status": r["status"],
        }
        for m in metrics:
            base, cand = r[f"{m}_base"], r[f"{m}_candidate"]
            if pd.isna(base) or pd.isna(cand):  # new or missing: one side only
                row[m] = _value(m, cand if pd.isna(base) else base)
            else:
                change = _change_text(r[f"{m}_change"], base, cand)
                row[m] = f"{_value(m, base)} → {_value(m, cand)} {change}".rstrip()
        row["crossed"] = r["crossed"]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def print_side_by_side(table: pd.DataFrame, fmt: str) -> None:
    if write_data(table, fmt):
        return
    for scenario, group in table.groupby("scenario", sort=False):
        ref = group.loc[group["reference"], "label"].iloc[0]
        caption = (
            f"at each schedule's selected lr, mean ± std over seeds; speedup: time to target "
            f"of {ref} over the schedule's; delay in block updates"
        )
        show_table(side_by_side_text(group), str(scenario), caption, fmt)


def print_comparison(comparison: Comparison, fmt: str, changes_only: bool = False) -> None:
    """The comparison in `fmt`; `changes_only` drops unchanged rows (the headline counts them).

    The verdict comes first in Markdown, under the table on a terminal, and
    on stderr beside csv and json, whose stdout is the table alone (a header
    row, or `[]`, when no row is left).
    """
    table = comparison.table
    if changes_only:
        table = table[table["status"] != "unchanged"]
    if write_data(table, fmt):
        print(f"pipebench compare: {comparison.headline()}", file=sys.stderr)
        return
    text = comparison_text(comparison, table)
    if fmt == "markdown":
        sys.stdout.write(
            f"**pipebench compare**: {comparison.headline()}\n\n{markdown_table(text)}"
        )
    else:
        print_table(text, "baseline → candidate", comparison.headline())
