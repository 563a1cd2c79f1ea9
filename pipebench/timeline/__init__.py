"""Timelines: when every operation of a schedule happens, independent of the numbers trained."""

from pipebench.timeline.costs import CostModel
from pipebench.timeline.registry import SCHEDULES, build_timeline, get_schedule
from pipebench.timeline.rpd import RpdPlan, plan_stats
from pipebench.timeline.stats import TimelineStats, timeline_stats
from pipebench.timeline.trace import Trace


def stats_of(timeline: Trace | RpdPlan) -> TimelineStats:
    """The statistics of a simulated trace or of rpd's iteration plan."""
    return plan_stats(timeline) if isinstance(timeline, RpdPlan) else timeline_stats(timeline)


__all__ = [
    "SCHEDULES",
    "CostModel",
    "RpdPlan",
    "TimelineStats",
    "Trace",
    "build_timeline",
    "get_schedule",
    "stats_of",
]
