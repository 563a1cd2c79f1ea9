"""Pictures, drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from pipebench.export import file_name, naming
from pipebench.tables import at_selected_lr, clock_unit
from pipebench.timeline.trace import (
    AVERAGE,
    BACKWARD,
    FORWARD,
    INPUT_GRAD,
    KIND_NAMES,
    PAIR_FORWARD,
    UPDATE,
    WEIGHT_GRAD,
    Trace,
)
from pipebench.timeline.window import head

COLORS = {FORWARD: "#4C9BE8", BACKWARD: "#C758B4", UPDATE: "#E8B64C", AVERAGE: "#5CB85C",
          INPUT_GRAD: "#D9534F", WEIGHT_GRAD: "#2E5E8C", PAIR_FORWARD: "#3C9D6E"}  # fmt: skip
NAMES = {FORWARD: "forward", BACKWARD: "backward", UPDATE: "optimizer step", AVERAGE: "average",
         INPUT_GRAD: "I (input grad)", WEIGHT_GRAD: "W (weight grad)",
         PAIR_FORWARD: "F&B pair"}  # fmt: skip


def save_figure(fig: plt.Figure, path: Path, tight: bool = True) -> None:
    """Write a figure as PNG to exactly `path`, atomically: a temporary file beside it, renamed.

    `tight` crops to the drawn area, at the price of drawing twice.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        with naming(path):
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight" if tight else None)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; a picture is not
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def gantt_png(trace: Trace, path: Path, max_ops: int = 200_000, unit: str = "cost units") -> None:
    """Draw the Gantt chart of `trace` to `path`; a long trace is cut to its first `max_ops`.

    `unit`: what the clock counts (seconds when the costs are a model's on a GPU).
    """
    shown = head(trace, np.inf, max_ops)
    cut = "" if shown.n_ops == trace.n_ops else f", first {shown.makespan:g} of {trace.makespan:g}"
    if trace.chunk_rank is None:
        title = f"{trace.schedule}: S={trace.stages}, M={trace.microbatches}{cut}"
        draw_gantt(shown.kind, shown.stage, shown.mb, shown.start, shown.end, trace.stages, title,
                   path, unit=unit)  # fmt: skip
        return
    title = f"{trace.schedule}: {trace.ranks} ranks, {trace.stages} chunks, M={trace.microbatches}"
    draw_gantt(shown.kind, shown.rank, shown.mb, shown.start, shown.end, trace.ranks, title + cut,
               path, chunk=shown.chunk, row_name="rank", unit=unit)  # fmt: skip


def draw_gantt(
    kind: np.ndarray,
    stage: np.ndarray,
    mb: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    stages: int,
    title: str,
    path: Path,
    max_labels_across: int = 100,
    chunk: np.ndarray | None = None,
    row_name: str = "stage",
    unit: str = "cost units",
) -> None:
    """One bar per operation on its stage's row (AVG spans every row), coloured by kind.

    Micro-batch ids (`chunk:mb` when `chunk` is given: rows are then ranks) are
    written inside the bars when the shortest computation is wide enough to hold one.
    An F&B pair is drawn once, by its forward row.
    """
    until = float(end.max()) if len(end) else 1.0
    height = max(2.0, 0.35 * stages + 1.2)
    fig, ax = plt.subplots(figsize=(12, min(height, 24)))
    legend = []
    for k in COLORS:
        rows = np.flatnonzero((kind == k) & (end > start))
        if len(rows) == 0:
            continue
        on_every_stage = k == AVERAGE
        for s in range(stages) if on_every_stage else np.unique(stage[rows]):
            mine = rows if on_every_stage else rows[stage[rows] == s]
            ax.broken_barh(
                list(zip(start[mine], end[mine] - start[mine], strict=True)),
                (s - 0.4, 0.8),
                facecolors=COLORS[k],
                edgecolor="white",
                linewidth=0.3,
            )
        legend.append(Patch(color=COLORS[k], label=NAMES[k]))
    fb = np.flatnonzero((kind <= BACKWARD) | (kind == INPUT_GRAD) | (kind == WEIGHT_GRAD)
                        | (kind == PAIR_FORWARD))  # fmt: skip
    if len(fb) and until / (end[fb] - start[fb]).min() <= max_labels_across:
        for i in fb:
            label = str(mb[i]) if chunk is None else f"{chunk[i]}:{mb[i]}"
            ax.text((start[i] + end[i]) / 2, stage[i], label, ha="center", va="center",
                    fontsize=7, color="white")  # fmt: skip
    ax.set_ylim(stages - 0.5, -0.5)
    ax.set_xlim(0, until)
    ax.set_ylabel(row_name)
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_title(title)
    if stages <= 32:
        ax.set_yticks(range(stages))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    # fixed margins: cropping would draw the many labels twice
    inch = 1 / fig.get_figheight()
    fig.subplots_adjust(left=0.06, right=0.86, bottom=0.6 * inch, top=1 - 0.45 * inch)
    save_figure(fig, path, tight=False)


def gantt_of_table(
    ops: pd.DataFrame, stages: int, title: str, path: Path, unit: str = "cost units"
) -> None:
    """The Gantt chart of rows of `timeline.csv` (one schedule's)."""
    kind = ops["kind"].map({name: i for i, name in enumerate(KIND_NAMES)}).to_numpy()
    draw_gantt(
        kind, ops["stage"].to_numpy(), ops["mb"].to_numpy(), ops["start"].to_numpy(),
        ops["end"].to_numpy(), stages, title, path, unit=unit,
    )  # fmt: skip


def _selected(summary: pd.DataFrame) -> list[tuple[str, float, bool]]:
    """Per schedule: the selected lr (the smallest if all diverged), and if a seed diverged."""
    out = []
    runs = summary[summary["seed"].notna()]
    for label, group in runs.groupby("label", sort=False):
        chosen = at_selected_lr(group)
        out.append((label, float(chosen["lr"].iloc[0]), bool(chosen["diverged"].any())))
    return out


def _by_seed(rows: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The x of the first seed, and each seed's y on it (one row per seed)."""
    seeds = [group for _, group in rows.groupby("seed", sort=True)]
    grid = seeds[0][x].to_numpy(dtype=float)
    ys = []
    for group in seeds:
        xs, v = group[x].to_numpy(dtype=float), group[y].to_numpy(dtype=float)
        if len(xs) != len(grid) or (xs != grid).any():  # rare: sampled differently
            v = np.interp(grid, xs, v, right=np.nan)
        ys.append(v)
    return grid, np.vstack(ys)


X_LABELS = {"sim_time": "simulated time ({unit})", "updates": "block updates"}
# Each schedule its own colour, line style and marker, so that equal curves stay visible.
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = "osD^vPX*<>"
MARK_STEP = 0.1  # a marker every tenth of a line's length, staggered between schedules
# f - f* below this many machine epsilons times the initial loss is rounding: drawn at that floor.
ROUNDING_EPSILONS = 4


def rounding_floor(curves: pd.DataFrame) -> tuple[float, float]:
    """(floor, scale): ROUNDING_EPSILONS * eps * scale, the largest |loss| at the first sample.

    A gap f - f* this small is the rounding error of computing f and f* at
    the scale the run starts from; below it, even its sign means nothing.
    """
    first = curves[curves["sim_time"] == curves["sim_time"].min()]["loss"].to_numpy(dtype=float)
    first = np.abs(first[np.isfinite(first)])
    scale = float(first.max()) if len(first) else 1.0
    return ROUNDING_EPSILONS * np.finfo(float).eps * max(scale, np.finfo(float).tiny), scale


def curves_png(
    summary: pd.DataFrame, curves: pd.DataFrame, x: str, path: Path, loss_label: str
) -> None:
    """Draw `curves_figure` to `path`."""
    save_figure(curves_figure(summary, curves, x, loss_label), path)


def curves_figure(
    summary: pd.DataFrame, curves: pd.DataFrame, x: str, loss_label: str
) -> plt.Figure:
    """Loss against `x` per schedule at its selected lr: the mean over seeds and a min-max band.

    Plots f - f* on a log axis when f* is known, else the loss (log axis when
    it stays positive). Gaps below `rounding_floor` (zero and negative ones
    included) are drawn at the floor, which a dotted line and a note show.
    Points past divergence are not drawn. `loss_label` says what the loss is.
    """
    gap = curves["gap"].notna().any()
    y = "gap" if gap else "loss"
    floor, scale = rounding_floor(curves)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    positive = True
    clipped = False
    n_seeds = 0
    for i, (label, lr, diverged) in enumerate(_selected(summary)):
        rows = curves[(curves["label"] == label) & (curves["lr"] == lr)]
        if rows.empty:
            continue
        grid, ys = _by_seed(rows, x, y)
        n_seeds = max(n_seeds, len(ys))
        ys[~np.isfinite(ys)] = np.nan
        positive &= bool(np.nanmin(ys, initial=np.inf) > 0)
        if gap:
            below = ys < floor  # NaN compares false: past divergence stays undrawn
            clipped |= bool(below.any())
            ys[below] = floor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns after divergence
            mean, low, high = np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
        color = plt.cm.tab10(i % 10)
        name = f"{label} (lr {lr:.3g}{', diverged' if diverged else ''})"
        ax.plot(grid, mean, LINE_STYLES[i % len(LINE_STYLES)], color=color, label=name,
                linewidth=1.4, marker=MARKERS[i % len(MARKERS)], markersize=5,
                markevery=((i % 10) * MARK_STEP / 10, MARK_STEP), fillstyle="none")  # fmt: skip
        if len(ys) > 1:
            ax.fill_between(grid, low, high, color=color, alpha=0.18, linewidth=0)
    if gap or positive:
        ax.set_yscale("log")
    note = ""
    if clipped:
        ax.axhline(floor, color="0.4", linestyle=":", linewidth=1)
        ax.set_ylim(bottom=floor / 3)
        note = (
            f"\ndotted: rounding floor {floor:.2g} = {ROUNDING_EPSILONS} ε × initial loss "
            f"{scale:.3g}; a smaller f − f* (zero or negative included) is drawn on it"
        )
    ax.set_xlabel(X_LABELS[x].format(unit=clock_unit(summary)))
    ax.set_ylabel(f"f − f*  (f: {loss_label})" if gap else loss_label)
    scenario = summary["scenario"].iloc[0]
    band = f"mean over {n_seeds} seeds, band min–max" if n_seeds > 1 else "one seed"
    ax.set_title(f"{scenario}: each schedule at its selected lr ({band}){note}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return fig


def delays_png(delays: pd.DataFrame, path: Path, max_bins: int = 80) -> None:
    """One histogram per schedule: the fraction of block updates made at each delay.

    Pooled over seeds (only rpd's delays depend on the seed). One bar per
    delay up to `max_bins`; beyond, `max_bins` equal bins.
    """
    labels = list(dict.fromkeys(delays["label"]))
    cols = min(4, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, label in zip(axes.flat, labels, strict=False):
        mine = delays[delays["label"] == label].groupby("delay")["updates"].sum()
        d, n = mine.index.to_numpy(), mine.to_numpy(dtype=float)
        top = int(d.max())
        if top < max_bins:  # one bar per delay
            ax.bar(d, n / n.sum(), width=0.8, color="#4C9BE8")
        else:
            weights, edges = np.histogram(d, bins=max_bins, range=(0, top + 1), weights=n / n.sum())
            ax.stairs(weights, edges, fill=True, color="#4C9BE8")
        mean = float((d * n).sum() / n.sum())
        ax.set_title(f"{label}\nmax {top}, mean {mean:.3g}", fontsize=9)
        ax.set_xlabel("delay (block updates)", fontsize=8)
        ax.set_ylabel("fraction of updates", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(labels) :]:
        ax.axis("off")
    fig.suptitle(f"{delays['scenario'].iloc[0]}: delay of each block update", fontsize=10)
    fig.tight_layout()  # already fits the drawing: no second cropping pass
    save_figure(fig, path, tight=False)


def draw_results(
    out_dir: Path,
    summary: pd.DataFrame,
    curves: pd.DataFrame,
    delays: pd.DataFrame,
    timeline: pd.DataFrame,
    loss_label: str,
) -> list[Path]:
    """Every picture of a results folder; returns the files written.

    `loss_label` says what the loss is (`objectives.loss_label`).
    """
    out_dir = Path(out_dir)
    written = []
    if not curves.empty:
        for x, name in (("sim_time", "loss_vs_time.png"), ("updates", "loss_vs_updates.png")):
            curves_png(summary, curves, x, out_dir / name, loss_label)
            written.append(out_dir / name)
    if not delays.empty:
        delays_png(delays, out_dir / "delays.png")
        written.append(out_dir / "delays.png")
    stages = int(summary["stages"].iloc[0]) if not summary.empty else 1
    used = set()
    for label, ops in timeline.groupby("label", sort=False):
        name = f"gantt-{file_name(label, 'schedule')}"
        while name in used:  # two labels that differ only in unsafe characters
            name += "_"
        used.add(name)
        schedule = ops["schedule"].iloc[0]
        clock = " (its pd clock)" if schedule == "rpd" else ""
        unit = clock_unit(summary)
        shown = "time units" if unit == "cost units" else unit
        title = f"{label}{clock}: S={stages}, first {ops['end'].max():g} {shown}"
        gantt_of_table(ops, stages, title, out_dir / f"{name}.png", unit=unit)
        written.append(out_dir / f"{name}.png")
    return written
