"""1F1B-flush (PipeDream-Flush): 1F1B inside a mini-batch, one step, flush."""

from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import BARRIER_FLUSH, Rules, one_f_one_b_caps


def _rules(stages: int, options: dict[str, object]) -> Rules:
    minibatch = int(options["accumulate"])
    return Rules(
        cap=one_f_one_b_caps(stages, options["inflight"]),
        accumulate=minibatch,
        group=minibatch,
        barrier=BARRIER_FLUSH,
    )


SCHEDULE = Schedule(
    name="1f1b-flush",
    summary="PipeDream-Flush: 1F1B inside each mini-batch of `accumulate`, one step, flush",
    synchronous=True,
    defaults=lambda stages: {"accumulate": stages, "inflight": "per-stage"},
    rules=_rules,
)
