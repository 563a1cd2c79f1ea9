"""Timelines: when every operation of a schedule happens, independent of the numbers trained.

The names below load on first use (PEP 562), so that listing the schedules
or comparing results loads neither the simulator nor the statistics.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipebench.timeline.budget import stats_of
    from pipebench.timeline.costs import CostModel
    from pipebench.timeline.registry import (
        SCHEDULES,
        build_timeline,
        get_schedule,
        resolve_options,
        setup_schedule,
    )
    from pipebench.timeline.rpd import RpdPlan
    from pipebench.timeline.stats import TimelineStats
    from pipebench.timeline.trace import Trace

_HOME = {
    "CostModel": "costs",
    "SCHEDULES": "registry",
    "build_timeline": "registry",
    "get_schedule": "registry",
    "resolve_options": "registry",
    "setup_schedule": "registry",
    "RpdPlan": "rpd",
    "TimelineStats": "stats",
    "Trace": "trace",
    "stats_of": "budget",
}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "SCHEDULES",
    "CostModel",
    "RpdPlan",
    "TimelineStats",
    "Trace",
    "build_timeline",
    "get_schedule",
    "resolve_options",
    "setup_schedule",
    "stats_of",
]
