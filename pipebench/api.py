"""What the command line calls, and what users can call from Python."""

from __future__ import annotations

from collections.abc import Sequence

from pipebench.timeline import CostModel, RpdPlan, TimelineStats, Trace, build_timeline, stats_of


def schedule_timeline(
    name: str,
    stages: int,
    microbatches: int,
    *,
    forward: float | Sequence[float] = 1.0,
    backward: float | Sequence[float] = 1.0,
    comm: float = 0.0,
    update: float = 0.0,
    allreduce: float = 0.0,
    jitter: float = 0.0,
    seed: int = 0,
    straggler: tuple[int, float] | None = None,
    **options: object,
) -> tuple[Trace | RpdPlan, TimelineStats]:
    """Simulate one schedule without training; returns its timeline and statistics.

    Raises `InputError` for anything out of range, naming the argument.
    """
    costs = CostModel.build(
        stages,
        forward=forward,
        backward=backward,
        comm=comm,
        update=update,
        allreduce=allreduce,
        jitter=jitter,
        seed=seed,
        straggler=straggler,
    )
    timeline = build_timeline(name, costs, microbatches, **options)
    return timeline, stats_of(timeline)
