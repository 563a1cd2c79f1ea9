"""The picture of a sweep: the final `f − f*` (or loss) against each swept key, per schedule.

Each point is one schedule in one cell at its selected learning rate,
averaged over seeds. When more than one key is swept, the plot against one
key shows, at each of its values, the best cell over the other keys (the
title says which): the answer to "how does this key matter when the rest
is tuned". A point where every such cell diverged is drawn as an x at the
top of the axes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipebench.export import file_name
from pipebench.report.plots import (  # plots selects the Agg backend
    LINE_STYLES,
    MARKERS,
    plt,
    save_figure,
)
from pipebench.tables import at_selected_lr


def final_points(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per cell and schedule: the mean final value over seeds at the selected lr.

    Columns: the keys, `label`, `value` (NaN when a seed diverged), `low` and
    `high` (the least and greatest over seeds), `seeds`. The value is
    `final_gap` when f* is known, else `final_loss`.
    """
    metric = "final_gap" if summary["final_gap"].notna().any() else "final_loss"
    runs = summary[summary["seed"].notna()]
    rows = []
    for (*values, label), group in runs.groupby([*keys, "label"], sort=False, dropna=False):
        chosen = at_selected_lr(group)
        diverged = bool(chosen["diverged"].any())
        finals = chosen[metric].astype(float)
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "label": label,
                "value": np.nan if diverged else float(finals.mean()),
                "low": np.nan if diverged else float(finals.min()),
                "high": np.nan if diverged else float(finals.max()),
                "seeds": len(chosen),
            }
        )
    points = pd.DataFrame(rows)
    points.attrs["metric"] = metric
    return points


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)


def _best_cells(mine: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per value of `key`, the row of the cell with the least value (over the other keys)."""
    sound = mine.dropna(subset=["value"])
    if sound.empty:
        return sound.set_index(key)
    return sound.loc[sound.groupby(key, sort=False)["value"].idxmin()].set_index(key)


def sweep_png(
    points: pd.DataFrame, key: str, keys: list[str], title: str, path: Path, loss_label: str
) -> None:
    """Draw `sweep_figure` to `path`."""
    save_figure(sweep_figure(points, key, keys, title, loss_label), path)


def sweep_figure(
    points: pd.DataFrame, key: str, keys: list[str], title: str, loss_label: str
) -> plt.Figure:
    """Final value against `key`, one line per schedule (best over the other keys).

    Bars span the least to the greatest final value over seeds of the cell
    drawn. `loss_label` says what the loss is (`objectives.loss_label`).
    """
    others = [k for k in keys if k != key]
    xs = list(dict.fromkeys(points[key]))
    numeric = _numeric(xs)
    if numeric:
        xs = sorted(xs)
    position = {x: (float(x) if numeric else i) for i, x in enumerate(xs)}
    gap = points.attrs["metric"] == "final_gap"
    seeds = int(points["seeds"].max())
    fig, ax = plt.subplots(figsize=(9, 5))
    drawn, any_failed = [], False
    for i, (label, mine) in enumerate(points.groupby("label", sort=False)):
        best = _best_cells(mine, key)
        x = np.array([position[v] for v in xs])
        y, low, high = (
            np.array([best[c].get(v, np.nan) for v in xs], dtype=float)
            for c in ("value", "low", "high")
        )
        done = np.array([v in set(mine[key]) for v in xs])
        color = plt.cm.tab10(i % 10)
        ax.plot(x, y, LINE_STYLES[i % len(LINE_STYLES)], marker=MARKERS[i % len(MARKERS)],
                color=color, label=label, ms=6, fillstyle="none")  # fmt: skip
        if seeds > 1:
            ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=color, elinewidth=1,
                        capsize=3, alpha=0.7)  # fmt: skip
        failed = done & np.isnan(y)
        any_failed |= bool(failed.any())
        if failed.any():
            ax.plot(x[failed], np.ones(failed.sum()), "x", color=color, ms=8, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
        drawn += list(y[np.isfinite(y)])
    if drawn and min(drawn) > 0 and max(drawn) / min(drawn) >= 10:  # else linear reads better
        ax.set_yscale("log")
    spread = [position[v] for v in xs]
    if numeric and min(spread) > 0 and max(spread) / min(spread) >= 16:
        ax.set_xscale("log", base=2 if all(math.log2(v).is_integer() for v in spread) else 10)
    if numeric:
        ax.set_xticks(spread, [f"{v:g}" for v in xs], minor=False)
    else:
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_xlabel(key)
    ax.set_ylabel(f"final f − f*  (f: {loss_label})" if gap else f"final {loss_label}")
    extra = f"; best over {', '.join(others)}" if others else ""
    note = f"mean over {seeds} seeds, bars min–max" if seeds > 1 else "one seed"
    ax.set_title(
        f"{title}\neach schedule at its selected lr, {note}{extra}"
        + ("; x: every run diverged" if any_failed else ""),
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return fig


def draw_sweep(
    out_dir: Path, summary: pd.DataFrame, keys: list[str], loss_label: str
) -> list[Path]:
    """One `sweep-<key>.png` per swept key; returns the files written."""
    points = final_points(summary, keys)
    title = str(summary["scenario"].iloc[0])
    written = []
    for key in keys:
        path = Path(out_dir) / f"sweep-{file_name(key, 'key')}.png"
        sweep_png(points, key, keys, title, path, loss_label)
        written.append(path)
    return written
