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
from functools import singledispatch
from typing import TYPE_CHECKING

from pipebench.timeline.costs import CostModel
from pipebench.timeline.registry import timeline_of
from pipebench.timeline.rpd import RpdPlan
from pipebench.timeline.schedule import Rules
from pipebench.timeline.trace import Trace

if TYPE_CHECKING:
    from pipebench.timeline.schedule import Setup
    from pipebench.timeline.stats import TimelineStats


def _round_up(m: int, group: int) -> int:
    return -(-m // group) * group


def planned_microbatches(setup: Setup, costs: CostModel, kind: str, amount: float) -> int:
    """Micro-batches to simulate for a budget (for `updates`, a first guess)."""
    if kind == "microbatches":
        return int(amount)
    S = costs.stages
    group = setup.unit
    if kind == "time":
        # Stage 0 runs forwards one at a time, each at least forward[0] * (1 - jitter)
        # long: no micro-batch past this one can have an operation end by `amount`.
        shortest = costs.forward[0] * (1.0 - costs.jitter)
        return _round_up(math.floor(amount / shortest) + 2, group)
    # updates: each micro-batch brings about S / group block updates
    return _round_up(math.ceil(amount * group / S) + group, group)


def _first_update_microbatches(setup: Setup, costs: CostModel) -> int:
    """Micro-batches whose run is an endless run up to its first block update.

    Before it, every operation belongs to the first `unit` micro-batches or to
    the S after them, which the 1F1B caps let in: a run of that many more is
    the endless run up to that update (rounded up to whole mini-batches, as a
    program runs them).
    """
    return _round_up(setup.unit + costs.stages + 1, setup.unit)


def first_update_time(setup: Setup, costs: CostModel) -> float:
    """When the first block update of an endless run ends (rpd: its first iteration)."""
    m = _first_update_microbatches(setup, costs)
    return float(timeline_of(setup, costs, m).update_times[0])


def run_bound(costs: CostModel, microbatches: int, recompute: bool) -> float:
    """No operation of a simulation of rules for `microbatches` ends later than this.

    `CostModel.longest_run`, with a margin for the float rounding of its sums
    and of the simulated clock (2^-53 relative per addition, one per row).
    """
    rows = 4 * costs.stages * microbatches + microbatches  # F, B, steps and AVGs, at most
    return costs.longest_run(microbatches, recompute) * (1.0 + 8.0 * (rows + 8) * 2.0**-53)


def updates_by(setup: Setup, costs: CostModel, amount: float) -> bool:
    """Whether the first block update surely ends by `amount`, known without simulating.

    True when the run `first_update_time` simulates (of rules, or rpd's pd
    clock) cannot last longer than `amount` (`run_bound`); False means:
    simulate to know. A program's operations are not counted there, so for
    a program it says False.
    """
    if setup.form is not None and not isinstance(setup.form, Rules):
        return False
    m = _first_update_microbatches(setup, costs)
    return amount >= run_bound(costs, m, setup.recompute)


def timeline_for(
    setup: Setup, costs: CostModel, kind: str, amount: float
) -> tuple[Trace | RpdPlan, float, int | None]:
    """The timeline of a budget, the time the run stops, and (rpd) its iterations.

    `kind` is 'time', 'microbatches' or 'updates'. A time budget simulates
    enough micro-batches that the schedule up to the stopping instant is that
    of an endless run; an update budget doubles the guess until it has enough.
    """
    m = planned_microbatches(setup, costs, kind, amount)
    while True:
        timeline = timeline_of(setup, costs, m)
        if kind == "time":
            return timeline, float(amount), None
        if kind == "microbatches":
            return timeline, *timeline.end_of(None)
        k = int(amount)
        if timeline.n_updates >= k:
            return timeline, *timeline.end_of(k)
        m *= 2


@singledispatch
def stats_of(timeline: Trace | RpdPlan) -> TimelineStats:
    """The statistics of a simulated trace or of rpd's iteration plan."""
    raise TypeError(f"no statistics for {type(timeline).__name__}")


@stats_of.register(Trace)
def _trace_stats(trace: Trace) -> TimelineStats:
    from pipebench.timeline.stats import timeline_stats  # numba: when statistics are made

    return timeline_stats(trace)


@stats_of.register(RpdPlan)
def _plan_stats(plan: RpdPlan) -> TimelineStats:
    from pipebench.timeline.rpd import plan_stats

    return plan_stats(plan)


def stats_until(timeline: Trace | RpdPlan, until: float, iterations: int | None) -> TimelineStats:
    """Timeline statistics of the part of a run that happens by `until` (rpd: its first
    `iterations`).

    The bubble fraction is measured over [0, until], operations still running
    at `until` counting for the part they ran.
    """
    from pipebench.timeline.stats import busy_time  # numba: when runs are made

    stats = stats_of(timeline.cut(until, iterations))
    busy = busy_time(timeline.clock, until)
    bubble = 1.0 - busy / (timeline.clock.ranks * until) if until > 0 else 0.0
    return replace(stats, bubble_fraction=bubble)
