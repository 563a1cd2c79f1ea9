"""The memory picture: bytes held on each rank over time, beside a schedule's Gantt chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from pipebench.report.plots import GANTT_OPS, picture_names, save_figure
from pipebench.timeline.memory import ChunkBytes, MemoryProfile, memory_profile
from pipebench.timeline.trace import Trace

if TYPE_CHECKING:
    from pipebench.runner import Outcome

GB = 1e9
MAX_LINES_NAMED = 16  # ranks beyond this are drawn, not listed in the legend


def picture_window(trace: Trace, max_ops: int = GANTT_OPS) -> float:
    """The last start time the Gantt chart of `trace` shows (its first `max_ops` rows)."""
    return float(trace.start[min(trace.n_ops, max_ops) - 1]) if trace.n_ops else -np.inf


def profile_for_picture(
    trace: Trace, chunks: ChunkBytes, max_ops: int = GANTT_OPS
) -> MemoryProfile:
    """The whole trace's peaks, with samples over the window the Gantt chart shows."""
    return memory_profile(trace, chunks, until=picture_window(trace, max_ops))


def memory_png(
    profile: MemoryProfile,
    ranks: int,
    title: str,
    path: Path,
    capacity: float | None = None,
    unit: str = "cost units",
) -> None:
    """Bytes held per rank over time (GB, a step line each), the device's memory as a line."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(ranks, 1)))
    for r in range(ranks):
        times, total = profile.times[profile.ranks == r], profile.total[profile.ranks == r]
        if not len(times):
            continue
        # of the changes at one instant (a release, then the next acquisition), the last
        last = np.append(times[1:] != times[:-1], True)
        ax.step(times[last], total[last] / GB, where="post", linewidth=1.0,
                color=colours[r], label=f"rank {r}" if r < MAX_LINES_NAMED else None)  # fmt: skip
    if capacity is not None:
        ax.axhline(capacity / GB, color="#D9534F", linestyle="--", label="device memory")
    top = max(float(profile.peak.max()) if len(profile.peak) else 0.0, capacity or 0.0)
    ax.set_ylim(0, 1.08 * top / GB if top > 0 else 1.0)
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("memory held (GB)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    save_figure(fig, path)


def run_memory_pngs(folder: Path, outcomes: list[Outcome], capacity: float) -> list[Path]:
    """`memory-<schedule>.png` beside each schedule's Gantt chart: its first rounds."""
    first = {}
    for o in outcomes:
        first.setdefault(o.entry.label, o)
    written = []
    for label, name in picture_names(first).items():
        o = first[label]
        clock = " (its pd clock)" if o.entry.schedule == "rpd" else ""
        title = (f"{label}{clock}: bytes per rank, first {o.first_rounds.makespan:.4g} s; "
                 f"peak {o.memory.peak.max() / GB:.2f} GB")  # fmt: skip
        path = Path(folder) / f"memory-{name}.png"
        memory_png(o.memory, len(o.memory.peak), title, path, capacity, unit="seconds")
        written.append(path)
    return written
