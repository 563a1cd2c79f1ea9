"""GPipe: all forwards of a mini-batch, then all backwards, one step, flush."""

from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import BARRIER_FLUSH, Rules


def _rules(stages: int, options: dict[str, object]) -> Rules:
    minibatch = int(options["accumulate"])
    return Rules(
        cap=(minibatch,) * stages,
        accumulate=minibatch,
        group=minibatch,
        barrier=BARRIER_FLUSH,
        forwards_first=True,
    )


SCHEDULE = Schedule(
    name="gpipe",
    summary="GPipe: all forwards then all backwards per mini-batch of `accumulate`, flush",
    synchronous=True,
    defaults=lambda stages: {"accumulate": stages},
    rules=_rules,
)
