"""What `pipebench compare` prints: the tables of `pipebench.compare`, as text.

csv and json carry the numbers unformatted; table and markdown carry the
same rows as short readable strings, markdown ready to paste into a pull
request.
"""

from __future__ import annotations

import math
import sys

from pipebench.compare import Comparison
from pipebench.export import Rows, is_missing, markdown_table, write_data
from pipebench.report.runview import print_table, show_table
from pipebench.tablecells import fmt_number, mean_std_text


def side_by_side_text(rows: list[dict]) -> Rows:
    """The printable form of `compare.side_by_side` for one scenario."""
    show_gap = any(not is_missing(r["final_gap"]) for r in rows)
    text = []
    for r in rows:
        if r["time_to_target"] == r["time_to_target"]:  # every seed reached the target
            target = fmt_number(r["time_to_target"])
        else:
            target = "never" if r["reached"] == 0 else f"{r['reached']}/{r['runs']} seeds"
        text.append(
            (
                r["label"],
                f"{r['lr']:.3g}",
                mean_std_text(r["final_gap"], r["final_gap_std"])
                if show_gap
                else mean_std_text(r["final_loss"], r["final_loss_std"]),
                target,
                "ref" if r["reference"] else _speedup(r["speedup"]),
                fmt_number(r["max_delay"]),
                fmt_number(r["mean_delay"]),
                f"{r['bubble_fraction']:.3f}",
                f"{r['diverged']}/{r['runs']}",
            )
        )
    columns = ["schedule", "lr", "f - f*" if show_gap else "loss", "time to target", "speedup"]
    return Rows([*columns, "delay max", "delay mean", "bubble", "diverged"], text)


def _speedup(value: float) -> str:
    return "-" if is_missing(value) else f"{value:.2f}x"


def _value(metric: str, value: float) -> str:
    if math.isinf(value):
        return "never" if metric == "time_to_target" else "diverged"
    return fmt_number(value)


def _change_text(change: float, base: float, candidate: float) -> str:
    if base == candidate:
        return "="
    if is_missing(change):
        return ""
    return f"{change * 100:+.2f}%"


def comparison_text(comparison: Comparison, table: Rows) -> Rows:
    """The printable form of rows of a baseline-vs-candidate comparison (columns even if none)."""
    metrics = list(dict.fromkeys(t.metric for t in comparison.thresholds))
    text = []
    for cells in table.rows:
        r = dict(zip(table.columns, cells, strict=True))
        row = [r["scenario"], r["label"], str(r["seed"]), f"{r['lr']:.3g}", r["status"]]
        for m in metrics:
            base, cand = r[f"{m}_base"], r[f"{m}_candidate"]
            if is_missing(base) or is_missing(cand):  # new or missing: one side only
                row.append(_value(m, cand if is_missing(base) else base))
            else:
                change = _change_text(r[f"{m}_change"], base, cand)
                row.append(f"{_value(m, base)} → {_value(m, cand)} {change}".rstrip())
        text.append((*row, r["crossed"]))
    return Rows(["scenario", "schedule", "seed", "lr", "status", *metrics, "crossed"], text)


def print_side_by_side(rows: list[dict], fmt: str) -> None:
    columns = list(rows[0]) if rows else []
    if write_data(Rows(columns, [tuple(r.values()) for r in rows]), fmt):
        return
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        group = [r for r in rows if r["scenario"] == scenario]
        ref = next(r["label"] for r in group if r["reference"])
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
    table = comparison.rows
    if changes_only:
        status = table.columns.index("status")
        table = Rows(table.columns, [row for row in table.rows if row[status] != "unchanged"])
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
