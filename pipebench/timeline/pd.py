"""PipeDream: 1F1B without flush, a step after every backward, weight stashing."""

from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import VERSIONS_STASH, Rules, one_f_one_b_caps


def _rules(stages: int, options: dict[str, object]) -> Rules:
    cap = one_f_one_b_caps(stages, options["inflight"])
    return Rules(cap=cap, accumulate=1, versions=VERSIONS_STASH)


SCHEDULE = Schedule(
    name="pd",
    summary="PipeDream: 1F1B, no flush, update after every backward, weight stashing (vB = vF)",
    synchronous=False,
    defaults=lambda stages: {"inflight": "per-stage"},
    rules=_rules,
)
