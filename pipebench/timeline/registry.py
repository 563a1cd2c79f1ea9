"""All schedules by name, and building a timeline from a name and options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipebench.errors import InputError, did_you_mean
from pipebench.limits import available_memory, memory_problem
from pipebench.timeline import gpipe, localsgd, naive, one_f_one_b, paci, pd, rpd, twobw
from pipebench.timeline.schedule import OPTION_CHECKS, Schedule
from pipebench.timeline.trace import MAX_MICROBATCHES, Trace, trace_need

if TYPE_CHECKING:
    from pipebench.timeline.costs import CostModel
    from pipebench.timeline.rpd import RpdPlan

SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        gpipe.SCHEDULE,
        one_f_one_b.SCHEDULE,
        pd.SCHEDULE,
        rpd.SCHEDULE,
        twobw.SCHEDULE,
        paci.SCHEDULE,
        localsgd.SCHEDULE,
        naive.SCHEDULE,
    )
}


def get_schedule(name: str) -> Schedule:
    """The schedule called `name`; an `InputError` listing the known ones otherwise."""
    try:
        return SCHEDULES[name]
    except KeyError:
        known = ", ".join(SCHEDULES)
        hint = did_you_mean(name, list(SCHEDULES))
        raise InputError("schedule", f"unknown schedule {name!r}{hint}; known: {known}") from None


def resolve_options(schedule: Schedule, stages: int, given: dict[str, object]) -> dict[str, object]:
    """`schedule`'s defaults overlaid with `given`, each option checked.

    It lives beside `SCHEDULES`: refusing an option that does not apply names
    the schedules it applies to.
    """
    resolved = schedule.defaults(stages)
    for name, value in given.items():
        if name not in resolved:
            users = ", ".join(s.name for s in SCHEDULES.values() if name in s.defaults(2))
            raise InputError(
                name, f"does not apply to {schedule.name} (it applies to: {users or 'none'})"
            )
        problem = OPTION_CHECKS[name](value)
        if problem:
            raise InputError(name, f"must be {problem}")
        resolved[name] = value
    return resolved


def check_memory(stages: int, microbatches: int) -> None:
    """Refuse, up front, a trace that cannot fit in this machine's memory."""
    problem = memory_problem([trace_need("microbatches", stages, microbatches)], available_memory())
    if problem is not None:
        raise InputError("microbatches", problem[1])


def build_timeline(
    name: str, costs: CostModel, microbatches: int, **options: object
) -> Trace | RpdPlan:
    """Simulate schedule `name` (or draw rpd's iteration plan) for `microbatches`."""
    from pipebench.timeline.simulate import simulate  # numba: only when a timeline is built

    schedule = get_schedule(name)
    if not 1 <= microbatches <= MAX_MICROBATCHES:
        raise InputError("microbatches", f"must be in 1..{MAX_MICROBATCHES}, got {microbatches}")
    check_memory(costs.stages, microbatches)
    resolved = resolve_options(schedule, costs.stages, options)
    if schedule.rules is None:
        return rpd.plan(costs, microbatches, **resolved)
    return simulate(name, schedule.rules(costs.stages, resolved), costs, microbatches)
