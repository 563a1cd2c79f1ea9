"""What the command line calls, and what users can call from Python."""

from __future__ import annotations

from pipebench.timeline import CostModel, RpdPlan, TimelineStats, Trace, build_timeline, stats_of


def schedule_timeline(
    name: str, costs: CostModel, microbatches: int, **options: object
) -> tuple[Trace | RpdPlan, TimelineStats]:
    """Simulate one schedule without training; returns its timeline and statistics.

    `costs` comes from `CostModel.build(stages, ...)`. Raises `InputError`
    for anything out of range, naming the argument.
    """
    timeline = build_timeline(name, costs, microbatches, **options)
    return timeline, stats_of(timeline)
