"""Terminal tables of timeline statistics for `pipebench schedule`."""

from __future__ import annotations

from rich.table import Table

from pipebench.timeline import TimelineStats
from pipebench.timeline.memory import MemoryProfile

GB = 1e9


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(stats: TimelineStats) -> Table:
    """Whole-run figures: one row per statistic."""
    shape = f"S={stats.stages}"
    if stats.ranks is not None and stats.ranks != stats.stages:
        shape = f"{stats.ranks} ranks, {stats.stages} chunks"
    table = Table(title=f"{stats.schedule}: {shape}, M={stats.microbatches}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    rows = [
        ("makespan", stats.makespan),
        ("iteration time (steady, rank 0)", stats.iteration_time),
        ("bubble fraction", stats.bubble_fraction),
        ("updates (block steps)", stats.updates),
        ("max delay, whole run", stats.max_delay),
        ("mean delay, whole run", stats.mean_delay),
        ("mean delay per block, whole run", stats.mean_block_delay),
        ("max delay, steady state", stats.steady_max_delay),
        ("mean delay, steady state", stats.steady_mean_delay),
    ]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    return table


def stage_table(stats: TimelineStats, max_rows: int = 16) -> Table:
    """Per-stage figures; beyond `max_rows` stages the middle ones are elided."""
    table = Table(title="per stage")
    names = ("stage", "max drift vB-vF", "max staleness", "mean delay of its block",
             "peak versions", "peak activations")  # fmt: skip
    for name in names:
        table.add_column(name, justify="right")
    for s in _elided(stats.stages, max_rows):
        if s < 0:
            table.add_row("⋮", "", "", "", "", "")
            continue
        activations = stats.peak_activations[s] if stats.peak_activations is not None else None
        table.add_row(
            str(s),
            _fmt(stats.stage_max_drift[s]),
            _fmt(stats.stage_max_staleness[s]),
            _fmt(stats.stage_mean_delay[s]),
            _fmt(stats.peak_versions[s]),
            _fmt(activations),
        )
    return table


def rank_table(stats: TimelineStats) -> Table:
    """Per-rank figures of a schedule whose chunks share ranks (its stages are chunks)."""
    table = Table(title="per rank")
    for name in ("rank", "bubble fraction", "peak activations (its chunks)", "peak pending W"):
        table.add_column(name, justify="right")
    for r in range(stats.ranks or 0):
        table.add_row(
            str(r),
            _fmt(stats.rank_bubble_fraction[r]),
            _fmt(stats.rank_peak_activations[r]),
            _fmt(stats.rank_peak_pending_w[r]),
        )
    return table


def _elided(n: int, max_rows: int) -> list[int]:
    """Row indices to show, -1 where the middle ones are left out."""
    if n <= max_rows:
        return list(range(n))
    half = max_rows // 2
    return [*range(half), -1, *range(n - half, n)]


def memory_table(memory: MemoryProfile, capacity: float, max_rows: int = 16) -> Table:
    """Bytes per rank in GB: what stays (weights, gradients, optimizer state), the peaks of
    activations and pending W's, and the peak of the whole against the device's memory."""
    table = Table(title=f"memory per rank (GB; the device holds {capacity / GB:g})")
    names = ("rank", "weights (versions), grads, optimizer", "peak activations",
             "peak pending W", "peak", "of the device")  # fmt: skip
    for name in names:
        table.add_column(name, justify="right")
    for r in _elided(len(memory.peak), max_rows):
        if r < 0:
            table.add_row("⋮", *[""] * (len(names) - 1))
            continue
        over = memory.peak[r] > capacity
        table.add_row(
            str(r),
            f"{(memory.static[r] + memory.peak_weights[r]) / GB:.2f}",
            f"{memory.peak_activations[r] / GB:.2f}",
            f"{memory.peak_pending_w[r] / GB:.2f}",
            f"{memory.peak[r] / GB:.2f}",
            f"{memory.peak[r] / capacity:.0%}" + (" OOM" if over else ""),
            style="bold red" if over else None,
        )
    return table
