"""Randomized PipeDream: the stale block-SGD abstraction as an iteration plan.

RPD is not a timeline. Iteration k updates one uniformly drawn block s with
the gradient taken at a point whose block j is the iterate from d_j
iterations ago. The plan fixes everything but the arithmetic: the block of
each iteration, how delays are drawn, and the clock, which is borrowed from
the PipeDream timeline with the same stages and costs (iteration k happens
when PD's k-th block update ends), so RPD and PD curves share one time axis.

The draws (`rpd_draws`, numba kernels) and the simulator are imported only
when a plan is made or read, so that the schedule registry loads without numba.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipebench.schedules.base import Schedule
from pipebench.timeline import pd
from pipebench.timeline.options import DELAY_MODES
from pipebench.timeline.schedule import auto_delta

if TYPE_CHECKING:  # NumPy and traces load where plans are made: `pipebench list` needs none
    import numpy as np

    from pipebench.timeline.costs import CostModel
    from pipebench.timeline.stats import TimelineStats
    from pipebench.timeline.trace import Trace


@dataclass(frozen=True, eq=False)
class RpdPlan:
    """K = S * M block iterations on the clock of the matching pd trace."""

    stages: int
    microbatches: int
    delta: int
    delays: str
    seed: int
    pd: Trace
    block: np.ndarray  # stage updated at iteration k
    time: np.ndarray  # end of PD's k-th block update
    pd_reads: np.ndarray  # (M, S) iterate read by PD's F(j, m); only for delays == "pd"
    pd_update_mb: np.ndarray  # micro-batch of PD's k-th update
    sampling: str = "objective"  # how iteration k draws its batch: the objective's way, or this

    schedule = "rpd"

    @property
    def iterations(self) -> int:
        return len(self.block)

    @property
    def mode(self) -> int:
        """The delay mode as the number `fill_delays` branches on."""
        return DELAY_MODES.index(self.delays)

    def reseeded(self, seed: int) -> RpdPlan:
        """The same plan on the same clock with the blocks and delays of another seed."""
        from pipebench.timeline.interpret import kernel_for
        from pipebench.timeline.rpd_draws import draw_blocks

        n = len(self.block)
        blocks = kernel_for(draw_blocks, n)(seed, self.stages, n)
        return replace(self, seed=seed, block=blocks)

    # the questions `Trace` answers for the replay, answered for the plan
    is_timeline = False
    recompute = False

    @property
    def clock(self) -> Trace:
        """The operations on the clock: those of the pd trace the plan borrows it from."""
        return self.pd

    @property
    def n_updates(self) -> int:
        return self.iterations

    @property
    def update_times(self) -> np.ndarray:
        """When each iteration ends, in order."""
        return self.time

    def end_of(self, updates: int | None) -> tuple[float, int | None]:
        """When a run of the first `updates` iterations (None: all) stops, and that count."""
        n = self.iterations if updates is None else updates
        return float(self.time[n - 1]), n

    def cut(self, until: float, iterations: int | None = None) -> RpdPlan:
        """The plan of the run that stops at `until` after `iterations` (None: all of them)."""
        n = self.iterations if iterations is None else iterations
        return replace(
            self,
            pd=self.pd.cut(until),
            block=self.block[:n],
            time=self.time[:n],
            pd_update_mb=self.pd_update_mb[:n],
        )


def plan(
    costs: CostModel,
    microbatches: int,
    delta: object = "auto",
    delays: str = "uniform",
    sampling: str = "objective",
) -> RpdPlan:
    """The iteration plan for S * microbatches block updates, seeded by `costs.seed`."""
    import numpy as np

    from pipebench.timeline.interpret import kernel_for
    from pipebench.timeline.rpd_draws import draw_blocks
    from pipebench.timeline.simulate import simulate
    from pipebench.timeline.stats import read_iterates

    stages = costs.stages
    bound = auto_delta(stages) if delta == "auto" else int(delta)  # type: ignore[arg-type]
    rules = pd.SCHEDULE.rules(stages, pd.SCHEDULE.defaults(stages))
    trace = simulate("pd", rules, costs, microbatches)
    reads = read_iterates(trace)[0] if delays == "pd" else np.zeros((0, 0), dtype=np.int64)
    block = kernel_for(draw_blocks, trace.n_updates)(costs.seed, stages, trace.n_updates)
    return RpdPlan(
        stages=stages,
        microbatches=microbatches,
        delta=bound,
        delays=delays,
        seed=costs.seed,
        pd=trace,
        block=block,
        time=trace.upd_time,
        pd_reads=reads,
        pd_update_mb=trace.upd_last,
        sampling=sampling,
    )


def plan_stats(plan: RpdPlan) -> TimelineStats:
    """The timeline figures of rpd: its pd clock, and the delays it draws.

    Staleness of a stage is the largest delay of its own block; drift is zero
    (there is no separate backward); the iterate history must hold the largest
    delay plus one versions; activations do not apply.
    """
    import numpy as np

    from pipebench.timeline.interpret import kernel_for
    from pipebench.timeline.rpd_draws import plan_delays
    from pipebench.timeline.stats import TimelineStats, busy_time, delay_summary

    draws = kernel_for(plan_delays, plan.iterations * plan.stages)
    worst, own, total = draws(
        plan.mode, plan.delta, plan.seed, plan.block, plan.pd_update_mb, plan.pd_reads, plan.stages
    )
    S, M = plan.stages, plan.microbatches
    means = total / len(worst) if len(worst) else np.zeros(S)
    steady = (plan.pd_update_mb >= S) & (plan.pd_update_mb < M - S)
    max_d, mean_d, steady_max, steady_mean = delay_summary(worst, steady)
    return TimelineStats(
        schedule="rpd",
        stages=S,
        microbatches=M,
        makespan=plan.pd.makespan,
        bubble_fraction=1.0 - busy_time(plan.pd) / (S * plan.pd.makespan),
        updates=plan.iterations,
        max_delay=max_d,
        mean_delay=mean_d,
        mean_block_delay=float(means.mean()),
        steady_max_delay=steady_max,
        steady_mean_delay=steady_mean,
        stage_max_drift=[0] * S,
        stage_max_staleness=own.tolist(),
        stage_mean_delay=means.tolist(),
        peak_versions=[max_d + 1] * S,
        peak_activations=None,
        delay_counts=np.bincount(worst),
    )


SCHEDULE = Schedule(
    name="rpd",
    summary="Randomized PipeDream: random block, delays d_j <= delta, on the pd clock",
    synchronous=False,
    defaults=lambda stages: {"delta": "auto", "delays": "uniform", "sampling": "objective"},
)
