"""PipeDream-2BW: averaged groups of micro-batches, exactly one update of delay."""

from pipebench.errors import InputError
from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import VERSIONS_TWO_BW, Rules, one_f_one_b_caps


def _rules(stages: int, options: dict[str, object]) -> Rules:
    accumulate = int(options["accumulate"])
    if accumulate < stages:
        # With fewer micro-batches per group than stages, a forward would need
        # a version the stage has not produced yet: 2BW's double buffer breaks.
        raise InputError(
            "accumulate", f"2bw needs accumulate >= stages ({stages}), got {accumulate}"
        )
    cap = one_f_one_b_caps(stages, options["inflight"])
    return Rules(cap=cap, accumulate=accumulate, versions=VERSIONS_TWO_BW)


SCHEDULE = Schedule(
    name="2bw",
    summary="PipeDream-2BW: 1F1B, update per group of `accumulate`, reads version (k//m - 1)",
    synchronous=False,
    defaults=lambda stages: {"accumulate": stages, "inflight": "per-stage"},
    rules=_rules,
)
