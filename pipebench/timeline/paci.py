"""PACI: local accumulation, no stashing; the backward uses the weights current then."""

from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import VERSIONS_CURRENT, Rules, one_f_one_b_caps


def _rules(stages: int, options: dict[str, object]) -> Rules:
    return Rules(
        cap=one_f_one_b_caps(stages, options["inflight"]),
        accumulate=int(options["accumulate"]),
        versions=VERSIONS_CURRENT,
        recompute=bool(options["recompute"]),
    )


SCHEDULE = Schedule(
    name="paci",
    summary="PACI: 1F1B, update every `accumulate` backwards, no stash (vB >= vF)",
    synchronous=False,
    defaults=lambda stages: {"accumulate": 1, "recompute": False, "inflight": "per-stage"},
    rules=_rules,
)
