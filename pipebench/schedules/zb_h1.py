"""ZB-H1: 1F1B with the backward split into I and W, rank r holding back r of its W's.

Qi, Wan, Huang, Lin, "Zero Bubble Pipeline Parallelism" (ICLR 2024,
arXiv:2401.10241), schedule ZB-H1 (Figure 3); PyTorch ships it as
`ScheduleInterleavedZeroBubble` with one stage per rank. Rank r: p - 1 - r
warm-up forwards; then F, I pairs, each followed by the W of the oldest I
once r of them wait; the cool-down I's likewise; the W's still waiting last.
Delaying the W's fills the cool-down bubble of 1F1B with weight-gradient
work: per mini-batch m(F + I + W) + (p - 1)(F + I - W), with the same
peak activations as 1F1B (p on rank 0, an activation lives until its W).
"""

from pipebench.schedules.base import Program, ProgramBuilder, check_accumulate, program_schedule


def build(ranks: int, options: dict[str, object]) -> Program:
    m = check_accumulate("zb-h1", ranks, options, least=1)
    import numpy as np  # here: `pipebench list` loads the schedules without NumPy

    b = ProgramBuilder(np.arange(ranks, dtype=np.int64), m)
    for r in range(ranks):
        warmup = min(ranks - 1 - r, m)
        for _ in range(warmup):
            b.f(r)
        for k in range(m):  # steady F, I (the first m - warmup), then cool-down I
            if k < m - warmup:
                b.f(r)
            b.i(r, defer_w=True)
            if k >= r:
                b.pop_w(r)
        for _ in range(min(r, m)):
            b.pop_w(r)
    return b.done()


SCHEDULE = program_schedule(
    name="zb-h1",
    summary="ZB-H1: 1F1B with split backward, W deferred to fill the cool-down; flush",
    defaults=lambda stages: {"accumulate": stages, "weight_grad": "half"},
    build=build,
)
