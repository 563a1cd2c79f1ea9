"""Naive pipelining: one micro-batch in the pipeline at a time; plain SGD."""

from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import Rules


def _rules(stages: int, options: dict[str, object]) -> Rules:
    return Rules(cap=(1,) * stages, accumulate=1)


SCHEDULE = Schedule(
    name="naive",
    summary="Naive: one micro-batch in flight, update after each; plain SGD, 2S steps each",
    synchronous=True,
    rules=_rules,
)
