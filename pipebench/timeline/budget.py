"""From a scenario's budget to a timeline and the instant the run stops.

A budget is simulated time, micro-batches, or block updates. Time and
update budgets do not say how many micro-batches to simulate, so we
simulate enough that the schedule up to the stopping instant is exactly
that of an endless run, and cut there: operations that have not ended by
then do not happen.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from pipebench.timeline import (
    CostModel,
    RpdPlan,
    Trace,
    build_timeline,
    get_schedule,
    resolve_options,
)

if TYPE_CHECKING:
    from pipebench.timeline.stats import TimelineStats


def microbatch_unit(name: str, stages: int, options: dict[str, object]) -> int:
    """Micro-batches per mini-batch, update group or round: the unit a run is rounded to."""
    schedule = get_schedule(name)
    if schedule.rules is None:
        return 1
    rules = schedule.rules(stages, resolve_options(schedule, stages, options))
    return max(rules.group, rules.accumulate, 1)


def _round_up(m: int, group: int) -> int:
    return -(-m // group) * group


def planned_microbatches(
    name: str, options: dict[str, object], costs: CostModel, kind: str, amount: float
) -> int:
    """Micro-batches to simulate for a budget (for `updates`, a first guess)."""
    if kind == "microbatches":
        return int(amount)
    S = costs.stages
    group = microbatch_unit(name, S, options)
    if kind == "time":
        # Stage 0 runs forwards one at a time, each at least forward[0] * (1 - jitter)
        # long: no micro-batch past this one can have an operation end by `amount`.
        shortest = costs.forward[0] * (1.0 - costs.jitter)
        return _round_up(math.floor(amount / shortest) + 2, group)
    # updates: each micro-batch brings about S / group block updates
    return _round_up(math.ceil(amount * group / S) + group, group)


def first_update_time(name: str, options: dict[str, object], costs: CostModel) -> float:
    """When the first block update of an endless run ends (rpd: its first iteration).

    Before it, every operation belongs to the first `unit` micro-batches or to
    the S after them, which the 1F1B caps let in: a run of that many more is
    the endless run up to that update.
    """
    m = microbatch_unit(name, costs.stages, options) + costs.stages + 1
    timeline = build_timeline(name, costs, m, **options)
    return float(timeline.time[0] if isinstance(timeline, RpdPlan) else timeline.upd_time[0])


def timeline_for(
    name: str, options: dict[str, object], costs: CostModel, kind: str, amount: float
) -> tuple[Trace | RpdPlan, float, int | None]:
    """The timeline of a budget, the time the run stops, and (rpd) its iterations.

    `kind` is 'time', 'microbatches' or 'updates'. A time budget simulates
    enough micro-batches that the schedule up to the stopping instant is that
    of an endless run; an update budget doubles the guess until it has enough.
    """
    m = planned_microbatches(name, options, costs, kind, amount)
    while True:
        timeline = build_timeline(name, costs, m, **options)
        if kind == "time":
            return timeline, float(amount), None
        if kind == "microbatches":
            if isinstance(timeline, RpdPlan):
                return timeline, float(timeline.time[-1]), timeline.iterations
            return timeline, timeline.makespan, None
        k = int(amount)
        if isinstance(timeline, RpdPlan):
            if timeline.iterations >= k:
                return timeline, float(timeline.time[k - 1]), k
        elif timeline.n_updates >= k:
            return timeline, float(timeline.upd_time[k - 1]), None
        m *= 2


def truncate(trace: Trace, until: float) -> Trace:
    """The operations of `trace` that have ended by `until`, with their update rows.

    The micro-batch count stays that of the simulated trace: a run cut by a
    budget has no drain, so its steady state extends to the cut.
    """
    keep = trace.end <= until
    return trace if keep.all() else trace.subset(keep)


def stats_until(timeline: Trace | RpdPlan, until: float, iterations: int | None) -> TimelineStats:
    """Timeline statistics of the part of a run that happens by `until`.

    The bubble fraction is measured over [0, until], operations still running
    at `until` counting for the part they ran.
    """
    from pipebench.timeline.rpd import plan_stats
    from pipebench.timeline.stats import busy_time, timeline_stats  # numba: when runs are made

    if isinstance(timeline, RpdPlan):
        n = timeline.iterations if iterations is None else iterations
        pd_trace = timeline.pd
        cut = replace(
            timeline,
            pd=truncate(pd_trace, until),
            block=timeline.block[:n],
            time=timeline.time[:n],
            pd_update_mb=timeline.pd_update_mb[:n],
        )
        stats = plan_stats(cut)
    else:
        pd_trace = timeline
        stats = timeline_stats(truncate(timeline, until))
    busy = busy_time(pd_trace, until)
    bubble = 1.0 - busy / (timeline.stages * until) if until > 0 else 0.0
    return replace(stats, bubble_fraction=bubble)
