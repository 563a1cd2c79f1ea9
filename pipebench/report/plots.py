"""Pictures, drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from pipebench.timeline.trace import AVERAGE, BACKWARD, FORWARD, UPDATE, Trace

COLORS = {FORWARD: "#4C9BE8", BACKWARD: "#C758B4", UPDATE: "#E8B64C", AVERAGE: "#5CB85C"}
NAMES = {FORWARD: "forward", BACKWARD: "backward", UPDATE: "optimizer step", AVERAGE: "average"}


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Write a figure atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; a picture is not
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def gantt_png(
    trace: Trace, path: Path, max_ops: int = 200_000, max_labels_across: int = 100
) -> None:
    """Draw the Gantt chart of `trace` to `path` (PNG).

    Very long traces are cut to the time window holding their first
    `max_ops` operations, and the title says so; micro-batch ids are written
    inside the bars when the shortest bar is wide enough to hold one.
    """
    n = min(trace.n_ops, max_ops)
    until = trace.makespan if n == trace.n_ops else float(trace.start[n])
    shown = trace.start < until
    height = max(2.0, 0.35 * trace.stages + 1.2)
    fig, ax = plt.subplots(figsize=(12, min(height, 24)))
    legend = []
    for kind in (FORWARD, BACKWARD, UPDATE, AVERAGE):
        rows = np.flatnonzero(shown & (trace.kind == kind) & (trace.end > trace.start))
        if len(rows) == 0:
            continue
        on_every_stage = kind == AVERAGE
        for s in range(trace.stages) if on_every_stage else np.unique(trace.stage[rows]):
            mine = rows if on_every_stage else rows[trace.stage[rows] == s]
            ax.broken_barh(
                list(zip(trace.start[mine], trace.end[mine] - trace.start[mine], strict=True)),
                (s - 0.4, 0.8),
                facecolors=COLORS[kind],
                edgecolor="white",
                linewidth=0.3,
            )
        legend.append(Patch(color=COLORS[kind], label=NAMES[kind]))
    fb = np.flatnonzero(shown & (trace.kind <= BACKWARD))
    if until / (trace.end[fb] - trace.start[fb]).min() <= max_labels_across:
        for i in fb:
            ax.text(
                (trace.start[i] + trace.end[i]) / 2,
                trace.stage[i],
                str(trace.mb[i]),
                ha="center",
                va="center",
                fontsize=7,
                color="white",
            )
    ax.set_ylim(trace.stages - 0.5, -0.5)
    ax.set_xlim(0, until)
    ax.set_ylabel("stage")
    ax.set_xlabel("simulated time (cost units)")
    cut = "" if n == trace.n_ops else f", first {until:g} of {trace.makespan:g} time units"
    ax.set_title(f"{trace.schedule}: S={trace.stages}, M={trace.microbatches}{cut}")
    if trace.stages <= 32:
        ax.set_yticks(range(trace.stages))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save_figure(fig, path)
