"""All schedules by name, and building a timeline from a name and options."""

from __future__ import annotations

from functools import singledispatch
from typing import TYPE_CHECKING

from pipebench.errors import InputError, did_you_mean
from pipebench.limits import available_memory, memory_problem
from pipebench.schedules import PROGRAM_SCHEDULES
from pipebench.schedules.base import Program, Schedule
from pipebench.timeline import gpipe, localsgd, naive, one_f_one_b, paci, pd, rpd, twobw
from pipebench.timeline.options import OPTIONS
from pipebench.timeline.schedule import Rules, Setup

if TYPE_CHECKING:  # traces (NumPy) load when one is built: `pipebench list` needs none
    from pipebench.timeline.costs import CostModel
    from pipebench.timeline.rpd import RpdPlan
    from pipebench.timeline.trace import Trace

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
        *PROGRAM_SCHEDULES,
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
        problem = OPTIONS[name].problem(value)
        if problem:
            raise InputError(name, f"must be {problem}")
        resolved[name] = value
    return resolved


def setup_schedule(name: str, stages: int, given: dict[str, object]) -> Setup:
    """Schedule `name` on `stages` with the options `given` over its defaults, and its form
    (rules or program).

    Refuses options that do not apply or are out of range, and rules or
    programs the pipeline cannot run (an `InputError` naming the option).
    """
    schedule = get_schedule(name)
    resolved = resolve_options(schedule, stages, given)
    return Setup(schedule.name, stages, dict(given), resolved, schedule.form(stages, resolved))


def check_memory(stages: int, microbatches: int) -> None:
    """Refuse, up front, a trace that cannot fit in this machine's memory."""
    from pipebench.timeline.trace import trace_need

    problem = memory_problem([trace_need("microbatches", stages, microbatches)], available_memory())
    if problem is not None:
        raise InputError("microbatches", problem[1])


def build_timeline(
    name: str, costs: CostModel, microbatches: int, **options: object
) -> Trace | RpdPlan:
    """Simulate schedule `name` (or draw rpd's iteration plan) for `microbatches`."""
    schedule = get_schedule(name)
    _check_size(costs.stages, microbatches)
    return timeline_of(setup_schedule(schedule.name, costs.stages, options), costs, microbatches)


def timeline_of(setup: Setup, costs: CostModel, microbatches: int) -> Trace | RpdPlan:
    """Simulate a resolved schedule (or draw rpd's iteration plan) for `microbatches`."""
    _check_size(setup.chunks, microbatches)
    return _timed(setup.form, setup, costs, microbatches)


# One executor per form of schedule (the numba modules load only when a timeline is built).
@singledispatch
def _timed(form: object, setup: Setup, costs: CostModel, microbatches: int) -> Trace | RpdPlan:
    raise TypeError(f"no executor for {type(form).__name__}")


@_timed.register(type(None))
def _drawn(form: None, setup: Setup, costs: CostModel, microbatches: int) -> RpdPlan:
    return rpd.plan(costs, microbatches, **setup.options)


@_timed.register(Rules)
def _simulated(rules: Rules, setup: Setup, costs: CostModel, microbatches: int) -> Trace:
    from pipebench.timeline.simulate import simulate

    return simulate(setup.name, rules, costs, microbatches)


@_timed.register(Program)
def _executed(program: Program, setup: Setup, costs: CostModel, microbatches: int) -> Trace:
    from pipebench.timeline.program import execute

    wg, overlap = setup.options.get("weight_grad", "half"), setup.options.get("overlap", "sum")
    return execute(setup.name, program, costs, microbatches, wg, overlap)


def _check_size(stages: int, microbatches: int) -> None:
    from pipebench.timeline.trace import MAX_MICROBATCHES

    if not 1 <= microbatches <= MAX_MICROBATCHES:
        raise InputError("microbatches", f"must be in 1..{MAX_MICROBATCHES}, got {microbatches}")
    check_memory(stages, microbatches)
